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

from .runs import SEARCH_TAG


def child_name(trial_id: str, hyper: dict) -> str:
    """Short and telling: the trial's number and its values, e.g. ``t03 λ=0.52 w=0.21 n=2``."""
    number = trial_id.rsplit("_", 1)[-1].lstrip("0") or "0"
    parts = [f"t{int(number):02d}"]
    if "boundary_lambda" in hyper:
        parts.append(f"λ={hyper['boundary_lambda']:.2g}")
    if "rpn_weight" in hyper:
        parts.append(f"w={hyper['rpn_weight']:.2g}")
    if "num_stages" in hyper:
        parts.append(f"n={hyper['num_stages']}")
    if "seed" in hyper:
        parts.append(f"seed={hyper['seed']}")
    return " ".join(parts)


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
    client, experiment_id = connect(search.tracking_uri, search.experiment)
    # PBT may restart this trial, maybe from another's checkpoint: found by its id
    run_id, existed = open_run(
        client, experiment_id, child_name(trial_id, hyper), search.parent_run_id,
        tags={**environment_tags(), SEARCH_TAG: search.name},
        match_tags={TRIAL_TAG: trial_id},
        description=f"trial {trial_id} of search {search.name}: "
                    + ", ".join(f"{k}={v}" for k, v in values.items()) + f", seed {seed}")
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
