"""Where a config's data is: the data root a run is given, made ready on this node."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from mmengine.config import Config

from brefine.configs import load_config

from .remote import is_s3_uri, localize_data_root


def resolve_data(config: str, overrides: Optional[dict] = None,
                 data_root: Optional[str] = None) -> tuple[Config, Optional[str]]:
    """The config with its data in place, and the data root workers are given.

    A ``data_root`` in S3 (argument, override or the config's environment
    variable) is synced to this node's cache (workers sync the same URI on
    their own nodes). The built-in synthetic data is generated into the cache
    when the config's default location has none, as every command finds it.

    Returns:
        (config, data root): the root is the ``s3://`` URI when the data came
        from S3, the generated folder for the built-in data, else ``data_root``.

    Raises:
        ConfigError: an unknown config or a bad override.
        DatasetCheckError: an ``s3://`` root cannot be listed, is empty or
            cannot be downloaded.
    """
    overrides = dict(overrides or {})
    cfg = load_config(config, overrides, data_root)
    if is_s3_uri(str(cfg.data_root).rstrip("/")):
        data_root = str(cfg.data_root).rstrip("/")
        overrides.pop("data_root", None)
        cfg = load_config(config, overrides, localize_data_root(data_root))
    if data_root is None and cfg.get("dataset_name") == "synthetic" and \
            not (Path(cfg.data_root) / cfg.val_ann_file).is_file():
        from .synthetic import default_synthetic_root

        data_root = str(default_synthetic_root())
        cfg = load_config(config, overrides, data_root)
    return cfg, data_root
