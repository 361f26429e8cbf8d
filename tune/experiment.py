"""One Tune experiment of a search, new or restored, run quietly to its end.

Both stages of a search, the search itself and the confirmation runs, are
Tune experiments under ``<storage>/<name>`` (and ``<storage>/<name>-confirm``):
``--resume`` restores whichever was interrupted and continues it. Tune's own
terminal output is off (its legacy reporter at verbosity 0: no status
tables, no result boxes); :class:`tune.progress.ProgressLines` prints one
line per trial event instead.
"""

from __future__ import annotations

import signal
from typing import Any, Callable

from brefine.configs import ConfigError

# A trial's function only waits on its Ray Train workers: it reserves the
# memory its process takes, and no CPU, so that every CPU of a node can go to
# workers. (A sliver of CPU per trial left a 1-CPU node 0.95 free: a worker
# group of 1-CPU workers then never fitted beside it.)
TRIAL_DRIVER_RESOURCES = {"cpu": 0, "memory": 1 << 30}

# Tune's new output engine prints its start-up table and every trial's
# configuration even at verbosity 0; the legacy one prints nothing at 0
LEGACY_OUTPUT = {"RAY_AIR_NEW_OUTPUT": "0"}
QUIET = 0  # RunConfig(verbose=...)


def trainable(search: Any) -> Any:
    """The Tune trainable of a stage: :func:`tune.trial.run_trial` with the search's
    RunOptions ``search``, holding :data:`TRIAL_DRIVER_RESOURCES`."""
    from ray import tune as ray_tune

    from .trial import run_trial

    return ray_tune.with_resources(ray_tune.with_parameters(run_trial, search=search),
                                   TRIAL_DRIVER_RESOURCES)


def fit_experiment(path: str, trainable: Any, param_space: dict, build: Callable[[], Any],
                   restore: str) -> Any:
    """Tune's results of the experiment at ``path``.

    Args:
        build: makes the Tuner of a new experiment (its RunConfig quiet:
            ``verbose=QUIET``).
        restore: "require" (``--resume`` of the search: restore it or fail),
            "if-present" (restore it when it was started), or "never".

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM stopped it (Tune saved it to resume).
        ConfigError: ``restore`` is "require" and no experiment is at ``path``.
    """
    from ray import tune as ray_tune

    from brefine.driver.ray_cluster import ResourceWaitWatcher, environment

    if restore != "never" and ray_tune.Tuner.can_restore(path):
        tuner = ray_tune.Tuner.restore(path, trainable=trainable, resume_errored=True,
                                       param_space=param_space)
    elif restore == "require":
        raise ConfigError(f"no search to resume at {path}")
    else:
        tuner = build()
    handler = signal.getsignal(signal.SIGINT)
    with ResourceWaitWatcher(), environment(LEGACY_OUTPUT):
        results = tuner.fit()
    # Tune answers Ctrl-C itself: it saves the experiment, stops the trials
    # and returns as if done. Its handler replaces ours for the run and puts
    # ours back only when it fires, which is how an interrupt shows here.
    interrupted = signal.getsignal(signal.SIGINT) is handler
    signal.signal(signal.SIGINT, handler)
    if interrupted:
        raise KeyboardInterrupt
    return results
