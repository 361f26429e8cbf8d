"""One trial: a Ray Train run (DDP workers) whose validations Tune sees.

The trial opens its MLflow child run (or finds it again after a PBT restart,
by its Ray trial id), gives the workers its id, and relays every report (and,
under PBT, every checkpoint) to Tune. It never ends the run: the driver does
when Tune ends the trial (:class:`tune.runs.ChildRunStates`).
"""

from __future__ import annotations

from typing import Any, Optional

from brefine.configs import HYPERPARAMETERS, load_config
from brefine.driver.options import RunOptions
from brefine.tracking.runs import TRIAL_TAG, connect, environment_tags, log_dataset_inputs, open_run

from .names import CONFIRMS_KEY, CONFIRMS_TAG, SEARCH_TAG, child_name


def train_run_name(search: str, trial_id: str, checkpoint: Optional[Any] = None) -> str:
    """The Ray Train run (and worker work dir) of a trial.

    A trial restarted from a Tune checkpoint needs a name of its own: under
    the old one Ray would resume the old run's latest checkpoint.
    """
    from .trial_reporting import checkpoint_run_suffix

    return f"{search}-train-{trial_id}{checkpoint_run_suffix(checkpoint)}"


def run_trial(hyper: dict, search: RunOptions) -> None:
    """One trial of ``search`` (its name, parent run and scale) at the values ``hyper``."""
    from ray import tune

    from brefine.driver.trainer import build_trainer

    from .trial_reporting import fit_reporting_to_tune

    trial_id = tune.get_context().get_trial_id()
    restore = tune.get_checkpoint()
    values = {k: hyper[k] for k in HYPERPARAMETERS if k in hyper}
    seed = hyper.get("seed", search.seed)
    confirms = hyper.get(CONFIRMS_KEY)
    client, experiment_id = connect(search.tracking_uri, search.experiment)
    # PBT may restart this trial, maybe from another's checkpoint: found by its id
    run_id, existed = open_run(
        client, experiment_id, child_name(trial_id, hyper, "c" if confirms else "t"),
        search.parent_run_id,
        tags={**environment_tags(), SEARCH_TAG: search.name,
              **({CONFIRMS_TAG: confirms} if confirms else {})},
        match_tags={TRIAL_TAG: trial_id},
        description=(f"confirms {confirms}" if confirms else "trial") +
                    f" ({trial_id}) of search {search.name}: " + ", ".join(
                        f"{k}={values.get(k, search.overrides.get(k))}"
                        for k in HYPERPARAMETERS) + f", seed {seed}")
    if not existed:
        log_dataset_inputs(client, run_id, load_config(search.config, search.overrides,
                                                       search.data_root), search.data_root)
    name = train_run_name(search.name, trial_id, restore)
    worker_config = search.worker_config(
        run_id, name=name, seed=seed, params={"search": search.name, "seed": seed},
        overrides=values, resume_from=restore,
        hyperparameter_metrics=search.report_checkpoints)
    fit_reporting_to_tune(
        lambda callbacks: build_trainer(search, worker_config, name=name, callbacks=callbacks),
        with_checkpoints=search.report_checkpoints)
