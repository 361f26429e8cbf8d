"""Build a detector from a config outside a Runner (tests, benchmarks, CLI)."""

from __future__ import annotations

from mmengine.config import Config
from torch import nn


def build_detector(cfg: Config, init_weights: bool = True) -> nn.Module:
    """``cfg.model`` → an initialised MMDetection model with BRefine's plugins."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    import brefine.models  # noqa: F401  (registers the plugins)

    model = MODELS.build(cfg.model)
    if init_weights:
        model.init_weights()
    return model
