"""A few training iterations on in-memory toy batches (no dataset, no Runner).

The quickest end-to-end check that a config trains: used by ``brefine demo``.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import torch
from mmengine.config import Config

from brefine.data.toy import toy_batch
from brefine.models.build import build_detector


def toy_train(cfg: Config, iterations: int = 5, batch_size: int = 2, lr: float = 0.01,
              seed: int = 0, log: Callable[[str], None] = print,
              device: str = "cpu") -> Iterator[dict]:
    """Train ``cfg.model`` for ``iterations`` SGD steps; yields each step's losses (floats)."""
    torch.manual_seed(seed)
    model = build_detector(cfg).to(device)  # the data preprocessor moves batches with it
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    num_classes = cfg.model.roi_head.bbox_head.num_classes
    for step in range(1, iterations + 1):
        started = time.perf_counter()
        batch = toy_batch(batch_size, num_classes=min(num_classes, 5), seed=seed + step)
        losses = model(**model.data_preprocessor(batch, training=True), mode="loss")
        loss, log_vars = model.parse_losses(losses)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=10)
        optimizer.step()
        record = dict(step=step, seconds=time.perf_counter() - started,
                      **{k: v.item() if torch.is_tensor(v) else float(v) for k, v in log_vars.items()})
        log(f"iter {step}/{iterations}  " + "  ".join(
            f"{k}={v:.4f}" for k, v in record.items() if k != "step"))
        yield record
