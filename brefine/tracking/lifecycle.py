"""A run's life, the same for ``brefine train``, a search and the accuracy harness.

Its name is guarded while it lives (:func:`run_lock`), it is created or found
again (:func:`brefine.tracking.runs.open_run`), and it always ends in a state
that says what happened (:func:`ended_by_outcome`): FINISHED when the work
returned, KILLED when it was interrupted (Ctrl-C, or SIGTERM answered as
Ctrl-C), FAILED on any other error. An MLflow run never stays RUNNING
because its driver went away through an exception.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from .runs import TrackingError, find_run

OWNER_TAG = "brefine.owner"  # pid@host of the driver a RUNNING run belongs to


class RunNameInUse(TrackingError):
    """Another live run on this machine has the same name and work dir."""


@contextmanager
def run_lock(work_dir: Path, name: str, kind: str) -> Iterator[None]:
    """Hold ``<work dir>/.locks/<name>.lock`` while the run lives.

    Two live runs of one name would share an MLflow run and a checkpoint
    folder; the second is refused with the first one's pid, host and start.
    The lock is the kernel's (flock): a run that dies releases it.

    Raises:
        RunNameInUse: the name is held by a live run.
    """
    folder = Path(work_dir) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunNameInUse(f"a {kind} named {name!r} is running already ({holder}); "
                               "wait for it, stop it, or pick another --name") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        lock.flush()
        yield


@contextmanager
def ended_by_outcome(client: Any, run_id: str, finished_before: bool = False) -> Iterator[None]:
    """End the run FINISHED, KILLED (KeyboardInterrupt) or FAILED (any other
    exception) as the block ends; exceptions go on to the caller.

    ``finished_before``: the block continues a run that had FINISHED (a longer
    schedule under the same name). An attempt that fails or is stopped then
    leaves it FINISHED, as it was, with the tag ``brefine.failed_continuation``
    saying what happened: a finished run is never rewritten by a later attempt.
    """
    def end(status: str, err: BaseException) -> None:
        if finished_before:
            client.set_tag(run_id, "brefine.failed_continuation",
                           f"{status}: {type(err).__name__}: {err}"[:500])
            status = "FINISHED"
        client.set_terminated(run_id, status)

    try:
        yield
    except KeyboardInterrupt as err:
        end("KILLED", err)
        raise
    except BaseException as err:
        end("FAILED", err)
        raise
    client.set_terminated(run_id, "FINISHED")


def _alive_here(owner: str) -> bool:
    """Whether ``pid@host`` names a live process of this host (unknown hosts count as alive)."""
    pid, _, host = owner.partition("@")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_run_name(client: Any, experiment_id: str, name: str) -> Optional[str]:
    """Refuse a name whose MLflow run is live elsewhere; returns its status, if it has a run.

    The name's state is its MLflow run and its storage, which other work dirs
    share: a RUNNING run whose driver lives, on this host or another, is not
    joined. One whose driver on this host is gone (killed without ending it)
    is taken over. A FINISHED run may be continued (a longer schedule); pass
    its status to :func:`ended_by_outcome` so that a failed attempt leaves it
    FINISHED.

    Raises:
        RunNameInUse: the name's run is live; the message names its driver.
    """
    found = find_run(client, experiment_id, name)
    if found is None:
        return None
    status, owner = found.info.status, found.data.tags.get(OWNER_TAG, "")
    if status == "RUNNING" and owner and _alive_here(owner):
        raise RunNameInUse(f"run {name!r} is running ({owner}, MLflow run "
                           f"{found.info.run_id}); wait for it, stop it, or pick another --name")
    return status


def mark_owner(client: Any, run_id: str) -> None:
    """Tag the run with this driver, which :func:`claim_run_name` checks."""
    client.set_tag(run_id, OWNER_TAG, f"{os.getpid()}@{socket.gethostname()}")
