"""A Ray Train run inside a Tune trial, reporting metrics *and* checkpoints to Tune.

Ray 2.60's ``TuneReportCallback`` forwards a Train run's metrics to its Tune
trial but not its checkpoints, and schedulers that move checkpoints between
trials (Population Based Training) need them. Here the Train controller's
callback hands (metrics, checkpoint) through a one-slot queue to the trial
function, which reports both with ``tune.report``. The slot keeps the same
back-pressure as Ray's callback: training waits while Tune decides (PBT may
pause or restart the trial at a report).
"""

from __future__ import annotations

import queue as std_queue
from typing import Any, Callable, Optional

from ray.train.v2.api.callback import UserCallback

CHECKPOINT_PATH_KEY = "checkpoint_path"  # the key TuneReportCallback uses


def tune_result(metrics: dict, checkpoint: Optional[Any]) -> dict:
    """What the trial reports to Tune: rank 0's metrics and where the checkpoint is."""
    return {**metrics, **({CHECKPOINT_PATH_KEY: checkpoint.path} if checkpoint is not None
                          else {})}


class TuneReportCheckpointCallback(UserCallback):
    """Runs in the Train controller: rank 0's metrics (and the checkpoint) to the trial."""

    def __init__(self, channel: Any, with_checkpoint: bool) -> None:
        self.channel = channel
        self.with_checkpoint = with_checkpoint

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        """Hand the report to the trial's thread (waiting while the slot is full)."""
        self.channel.put((tune_result(metrics[0], checkpoint),
                          checkpoint if self.with_checkpoint else None))


def fit_reporting_to_tune(build: Callable[[list], Any], with_checkpoints: bool) -> Any:
    """``build(callbacks)`` -> a trainer; fit it, relaying its reports to Tune.

    A Train run that has nothing left to train (it reached its end, and was
    interrupted before Tune received its last report) reports nothing when
    the trial runs again: its last checkpoint's result is relayed then, or
    the trial would end on the report before it.

    Returns the trainer's Result; re-raises its error in the trial.
    """
    from ray import tune
    from ray.util.queue import Empty, Queue

    # here, not at the top: the Train controller unpickles this module's callback,
    # and importing the trainer there would load the whole model stack (mmdet,
    # mlflow) into it, ~10 s of every trial's start on 2 cores
    from brefine.driver.trainer import BackgroundFit

    channel = Queue(maxsize=1, actor_options={"num_cpus": 0})
    trainer = build([TuneReportCheckpointCallback(channel, with_checkpoints)])
    fit = BackgroundFit(trainer)
    relayed = 0
    while True:
        try:
            metrics, checkpoint = channel.get(timeout=1.0)
        except (Empty, std_queue.Empty):
            if not fit.is_alive() and channel.empty():
                break
            continue
        tune.report(metrics, checkpoint=checkpoint)
        relayed += 1
    result = fit.result()
    if not relayed and result.metrics:
        tune.report(tune_result(result.metrics, result.checkpoint),
                    checkpoint=result.checkpoint if with_checkpoints else None)
    return result


def checkpoint_run_suffix(checkpoint: Optional[Any]) -> str:
    """A Train run restarted from a Tune checkpoint needs a name of its own:
    under the old name Ray would resume the old run's latest checkpoint."""
    if checkpoint is None:
        return ""
    import hashlib

    return "-" + hashlib.sha1(checkpoint.path.encode()).hexdigest()[:8]
