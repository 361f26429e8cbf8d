"""How many CPUs a run's workers ask for: decided on the driver, where local and cluster differ."""

import pytest

from brefine.configs import ConfigError
from brefine.engine import trainer
from brefine.engine.trainer import ScaleOptions, build_trainer


def test_a_local_ray_shares_its_cpus_among_the_workers_of_concurrent_runs(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 8)
    assert ScaleOptions(num_workers=2).resolved().cpus_per_worker == 4.0
    assert ScaleOptions(num_workers=2).resolved(concurrent_runs=2).cpus_per_worker == 2.0
    assert ScaleOptions(num_workers=16).resolved().cpus_per_worker == 0.5


def test_the_share_leaves_room_for_each_runs_driver(monkeypatch):
    # a search's trial functions hold a little CPU each: 2 CPUs for one trial's
    # worker plus its function would never be placed on a 2-CPU Ray
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 2)
    assert ScaleOptions().resolved(1, driver_cpus_per_run=0.05).cpus_per_worker == 1.0
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 8)
    assert ScaleOptions().resolved(2, driver_cpus_per_run=0.05).cpus_per_worker == 3.0
    # fewer CPUs than workers: fractions of one, all of them placeable at once
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 2)
    share = ScaleOptions().resolved(2, driver_cpus_per_run=0.05).cpus_per_worker
    assert share == 0.95 and 2 * (share + 0.05) <= 2


def test_a_joined_cluster_gives_each_worker_one_cpu(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setattr(trainer.os, "cpu_count", lambda: 8)
    assert ScaleOptions(num_workers=2).resolved().cpus_per_worker == 1.0


def test_an_explicit_share_is_kept(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ScaleOptions(cpus_per_worker=3).resolved(concurrent_runs=4).cpus_per_worker == 3


def test_a_trainer_is_not_built_from_an_unresolved_scale():
    # a trial's process sees RAY_ADDRESS pinned either way, so it must not guess
    with pytest.raises(ValueError, match="resolved"):
        build_trainer({}, ScaleOptions(), "x", "/tmp")


@pytest.mark.parametrize("field, value", [("num_workers", 0), ("cpus_per_worker", 0),
                                          ("gpus_per_worker", -1), ("max_failures", -2)])
def test_bad_scale_is_named(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        ScaleOptions(**{field: value}).validate()
