"""How many CPUs a run's workers ask for: decided on the driver, where local and cluster differ."""

from pathlib import Path

import pytest

from brefine.configs import ConfigError
from brefine.driver import options as run_options
from brefine.driver.options import RunOptions
from brefine.driver.trainer import build_trainer


def Scale(**scale):  # noqa: N802  (a record with only its scale set)
    return RunOptions("c.py", {}, None, Path("w"), "sqlite:///m.db", "e", "x", "/tmp", **scale)


def test_a_local_ray_shares_its_cpus_among_the_workers_of_concurrent_runs(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(run_options.os, "cpu_count", lambda: 8)
    assert Scale(num_workers=2).resolved().cpus_per_worker == 4.0
    assert Scale(num_workers=2).resolved(concurrent_runs=2).cpus_per_worker == 2.0
    assert Scale(num_workers=16).resolved().cpus_per_worker == 0.5


def test_a_search_fits_each_trials_workers_beside_its_trial_functions(monkeypatch):
    # a trial function that held a sliver of CPU once asked a 2-CPU Ray for
    # 2.05, and on a cluster of 1-CPU nodes left no node a whole CPU free
    from tune.driver import TRIAL_DRIVER_RESOURCES

    assert TRIAL_DRIVER_RESOURCES["cpu"] == 0 and TRIAL_DRIVER_RESOURCES["memory"] > 0
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for cpus, workers, concurrent in [(2, 1, 1), (2, 1, 2), (2, 2, 3), (8, 2, 2), (16, 3, 4)]:
        monkeypatch.setattr(run_options.os, "cpu_count", lambda: cpus)
        share = Scale(num_workers=workers).resolved(concurrent).cpus_per_worker
        assert share >= 1 or share == int(share * 100) / 100  # Ray: whole, or a fraction of 1
        assert concurrent * workers * share <= cpus
        if concurrent * workers <= cpus:  # the largest whole share: the machine is used
            assert (share + 1) * workers * concurrent > cpus


def test_an_explicit_share_is_kept(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert Scale(cpus_per_worker=3).resolved(concurrent_runs=4).cpus_per_worker == 3


def test_a_trainer_is_not_built_from_an_unresolved_scale():
    # a trial's process sees RAY_ADDRESS pinned either way, so it must not guess
    with pytest.raises(ValueError, match="resolved"):
        build_trainer(Scale(), {})


@pytest.mark.parametrize("field, value", [("num_workers", 0), ("cpus_per_worker", 0),
                                          ("gpus_per_worker", -1), ("max_failures", -2)])
def test_bad_scale_is_named(field, value):
    with pytest.raises(ConfigError, match=field.replace("_", "-")):
        Scale(**{field: value})
