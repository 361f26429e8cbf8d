"""One trial: a Ray Train run (DDP workers) whose validations Tune sees.

The trial opens its MLflow child run (or finds it again after a PBT restart,
by its Ray trial id), gives the workers its id, and relays every report (and,
under PBT, every checkpoint) to Tune. It never ends the run: the driver does
when Tune ends the trial (:class:`tune.runs.ChildRunStates`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from brefine.configs import HYPERPARAMETERS, load_config
from brefine.driver.launch import RunSpec
from brefine.tracking.runs import (PARENT_TAG, TRIAL_TAG, connect, environment_tags,
                                     log_dataset_inputs)
from brefine.driver.trainer import ScaleOptions

from .runs import SEARCH_TAG, find_child


@dataclass
class TrialSetup:
    """What every trial of a search shares (picklable: the Config stays on the driver)."""

    spec: RunSpec
    scale: ScaleOptions
    storage: str
    search: str
    parent_run_id: str
    seed: int
    report_checkpoints: bool  # PBT moves checkpoints between trials
    log_to_file: bool
    params: dict


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
    from tune.trial_reporting import checkpoint_run_suffix

    return f"{search}-train-{trial_id}{checkpoint_run_suffix(checkpoint)}"


def run_trial(hyper: dict, setup: TrialSetup) -> None:
    from ray import tune

    from brefine.driver.trainer import build_trainer
    from tune.trial_reporting import fit_reporting_to_tune

    trial_id = tune.get_context().get_trial_id()
    restore = tune.get_checkpoint()
    values = {k: hyper[k] for k in HYPERPARAMETERS if k in hyper}
    seed = hyper.get("seed", setup.seed)
    client, experiment_id = connect(setup.spec.tracking_uri, setup.spec.experiment)
    existing = find_child(client, experiment_id, setup.parent_run_id, trial_id)
    if existing is not None:  # PBT restarted this trial, maybe from another's checkpoint
        run_id = existing.info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, run_name=child_name(trial_id, hyper), tags={
            **environment_tags(), TRIAL_TAG: trial_id, SEARCH_TAG: setup.search,
            PARENT_TAG: setup.parent_run_id,
            "mlflow.note.content": f"trial {trial_id} of search {setup.search}: "
                                   + ", ".join(f"{k}={v}" for k, v in values.items())
                                   + f", seed {seed}"}).info.run_id
        log_dataset_inputs(client, run_id, load_config(setup.spec.config, setup.spec.overrides,
                                                       setup.spec.data_root),
                           setup.spec.data_root)
    name = train_run_name(setup.search, trial_id, restore)
    worker_config = setup.spec.worker_config(
        name, run_id, seed=seed, params={**setup.params, "seed": seed}, overrides=values,
        resume_from=restore, log_to_file=setup.log_to_file,
        hyperparameter_metrics=setup.report_checkpoints)
    fit_reporting_to_tune(
        lambda callbacks: build_trainer(worker_config, setup.scale, name=name,
                                        storage_path=setup.storage, callbacks=callbacks),
        with_checkpoints=setup.report_checkpoints)
