"""``brefine smoke``: is this machine (or image) able to run BRefine?

Imports every package a run needs, reports versions and the accelerator,
checks that mmcv's compiled ops run on the device (its CUDA ops exist only
when mmcv was built with them), and trains the tiny BRefine one step there.
"""

from __future__ import annotations

import importlib
import math
import time

PACKAGES = ("torch", "torchvision", "mmengine", "mmcv", "mmdet", "ray", "mlflow",
            "pycocotools", "pyarrow", "boto3", "numpy", "cv2")


def smoke(device: str = "cpu", log=print) -> dict:
    """Run the checks, logging each result; stops at the first failure.

    Returns:
        The training step's record: ``step``, ``seconds``, ``loss`` and each ``loss_*`` term.

    Raises:
        ImportError: a package a run needs is missing.
        RuntimeError: a CUDA ``device`` without a GPU, mmcv ops giving wrong
            results on the device, or a non-finite loss.
    """
    import torch

    for name in PACKAGES:
        module = importlib.import_module(name)
        log(f"{name:<12} {getattr(module, '__version__', '?')}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda, but torch sees no GPU (driver, "
                               "--gpus all, CUDA_VISIBLE_DEVICES?)")
        log(f"GPU          {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}, "
            f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}")
    log(f"distributed  gloo={torch.distributed.is_gloo_available()} "
        f"nccl={torch.distributed.is_nccl_available()}")

    from mmcv.ops import RoIAlign, nms

    feats = torch.rand(1, 4, 16, 16, device=device)
    rois = torch.tensor([[0, 1.0, 1.0, 9.0, 9.0]], device=device)
    pooled = RoIAlign((7, 7), spatial_scale=1.0, sampling_ratio=2)(feats, rois)
    _, keep = nms(torch.tensor([[0, 0, 4, 4], [0, 0, 4, 5.0]], device=device),
                  torch.tensor([0.9, 0.8], device=device), iou_threshold=0.5)
    if pooled.shape != (1, 4, 7, 7) or keep.tolist() != [0]:
        raise RuntimeError(f"mmcv ops gave wrong results on {device}")
    log(f"mmcv ops     RoIAlign and nms run on {device}")

    from brefine.configs import load_config
    from brefine.apis.toy_train import toy_train

    started = time.perf_counter()
    record = next(toy_train(load_config("brefine_tiny_synthetic"), iterations=1, device=device,
                            log=lambda _: None))
    losses = {k: v for k, v in record.items() if k.startswith("loss")}
    if not all(math.isfinite(v) for v in losses.values()):
        raise RuntimeError(f"non-finite loss in the BRefine step: {losses}")
    log(f"BRefine      one training step on {device} in {time.perf_counter() - started:.1f} s, "
        f"loss {record['loss']:.4f}")
    return record
