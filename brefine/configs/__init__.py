"""Config loading: mmengine configs plus BRefine's top-level hyperparameters.

Every config declares ``num_stages``, ``boundary_lambda`` and ``rpn_weight``
at top level (None in the Mask R-CNN baselines). The values written inside
``model`` are evaluated when the file is read, so an override of a top-level
key (``--set num_stages=2``, a Tune trial) must be written through to the
model again: :func:`load_config` does this after merging overrides, and it is
the only way the platform reads configs.
"""

from __future__ import annotations

import ast
import numbers
from pathlib import Path
from typing import Any, Mapping

from mmengine.config import Config, ConfigDict

CONFIG_DIR = Path(__file__).resolve().parent
HYPERPARAMETERS = ("num_stages", "boundary_lambda", "rpn_weight")

__all__ = ["CONFIG_DIR", "HYPERPARAMETERS", "ConfigError", "apply_hyperparameters",
           "apply_data_root", "list_configs", "load_config", "parse_overrides", "resolve_config_path"]


class ConfigError(ValueError):
    """A config or an override is invalid; the message names the key or file."""


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.name.startswith("_"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a config shipped in brefine/configs."""
    path = Path(name_or_path)
    if path.is_file():
        return path.resolve()
    shipped = CONFIG_DIR / (path.name if path.suffix == ".py" else f"{path.name}.py")
    if shipped.is_file():
        return shipped
    raise ConfigError(f"config {str(name_or_path)!r} is neither a file nor a shipped config; "
                      f"shipped: {', '.join(list_configs())}")


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a.b=1", "c=[1, 2]", "name=foo"]`` → {"a.b": 1, "c": [1, 2], "name": "foo"}.

    Values are Python literals where they parse as one, strings otherwise.
    """
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw
        overrides[key.strip()] = value
    return overrides


def _check_key_exists(cfg: Config, dotted: str) -> None:
    node: Any = cfg
    walked = []
    for part in dotted.split("."):
        walked.append(part)
        if isinstance(node, (dict, ConfigDict, Config)) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise ConfigError(f"unknown config key {'.'.join(walked)!r} in override {dotted!r} "
                              f"(config {cfg.filename})")


def _validated(key: str, value: Any) -> int | float:
    """The value as a plain int/float, or ConfigError naming the key."""
    if key == "num_stages":
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
                or not 1 <= value <= 4:
            raise ConfigError(f"num_stages must be an integer in 1..4, got {value!r}")
        return int(value)
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if key == "boundary_lambda" and not value >= 0:
        raise ConfigError(f"boundary_lambda must be >= 0, got {value!r}")
    if key == "rpn_weight" and not value > 0:
        raise ConfigError(f"rpn_weight must be > 0, got {value!r}")
    return float(value)


def apply_hyperparameters(cfg: Config) -> Config:
    """Validate the top-level hyperparameters and write them into the model."""
    mask_head = cfg.model.get("roi_head", {}).get("mask_head", {})
    sections = {"num_stages": mask_head, "boundary_lambda": mask_head,
                "rpn_weight": cfg.model.get("rpn_head", {})}
    for key, section in sections.items():
        if cfg.get(key) is None:
            continue
        if key not in section:
            raise ConfigError(f"{key}={cfg[key]!r} is set but config {cfg.filename} has no part "
                              f"that uses it (a Mask R-CNN baseline?)")
        cfg[key] = section[key] = _validated(key, cfg[key])
    rcnn_train = cfg.model.get("train_cfg", {}).get("rcnn")
    if cfg.get("num_stages") is not None and rcnn_train is not None:
        rcnn_train["mask_size"] = 14 * 2 ** (cfg.num_stages - 1)
    return cfg


DATA_SECTIONS = ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator",
                 "test_evaluator")


def apply_data_root(cfg: Config, data_root: str) -> Config:
    """Point every dataset and evaluator of ``cfg`` at ``data_root``.

    Paths under the config's own ``data_root`` (annotation files of the
    evaluators, Cityscapes' ground-truth folder) move with it.
    """
    old = str(cfg.get("data_root") or "")
    new = str(data_root).rstrip("/") + "/"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (new if k == "data_root" else rewrite(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        if old and isinstance(node, str) and node.startswith(old):
            return new + node[len(old):]
        return node

    for section in DATA_SECTIONS:
        if section in cfg and cfg[section] is not None:
            cfg[section] = rewrite(cfg[section].to_dict() if hasattr(cfg[section], "to_dict")
                                   else cfg[section])
    cfg.data_root = new
    return cfg


def load_config(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None,
                data_root: str | None = None) -> Config:
    """Read a config, merge dotted-key overrides, apply the hyperparameters.

    ``data_root`` (or an override of the top-level ``data_root`` key) moves
    the datasets and evaluators, see :func:`apply_data_root`.

    Raises:
        ConfigError: unknown config, unknown override key, or a hyperparameter
            out of range; the message names it.
    """
    cfg = Config.fromfile(str(resolve_config_path(name_or_path)))
    overrides = dict(overrides or {})
    data_root = overrides.pop("data_root", data_root)
    for key in overrides:
        _check_key_exists(cfg, key)
    if overrides:
        cfg.merge_from_dict(overrides)
    if data_root is not None:
        apply_data_root(cfg, data_root)
    return apply_hyperparameters(cfg)
