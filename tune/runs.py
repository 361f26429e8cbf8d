"""MLflow bookkeeping of a search: the parent run, a child per trial, honest states.

The parent run is the driver's; each trial opens its child (found again by
its Ray trial id when PBT restarts it); :class:`ChildRunStates`, a Tune
callback in the driver, ends each child the moment Tune ends its trial:
FINISHED (with ``brefine.stopped_early`` when a scheduler stopped it) or
FAILED, with the trial's own end time and its cost (training s/iter,
inference images/s) as metrics. Whatever is still RUNNING when the
search stops (Ctrl-C) ends KILLED with the parent.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from ray.tune import Callback

from brefine.tracking.runs import (PARENT_TAG, STOPPED_TAG, TRIAL_TAG, find_run,
                                   metric_entities, open_run, storage_uri)

from .names import COST_METRICS, SEARCH_TAG

ROLE_TAG = "brefine.role"


def open_parent(client: Any, experiment_id: str, search: str, resume: bool,
                tags: dict, description: str) -> str:
    """The search's parent run: created, or (``resume``) the interrupted one continued.

    Raises:
        TrackingError: ``resume`` and no such search, or a new search whose name is taken.
    """
    run_id, _ = open_run(client, experiment_id, search,
                         tags={**tags, SEARCH_TAG: search, ROLE_TAG: "search"},
                         description=description, existing="require" if resume else "refuse")
    return run_id


def find_child(client: Any, experiment_id: str, parent_id: str, trial_id: str) -> Optional[Any]:
    """The child run of trial ``trial_id`` under ``parent_id``, or None."""
    return find_run(client, experiment_id, parent_id=parent_id, tags={TRIAL_TAG: trial_id})


def children(client: Any, experiment_id: str, parent_id: str) -> list:
    """Every child run of ``parent_id`` (the search's trials), whatever its state."""
    return client.search_runs([experiment_id],
                              filter_string=f"tags.`{PARENT_TAG}` = '{parent_id}'")


class ChildRunStates(Callback):
    """Ends each trial's child run when Tune ends the trial (runs in the driver)."""

    def __init__(self, client: Any, experiment_id: str, parent_id: str, max_iters: int,
                 storage: str) -> None:
        self.client, self.experiment_id, self.parent_id = client, experiment_id, parent_id
        self.max_iters, self.storage = max_iters, storage

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        """End the trial's child run FINISHED, tagged with whether it was stopped early."""
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        """End the trial's child run FAILED."""
        self._end(trial, "FAILED")

    def _end(self, trial, status: str) -> None:
        run = find_child(self.client, self.experiment_id, self.parent_id, trial.trial_id)
        if run is None:  # the trial ended before it opened its run
            return
        result = trial.last_result or {}
        if status == "FINISHED":
            reached = result.get("iteration", 0)
            self.client.set_tag(run.info.run_id, STOPPED_TAG, str(reached < self.max_iters).lower())
        cost = {k: result[k] for k in COST_METRICS if isinstance(result.get(k), (int, float))}
        if cost:  # the trial's cost beside its accuracy, on its own run
            self.client.log_batch(run.info.run_id, metrics=metric_entities(
                cost, step=int(result.get("iteration", 0))))
        if result.get("checkpoint_path"):
            self.client.set_tag(run.info.run_id, "checkpoint_uri",
                                storage_uri(result["checkpoint_path"], self.storage))
        self.client.set_terminated(run.info.run_id, status, end_time=int(time.time() * 1000))


def end_remaining(client: Any, experiment_id: str, parent_id: str, status: str) -> int:
    """Every child still RUNNING ends ``status``; returns how many."""
    running = [r for r in children(client, experiment_id, parent_id)
               if r.info.status == "RUNNING"]
    for run in running:
        client.set_terminated(run.info.run_id, status)
    return len(running)
