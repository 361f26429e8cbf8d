"""Build a detector from a config outside a Runner (tests, benchmarks, CLI)."""

from __future__ import annotations

import logging

from mmengine.config import Config
from mmengine.logging import MMLogger
from torch import nn


def build_detector(cfg: Config, init_weights: bool = True) -> nn.Module:
    """``cfg.model`` → an initialised MMDetection model with BRefine's plugins."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    import brefine.models  # noqa: F401  (registers the plugins)

    model = MODELS.build(cfg.model)
    if init_weights:
        # MMEngine logs one INFO block per parameter when initialising; a
        # Runner keeps that in its log file, here it would flood the console.
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    return model
