"""Config loading: mmengine configs plus BRefine's top-level hyperparameters.

Every config declares ``num_stages``, ``boundary_lambda`` and ``rpn_weight``
at top level (None in the Mask R-CNN baselines); their table is
:mod:`brefine.configs.hyperparameters`. The values written inside ``model``
are evaluated when the file is read, so an override of a top-level key
(``--set num_stages=2``, a Tune trial) must be written through to the model
again: :func:`load_config` does this after merging overrides, and it is the
only way the platform reads configs.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Mapping

from mmengine.config import Config, ConfigDict

import brefine.quiet  # noqa: F401  (before anything imports mmdet)

from .hyperparameters import HYPERPARAMETERS, ConfigError, Hyperparameter

CONFIG_DIR = Path(__file__).resolve().parent

__all__ = ["CONFIG_DIR", "HYPERPARAMETERS", "ConfigError", "Hyperparameter",
           "apply_hyperparameters", "apply_data_root", "list_configs", "load_config",
           "COCO_METRICS", "evaluators", "find_evaluator", "parse_overrides", "resolve_config_path",
           "schedule_overrides", "warmup_overrides"]


# Python modules of this package, not configs
PACKAGE_MODULES = {"__init__", "hyperparameters"}


def list_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.py")
                  if not p.name.startswith("_") and p.stem not in PACKAGE_MODULES)


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a config shipped in brefine/configs."""
    path = Path(name_or_path)
    if path.is_file():
        return path.resolve()
    shipped = CONFIG_DIR / (path.name if path.suffix == ".py" else f"{path.name}.py")
    if shipped.is_file() and shipped.stem not in PACKAGE_MODULES:
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


def _lookup(node: Any, dotted: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path through dicts and lists."""
    for part in dotted.split("."):
        if isinstance(node, (dict, ConfigDict, Config)) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _check_key_exists(cfg: Config, dotted: str) -> None:
    parts = dotted.split(".")
    for depth in range(1, len(parts) + 1):
        if not _lookup(cfg, ".".join(parts[:depth]))[0]:
            raise ConfigError(f"unknown config key {'.'.join(parts[:depth])!r} in override "
                              f"{dotted!r} (config {cfg.filename})")


def _check_value_type(cfg: Config, dotted: str, value: Any) -> None:
    """A number in the config takes a number: ``lr=abc`` fails here, not in a worker."""
    found, current = _lookup(cfg, dotted)
    numeric = (int, float)
    if found and isinstance(current, numeric) and not isinstance(current, bool) and \
            value is not None and not (isinstance(value, numeric) and not isinstance(value, bool)):
        raise ConfigError(f"override {dotted}={value!r}: the config's value is the number "
                          f"{current!r}; give a number (or None)")


def _read(path: Path) -> Config:
    """``Config.fromfile``; a config that is not valid Python is a ConfigError naming the file."""
    try:
        return Config.fromfile(str(path))
    except (SyntaxError, NameError, ImportError, TypeError, KeyError, AttributeError) as err:
        where = f" (line {err.lineno})" if isinstance(err, SyntaxError) and err.lineno else ""
        raise ConfigError(f"config {path} cannot be read{where}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from None


def apply_hyperparameters(cfg: Config) -> Config:
    """Validate the top-level hyperparameters and write them into the model."""
    for name, hyper in HYPERPARAMETERS.items():
        if cfg.get(name) is None:
            continue
        parent, _, leaf = hyper.target.rpartition(".")
        found, section = _lookup(cfg.model, parent)
        if not found or leaf not in section:
            raise ConfigError(f"{name}={cfg[name]!r} is set but config {cfg.filename} has no "
                              f"model.{hyper.target} that uses it (a Mask R-CNN baseline?)")
        cfg[name] = section[leaf] = hyper.validate(cfg[name])
    return cfg


def evaluators(cfg: Config, section: str = "val_evaluator") -> list:
    """The evaluator configs of a section, a list whether the config wrote one or several."""
    found = cfg.get(section)
    if found is None:
        return []
    return list(found) if isinstance(found, (list, tuple)) else [found]


# MMDetection's COCO metric on pycocotools, and the same on faster-coco-eval
COCO_METRICS = ("FasterCocoMetric", "CocoMetric")


def find_evaluator(cfg: Config, type_names: str | tuple[str, ...],
                   section: str = "val_evaluator"):
    """The first evaluator of one of ``type_names`` in ``section``, or None.

    The COCO metric (whichever implementation) is ``find_evaluator(cfg, COCO_METRICS)``.
    """
    names = (type_names,) if isinstance(type_names, str) else type_names
    return next((e for e in evaluators(cfg, section) if e.get("type") in names), None)


def schedule_overrides(cfg: Config, max_iters: int) -> dict[str, Any]:
    """Dotted overrides that stretch an iteration-based schedule to ``max_iters``.

    The validation interval, the LR milestones and the end of every scheduler
    that lasts the whole run scale with it (so the schedule keeps its shape);
    a warm-up that ends earlier keeps its length.
    """
    old = cfg.train_cfg.get("max_iters")
    if old is None:
        raise ConfigError(f"config {cfg.filename} trains by epochs; --max-iters needs an "
                          "iteration-based schedule (train_cfg.max_iters)")
    if not isinstance(max_iters, int) or max_iters < 1:
        raise ConfigError(f"--max-iters must be a positive integer, got {max_iters!r}")
    out: dict[str, Any] = {"train_cfg.max_iters": max_iters}
    if cfg.train_cfg.get("val_interval"):
        out["train_cfg.val_interval"] = max(1, round(cfg.train_cfg.val_interval * max_iters / old))
    schedulers = cfg.get("param_scheduler") or []
    for i, sched in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        if sched.get("by_epoch", True):
            continue
        if sched.get("end") == old:
            out[f"param_scheduler.{i}.end"] = max_iters
        if "milestones" in sched:
            out[f"param_scheduler.{i}.milestones"] = [max(1, round(m * max_iters / old))
                                                      for m in sched.milestones]
    return out


def warmup_overrides(cfg: Config, iters: int) -> dict[str, Any]:
    """Dotted overrides that make every iteration-based warm-up last ``iters``.

    A warm-up is a scheduler that starts at iteration 0 and ends before the
    run does (MMDetection's LinearLR of the first 500 iterations, say).
    """
    if not isinstance(iters, int) or iters < 1:
        raise ConfigError(f"a warm-up must last a positive number of iterations, got {iters!r}")
    last = cfg.train_cfg.get("max_iters")
    schedulers = cfg.get("param_scheduler") or []
    out: dict[str, Any] = {}
    for i, sched in enumerate(schedulers if isinstance(schedulers, list) else [schedulers]):
        if sched.get("by_epoch", True) or sched.get("begin", 0) != 0:
            continue
        if last is None or sched.get("end", last) < last:
            out[f"param_scheduler.{i}.end"] = iters
    return out


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
    """Read a config, merge its dataset's model settings and the dotted-key
    overrides, apply the hyperparameters.

    ``data_root`` (or an override of the top-level ``data_root`` key) moves
    the datasets and evaluators, see :func:`apply_data_root`.

    Raises:
        ConfigError: unknown or unreadable config, unknown override key, a
            number overridden by something else, or a hyperparameter out of
            range; the message names it.
    """
    cfg = _read(resolve_config_path(name_or_path))
    # what the dataset decides of the model (its class count, say), before the user's word
    cfg.merge_from_dict(dict(cfg.get("dataset_model_settings") or {}))
    overrides = dict(overrides or {})
    data_root = overrides.pop("data_root", data_root)
    # in order, each key checked against the config as merged so far: a key
    # that one override adds (--amp's optim_wrapper.loss_scale) can be set by a later one
    for key, value in overrides.items():
        _check_key_exists(cfg, key)
        _check_value_type(cfg, key, value)
        cfg.merge_from_dict({key: value})
    if data_root is not None:
        apply_data_root(cfg, data_root)
    return apply_hyperparameters(cfg)
