"""A tiny base detector, trained once and cached, for searches to fine-tune from.

Real searches start from pretrained weights; the embedded search on the
built-in data has none, and 2 CPU cores cannot train every trial from random
init far enough to tell λ, w and the stage count apart. So, like the mmcv
wheel, a base detector is trained once per machine and cached under
``<cache>/base-detectors/<config>-<key>/`` (``brefine.paths.cache_dir``),
the key covering the resolved config (its ``_base_`` files and overrides
included), the data and the package versions. It is the config's detector
trained without its mask head (which would be thrown away: each trial builds
its own for its stage count), so it trains at a detector's speed, and every
trial starts from the same weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from mmengine.hooks import Hook

MASK_BRANCH = ("mask_head", "mask_roi_extractor")
RECIPE_VERSION = 2  # a change to how the base is trained is a new cache key


def _key(config_path: Path, overrides: dict, data_root: str, iters: int) -> str:
    """The cache key: the whole resolved config (a change in a ``_base_`` file,
    the schedule's lr say, is a new base), the data, the recipe and versions."""
    import mmdet
    import torch

    from brefine.configs import load_config

    resolved = load_config(config_path, overrides).to_dict()
    ann = Path(data_root) / "annotations" / "train.json"
    parts = [json.dumps(resolved, sort_keys=True, default=str),
             hashlib.sha256(ann.read_bytes()).hexdigest() if ann.is_file() else data_root,
             str(iters), str(RECIPE_VERSION), torch.__version__, mmdet.__version__]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


class _Progress(Hook):
    """Logs the base detector's loss and the time left, ten times over its ``iters``."""

    priority = "LOWEST"

    def __init__(self, iters: int, log: Callable[[str], None]) -> None:
        self.iters = iters
        self.log = log
        self.started = time.time()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        """Log every tenth of the run and at its last iteration."""
        iters = self.iters
        done = runner.iter + 1
        if done % max(1, iters // 10) == 0 or done == iters:
            rate = (time.time() - self.started) / done
            self.log(f"  base detector: {done}/{iters} iterations, loss "
                     f"{float(outputs['loss'].detach()):.3f}, "
                     f"{rate * (iters - done) / 60:.1f} min left")


def _train_and_save(cfg, config_path: Path, iters: int, folder: Path,
                    log: Callable[[str], None]) -> None:
    """Train ``cfg``'s detector without its mask branch, quietly, and save it in ``folder``."""
    import torch
    from mmengine.runner import Runner

    for part in MASK_BRANCH:
        cfg.model.roi_head[part] = None
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        cfg.work_dir = tmp
        # MMEngine keeps one visualizer per name, process-wide: a later Runner
        # would find this one, writing into this deleted folder
        cfg.visualizer.name = f"base-detector-{Path(tmp).name}"
        # the trials validate; the base need not
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        cfg.default_hooks.checkpoint = None
        cfg.default_hooks.logger = dict(type="LoggerHook", interval=10 ** 9)
        cfg.log_level = "WARNING"
        runner = Runner.from_cfg(cfg)
        runner.register_hook(_Progress(iters, log))
        runner.train()
        state = runner.model.state_dict()
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        torch.save({"state_dict": state, "meta": {"config": config_path.name, "iters": iters}},
                   partial / "base.pth")
        shutil.rmtree(folder, ignore_errors=True)
        partial.rename(folder)


def base_detector(config: str, overrides: dict, data_root: str, iters: int,
                  log: Callable[[str], None] = print, cache: Optional[Path] = None) -> Path:
    """The cached base weights of ``config`` (trained now when missing).

    Returns:
        The path of ``base.pth`` under ``cache`` (default ``brefine.paths.cache_dir()``).

    Raises:
        ConfigError: an unknown config or a bad override.
    """
    from brefine.configs import load_config, resolve_config_path, schedule_overrides
    from brefine.paths import cache_dir

    if log is print:  # progress goes to the terminal while the Runner's chatter does not
        real_stdout = sys.stdout
        log = lambda line: print(line, file=real_stdout, flush=True)  # noqa: E731
    config_path = resolve_config_path(config)
    folder = Path(cache or cache_dir()) / "base-detectors" / \
        f"{config_path.stem}-{_key(config_path, overrides, data_root, iters)}"
    weights = folder / "base.pth"
    if weights.is_file():
        log(f"base detector: {weights} (cached)")
        return weights
    cfg = load_config(config_path, {**overrides, **schedule_overrides(
        load_config(config_path, overrides), iters)}, data_root)
    log(f"base detector: training {config_path.stem} once, {iters} iterations (the time left "
        f"is printed as it goes), cached in {folder}")
    _train_and_save(cfg, config_path, iters, folder, log)
    log(f"base detector: saved {weights}")
    return weights
