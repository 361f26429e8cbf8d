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

from brefine.driver.trainer import BackgroundFit

CHECKPOINT_PATH_KEY = "checkpoint_path"  # the key TuneReportCallback uses
TABLE_METRICS = ("coco/segm_mAP", "lvis/segm_AP", "boundary_AP", "iteration")


class TuneReportCheckpointCallback(UserCallback):
    """Runs in the Train controller: rank 0's metrics (and the checkpoint) to the trial."""

    def __init__(self, channel: Any, with_checkpoint: bool) -> None:
        self.channel = channel
        self.with_checkpoint = with_checkpoint

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        # Tune's progress table shows the first four metrics of a result
        first = [k for k in TABLE_METRICS if k in metrics[0]]
        item = {**{k: metrics[0][k] for k in first}, **metrics[0]}
        if checkpoint is not None:
            item[CHECKPOINT_PATH_KEY] = checkpoint.path
        self.channel.put((item, checkpoint if self.with_checkpoint else None))


def fit_reporting_to_tune(build: Callable[[list], Any], with_checkpoints: bool) -> Any:
    """``build(callbacks)`` -> a trainer; fit it, relaying its reports to Tune.

    Returns the trainer's Result; re-raises its error in the trial.
    """
    from ray import tune
    from ray.util.queue import Empty, Queue

    channel = Queue(maxsize=1, actor_options={"num_cpus": 0})
    trainer = build([TuneReportCheckpointCallback(channel, with_checkpoints)])
    fit = BackgroundFit(trainer)
    while True:
        try:
            metrics, checkpoint = channel.get(timeout=1.0)
        except (Empty, std_queue.Empty):
            if not fit.is_alive() and channel.empty():
                break
            continue
        tune.report(metrics, checkpoint=checkpoint)
    return fit.result()


def checkpoint_run_suffix(checkpoint: Optional[Any]) -> str:
    """A Train run restarted from a Tune checkpoint needs a name of its own:
    under the old name Ray would resume the old run's latest checkpoint."""
    if checkpoint is None:
        return ""
    import hashlib

    return "-" + hashlib.sha1(checkpoint.path.encode()).hexdigest()[:8]
