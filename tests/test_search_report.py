"""A search's report without Ray: one trial name everywhere, fixed values and seeds
as values, ties named, flat metric names, figures without empty panels, the
configurations to confirm, and files that exist only when a winner is decided."""

import json
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import pandas as pd
import pytest

from brefine.driver.options import RunOptions
from tune import publish as publish_module
from tune.decision import Confirmed, decide
from tune.figures import log_ticks, search_figure
from tune.names import child_name, configuration_name
from tune.publish import Outcome, parent_tags_and_metrics, publish
from tune.report import best_row, summary_markdown, trial_table
from tune.selection import candidates

METRIC = "coco/segm_mAP"


def result(trial_id, config, segm, boundary=0.1, cost=0.8, iteration=60):
    metrics = {"trial_id": trial_id, "iteration": iteration, METRIC: segm, "coco/bbox_mAP": 0.5,
               "boundary_AP": boundary, "train_s_per_iter": cost, "time_total_s": 100.0}
    return SimpleNamespace(metrics=metrics, metrics_dataframe=pd.DataFrame([metrics]), error=None,
                           config=config, path=f"/r/run_trial_{trial_id}_0_2026-12-07")


def search_table(fixed=None):
    """Three trials, λ and w searched (num_stages fixed to 1), the first two tied."""
    return trial_table([result("ab12c_00000", {"boundary_lambda": 1.5, "rpn_weight": 0.17}, 0.3,
                               cost=0.9),
                        result("ab12c_00001", {"boundary_lambda": 0.3, "rpn_weight": 0.4}, 0.3,
                               cost=0.7),
                        result("ab12c_00002", {"boundary_lambda": 1.0, "rpn_weight": 0.2}, 0.25)],
                       METRIC, 60, {"num_stages": 1} if fixed is None else fixed, seed=0)


def test_fixed_values_and_the_seed_are_reported_as_values_and_trials_by_their_run_names():
    table = search_table()
    assert list(table["num_stages"]) == [1, 1, 1] and list(table["seed"]) == [0, 0, 0]
    # the name MLflow gives the child run is the name of every table
    assert list(table["name"]) == ["t00 λ=1.5 w=0.17", "t01 λ=0.3 w=0.4", "t02 λ=1 w=0.2"]
    assert child_name("ab12c_00001", {"boundary_lambda": 0.3, "rpn_weight": 0.4}) == \
        "t01 λ=0.3 w=0.4"
    summary = summary_markdown("s", METRIC, "accuracy", table, best_row(table, METRIC), None,
                               ["**no decision**"])
    assert "| t01 λ=0.3 w=0.4 | 1 | 0.3 | 0.4 | 0 |" in summary and "None" not in summary


def test_a_best_trial_from_a_tie_is_named_as_a_tie():
    table = search_table()
    best = best_row(table, METRIC)
    assert best["name"] == "t00 λ=1.5 w=0.17" and best["tied_with"] == ["t01 λ=0.3 w=0.4"]
    summary = summary_markdown("s", METRIC, "accuracy", table, best, None, [])
    assert "**a tie** with t01 λ=0.3 w=0.4" in summary
    assert best_row(table[table["trial_id"] != "ab12c_00001"], METRIC)["tied_with"] == []


def outcome(table, decision=None, confirmed=None):
    return Outcome("s", METRIC, "accuracy", table, best_row(table, METRIC), None,
                   {"boundary_lambda": (0.25, 4), "rpn_weight": (0.05, 0.5)}, {"num_stages": 1},
                   {"boundary_lambda": 1.0, "rpn_weight": 0.2}, confirmed, decision)


def test_parent_metrics_are_flat_and_hyperparameters_are_tags_and_params_not_metrics():
    tags, metrics = parent_tags_and_metrics(outcome(search_table()), None, "/r/s")
    assert {"segm_mAP", "bbox_mAP", "boundary_AP", "train_s_per_iter"} <= set(metrics)
    assert not [k for k in metrics if "/" in k or k.startswith("best") or
                k in ("boundary_lambda", "rpn_weight", "num_stages", "seed")]
    assert (tags["best.num_stages"], tags["best.seed"], tags["best.tie"]) == ("1", "0", "true")
    assert tags["decided"] == "false" and tags["winner"] == "none"
    note = tags["mlflow.note.content"]  # the parent's description
    assert "None" not in note and "num_stages=1 (fixed)" in note and "seed 0" in note


def test_search_figure_draws_only_the_searched_keys_with_readable_log_ticks(tmp_path):
    import matplotlib.image

    search_figure(search_table(), METRIC, {"boundary_lambda": (0.25, 4), "rpn_weight": (0.05, 0.5)},
                  tmp_path / "two.png")
    search_figure(search_table(), METRIC, {"rpn_weight": (0.05, 0.5)}, tmp_path / "one.png")
    widths = [matplotlib.image.imread(tmp_path / f).shape[1] for f in ("two.png", "one.png")]
    assert widths == [860, 430]  # 4.3 inches a panel at 100 dpi: no empty stage panel
    assert log_ticks(0.25, 4) == [0.25, 0.5, 1, 2, 4]
    narrow = log_ticks(0.8, 1.2)
    assert len(narrow) == 4 and narrow[0] == 0.8 and narrow[-1] == 1.2


def test_confirmation_takes_the_best_distinct_configurations_or_the_pareto_front_and_the_default():
    table = search_table()
    accuracy = candidates(table, METRIC, 2, "accuracy", ["boundary_lambda", "rpn_weight"])
    assert [c.name for c in accuracy] == ["t00 λ=1.5 w=0.17", "t01 λ=0.3 w=0.4",
                                          "default λ=1 w=0.2"]
    assert accuracy[-1].is_default and accuracy[-1].values == {"boundary_lambda": 1.0,
                                                               "rpn_weight": 0.2}
    # t01 is as accurate as t00 and cheaper: the front's only point
    pareto = candidates(table, METRIC, 1, "pareto", ["boundary_lambda", "rpn_weight"])
    assert [c.name for c in pareto] == ["t01 λ=0.3 w=0.4", "default λ=1 w=0.2"]
    # t02 is the default's values: never counted among the K
    assert len(candidates(table, METRIC, 5, "accuracy", ["boundary_lambda", "rpn_weight"])) == 3


def confirmation(winner_values):
    """Two seeds of t01 and of the default, with the given values of t01."""
    rows = [result(f"cf00a_0000{i}", {"boundary_lambda": lam, "rpn_weight": w, "seed": seed,
                                     "confirms": name}, value)
            for i, (lam, w, seed, name, value) in enumerate([
                (0.3, 0.4, 1000, "t01 λ=0.3 w=0.4", winner_values[0]),
                (1.0, 0.2, 1000, "default λ=1 w=0.2", 0.20),
                (0.3, 0.4, 1001, "t01 λ=0.3 w=0.4", winner_values[1]),
                (1.0, 0.2, 1001, "default λ=1 w=0.2", 0.21)])]
    table = trial_table(rows, METRIC, 60, {"num_stages": 1}, 0, prefix="c")
    groups = [Confirmed("t01 λ=0.3 w=0.4", False, list(winner_values)),
              Confirmed("default λ=1 w=0.2", True, [0.20, 0.21])]
    return table, decide(groups)


@pytest.mark.parametrize("values,decided", [((0.50, 0.51), True), ((0.10, 0.32), False)])
def test_best_config_and_the_champion_exist_only_when_a_winner_is_decided(tmp_path, values,
                                                                           decided):
    confirmed, decision = confirmation(values)
    assert confirmed["name"].iloc[0] == "c00 λ=0.3 w=0.4 seed=1000"
    assert configuration_name({"boundary_lambda": 0.3, "rpn_weight": 0.4}, "ab12c_00001") == \
        "t01 λ=0.3 w=0.4"
    run = RunOptions(config=str(Path("brefine/configs/brefine_tiny_synthetic.py").resolve()),
                     overrides={"num_stages": 1}, data_root=None, work_dir=tmp_path,
                     tracking_uri="sqlite:///x", experiment="e", name="s",
                     storage=str(tmp_path), cpus_per_worker=1.0)
    client = mock.MagicMock()
    fake = {"uri": "models:/m/1", "alias_uri": "models:/m@champion", "checkpoint": "/c",
            "run": "c02"}
    with mock.patch.object(publish_module, "register", return_value=fake) as register:
        report = publish(client, "parent", run, outcome(search_table(), decision, confirmed))
    written = {p.name for p in (tmp_path / "s").iterdir()}
    assert {"summary.md", "decision.md", "decision.json", "intervals.png", "pareto.png",
            "search.png", "trials.parquet", "confirmation.parquet"} <= written
    assert ({"best_config.py", "best.json"} <= written) == decided
    assert register.called == decided
    tags = {c.args[1]: c.args[2] for c in client.set_tag.call_args_list}
    assert tags["decided"] == str(decided).lower()
    assert tags["winner"] == ("t01 λ=0.3 w=0.4" if decided else "none")
    summary = (tmp_path / "s" / "summary.md").read_text()
    record = json.loads((tmp_path / "s" / "decision.json").read_text())
    assert record["decided"] == decided and len(record["configurations"]) == 2
    if decided:
        assert "models:/m@champion" in summary and register.call_args.args[-1] == "champion"
        assert json.loads((tmp_path / "s" / "best.json").read_text())["values"] == \
            {"num_stages": 1, "boundary_lambda": 0.3, "rpn_weight": 0.4}
    else:
        assert "Use the default configuration: num_stages=1 (fixed), boundary_lambda=1.0, " \
               "rpn_weight=0.2" in summary
        assert f"about {decision.needed} seeds" in summary
    assert report["written"] == str(tmp_path).rstrip("/") + "/s"


def test_one_progress_line_per_trial_event_with_the_metric_and_the_training_iteration(
        tmp_path, capsys):
    from tune.progress import ProgressLines

    lines = ProgressLines(tmp_path, "s", True, METRIC, max_iters=60, prefix="c")
    error = tmp_path / "error.txt"
    error.write_text("Traceback ...\n  ...\nWorkerFailure: rank 0: loss is nan\n")
    trial = SimpleNamespace(trial_id="cf00a_00003", error_file=str(error),
                            config={"boundary_lambda": 0.3, "rpn_weight": 0.4, "seed": 1001},
                            last_result={"iteration": 60, METRIC: 0.4321,
                                         "train_s_per_iter": 0.85})
    lines.on_trial_start(0, [], trial)
    lines.on_trial_result(0, [], trial, {"iteration": 30, METRIC: 0.25})
    lines.on_trial_result(0, [], trial, trial.last_result)  # the last: said once, at the end
    lines.on_trial_complete(0, [], trial)
    lines.on_trial_error(0, [], trial)
    out = [line.split("] ", 1)[1] for line in capsys.readouterr().out.splitlines()]
    name = "c03 λ=0.3 w=0.4 seed=1001"
    assert out == [
        f"{name} started; worker log {tmp_path}/s-train-cf00a_00003/worker-rank0.log",
        f"{name} at iteration 30/60: segm_mAP 0.2500",
        f"{name} finished at iteration 60/60: segm_mAP 0.4321, 0.85 s/iter",
        f"{name} FAILED at iteration 60/60: segm_mAP 0.4321: WorkerFailure: rank 0: loss is nan"]
