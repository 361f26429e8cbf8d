"""Checkpoint files: where they are, and loading them without running their code.

A ``.pth`` file is a pickle, and unpickling can run any code the file names.
Checkpoints here load with ``torch.load(weights_only=True)`` and an explicit
allow-list of the types MMEngine checkpoints hold (tensors, containers, the
numpy arrays and :class:`~mmengine.logging.HistoryBuffer` of the message
hub). A file that needs anything else is refused with a message; nothing
falls back to a full unpickle unless the user said they trust the file
(``--trust-checkpoint``). :func:`install_safe_loader` puts this loader under
MMEngine's, so ``load_from`` and ``resume`` of every Runner use it too.

A run resumes from its newest checkpoint that loads (:func:`restore_intact`):
a last checkpoint cut short (a node lost while writing it, a full disk) is
named in a warning and the one before it is used. That is the newest the
run wrote, whether or not Ray's controller had committed it: a Ctrl-C in
the seconds between a worker's upload and the controller's bookkeeping
would otherwise lose it (:func:`run_checkpoints`).
"""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence

CHECKPOINT_FILE = "checkpoint.pth"


class CheckpointError(ValueError):
    """A checkpoint is missing, unsafe to load, or does not fit the model."""


class UnreadableCheckpoint(CheckpointError):
    """A checkpoint file is truncated, damaged, or not a checkpoint at all."""


def allowed_globals() -> list:
    """The non-tensor types an MMEngine checkpoint of this platform contains."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer

    # The message hub's HistoryBuffers pickle their statistics methods as
    # getattr(HistoryBuffer, "min"), hence getattr: the weights-only unpickler
    # still calls nothing outside this list, so what getattr fetches cannot run.
    return [np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray,
            np.dtype, type(np.dtype(np.uint32)), type(np.dtype(np.float64)),
            type(np.dtype(np.int64)), type(np.dtype(np.float32)), HistoryBuffer, getattr]


def load_checkpoint_file(path: str | Path, map_location: Any = "cpu", trust: bool = False) -> Any:
    """``torch.load`` restricted to :func:`allowed_globals`; ``trust`` lifts the restriction."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        if trust:
            return torch.load(path, map_location=map_location, weights_only=False)
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except (EOFError, RuntimeError, OSError) as err:  # truncated, or not a checkpoint at all
        raise UnreadableCheckpoint(f"checkpoint {path} cannot be read ({type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else 'truncated?'}); "
                              "is the file complete?") from None
    except pickle.UnpicklingError as err:
        # torch's message says which global it met on one of its lines
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        reason = next((line for line in lines if "global" in line.lower()
                       or "unrecognized" in line), lines[0] if lines else type(err).__name__)
        raise CheckpointError(
            f"refusing to load checkpoint {path}: it holds objects outside the allow-list of "
            f"safe types ({reason}). Loading it would run code from the file. If you made it "
            "or trust where it came from, pass --trust-checkpoint") from None


TRUST_ENV = "BREFINE_TRUST_CHECKPOINTS"  # "1": every checkpoint is trusted


def trusts(trust: bool = False) -> bool:
    """Whether checkpoints load without the allow-list: ``trust``, or the environment says so."""
    return trust or os.environ.get(TRUST_ENV) == "1"


def install_safe_loader(trust: bool = False) -> None:
    """Make MMEngine load local checkpoints through :func:`load_checkpoint_file`.

    ``trust`` (or ``$BREFINE_TRUST_CHECKPOINTS=1``) allows full unpickling.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    trusted = trusts(trust)

    def load_local(filename: str, map_location: Any = None) -> Any:
        return load_checkpoint_file(filename, map_location, trust=trusted)

    CheckpointLoader.register_scheme(prefixes="", loader=load_local, force=True)


def run_checkpoints(filesystem: Any, folder: str, latest: Any = None) -> list:
    """The checkpoints (``ray.train.Checkpoint``) in a run's storage ``folder``, newest first.

    Ray Train keeps a run's checkpoints as folders ``checkpoint_<date and
    time>`` of the run's folder, so names order them by age. Every one is
    listed, also one Ray's controller never committed: a worker uploads its
    checkpoint whole before it reports, so a run stopped between the two left
    a checkpoint that is its latest state (one cut short while uploading
    fails to load in :func:`restore_intact`, which moves on to the next).

    ``filesystem``, ``folder``: a ``pyarrow.fs`` file system and the run's
    folder on it (``<storage>/<Ray run name>``).
    ``latest``: Ray's own latest checkpoint, all there is when the folder
    cannot be listed (``[]`` without it).
    """
    import pyarrow.fs as pafs
    from ray.train import Checkpoint

    folder = folder.rstrip("/")
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    except OSError:
        return [latest] if latest is not None else []
    names = sorted((info.base_name for info in infos if info.type == pafs.FileType.Directory
                    and info.base_name.startswith("checkpoint_")), reverse=True)
    return [Checkpoint(f"{folder}/{name}", filesystem) for name in names]


def checkpoint_file_uri(checkpoint: Any) -> str:
    """Where a ``ray.train.Checkpoint``'s ``.pth`` is, as a user would type it (``s3://…``)."""
    scheme = checkpoint.filesystem.type_name
    prefix = "" if scheme == "local" else f"{scheme}://"
    return f"{prefix}{checkpoint.path.rstrip('/')}/{CHECKPOINT_FILE}"


def restore_intact(candidates: Sequence[Any], target: Path, trust: bool = False,
                   warn: Callable[[str], None] = print) -> Path:
    """Copy the first of ``candidates`` (``ray.train.Checkpoint``) that loads into ``target``.

    Each one cut short or damaged is named by ``warn`` and skipped: resuming
    from the checkpoint before it costs some iterations, failing costs the
    run. Loading it whole is the check, as a resume will load it.

    Returns:
        ``target/checkpoint.pth``.

    Raises:
        UnreadableCheckpoint: none of them loads; the message names each.
        CheckpointError: one holds types outside the allow-list; refused as
            any such file is, never skipped for an older one.
    """
    target.mkdir(parents=True, exist_ok=True)
    local = target / CHECKPOINT_FILE
    partial = target / f".{CHECKPOINT_FILE}.partial"
    unreadable = []
    for checkpoint in candidates:
        try:
            with checkpoint.as_directory() as folder:
                shutil.copy2(Path(folder) / CHECKPOINT_FILE, partial)
            load_checkpoint_file(partial, trust=trusts(trust))
            partial.replace(local)  # a reader of ``local`` never sees half a file
            return local
        except OSError as err:  # the folder lacks the file, or cannot be downloaded
            problem = f"cannot be fetched ({type(err).__name__}: {err})"
        except UnreadableCheckpoint:
            problem = "is cut short or damaged"
        unreadable.append(checkpoint_file_uri(checkpoint))
        warn(f"WARNING: checkpoint {unreadable[-1]} {problem}; trying the one before it")
    raise UnreadableCheckpoint("no checkpoint of this run can be read, so it cannot resume: "
                               + ", ".join(unreadable))


def fetch_checkpoint(checkpoint: str, out_dir: Path) -> str:
    """A local ``.pth`` for a file or a Ray checkpoint folder, local or a URI (s3://)."""
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(checkpoint) if "://" in checkpoint else \
            (pafs.LocalFileSystem(), str(Path(checkpoint).resolve()))
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            path, info = f"{path}/{CHECKPOINT_FILE}", fs.get_file_info(f"{path}/{CHECKPOINT_FILE}")
    except OSError as err:
        raise CheckpointError(f"cannot open checkpoint {checkpoint}: {err}") from None
    if info.type != pafs.FileType.File:
        raise CheckpointError(f"checkpoint {checkpoint} does not exist (expected a .pth file "
                              f"or a Ray checkpoint folder holding {CHECKPOINT_FILE})")
    if isinstance(fs, pafs.LocalFileSystem):
        return path
    local = out_dir / CHECKPOINT_FILE
    pafs.copy_files(path, str(local), source_filesystem=fs,
                    destination_filesystem=pafs.LocalFileSystem())
    return str(local)


def load_weights_strictly(runner, checkpoint: str) -> None:
    """Load a checkpoint into a Runner's model; every weight must be there.

    MMEngine's default loads what matches and only warns about the rest, which
    evaluates a random model with a straight face; here a checkpoint for
    another model is an error that says how far off it is.
    """
    try:
        runner.load_checkpoint(checkpoint, map_location="cpu", strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise CheckpointError(f"checkpoint {checkpoint} does not fit the config's model: "
                              + " ".join(lines)[:600]) from None
