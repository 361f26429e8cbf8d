"""The accuracy harness's bookkeeping: which runs it resumes, how it tables them.

The trainings themselves are the platform's (tested elsewhere); these checks
are on the records only, so they take no training.
"""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def accuracy():
    spec = importlib.util.spec_from_file_location("accuracy", ROOT / "benchmarks" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(variant, seed, lr, segm, schedule="S"):
    return dict(variant=variant, seed=seed, lr=lr, schedule=schedule,
                metrics={"coco/segm_mAP": segm})


def test_schedule_label_leaves_the_learning_rate_to_its_column(accuracy):
    label = accuracy.schedule_label(1200, 4, 4, ["optim_wrapper.optimizer.lr=0.003",
                                                 "train_cfg.val_interval=600"])
    assert label == "1200 iterations of 4 images, built-in data v4, train_cfg.val_interval=600"
    assert (accuracy.schedule_label(1200, 4, 4, None)
            == "1200 iterations of 4 images, built-in data v4")


def test_pending_skips_only_runs_at_the_same_learning_rate_and_schedule(accuracy):
    runs = [record("brefine", 0, 0.003, 0.2), record("brefine", 1, 0.02, 0.1),
            record("mask-rcnn", 0, 0.02, 0.3, schedule="other")]
    todo = accuracy.pending(runs, {"shapes": "S", "thin": "T"}, ["mask-rcnn", "brefine"], [0, 1],
                            {"mask-rcnn": 0.02, "brefine": 0.003})
    # seed by seed, family by family: a harness stopped early leaves every family a seed
    assert todo == [(0, "shapes", "mask-rcnn"), (0, "thin", "mask-rcnn"), (0, "thin", "brefine"),
                    (1, "shapes", "mask-rcnn"), (1, "shapes", "brefine"),
                    (1, "thin", "mask-rcnn"), (1, "thin", "brefine")]


def test_table_has_a_row_per_learning_rate_with_mean_and_sample_std(accuracy, tmp_path):
    runs = [record("brefine", 0, 0.003, 0.1), record("brefine", 1, 0.003, 0.3),
            record("brefine", 0, 0.02, 0.05)]
    table = tmp_path / "accuracy.md"
    accuracy.write_table(runs, "python benchmarks/accuracy.py", table)
    rows = [line for line in table.read_text().splitlines() if line.startswith("| brefine ")]
    assert len(rows) == 2
    assert "| 0.02 | 0 | 0.050 |" in rows[0]
    assert "| 0.003 | 0,1 | 0.200 ± 0.141 |" in rows[1]


def test_each_variant_takes_its_configs_learning_rate_unless_one_is_set(accuracy):
    from brefine.configs import load_config

    brefine_lr = load_config("brefine_tiny_synthetic").optim_wrapper.optimizer.lr
    mask_rcnn_lr = load_config("mask-rcnn_tiny_synthetic").optim_wrapper.optimizer.lr
    assert accuracy.variant_lr("mask-rcnn", None, {}) == mask_rcnn_lr
    assert accuracy.variant_lr("fusion-3", None, {}) == mask_rcnn_lr
    # the Rank & Sort variants are built on the BRefine config, and share its recipe
    assert accuracy.variant_lr("mask-rcnn+rs", None, {}) == brefine_lr
    assert accuracy.variant_lr("brefine", None, {accuracy.LR_KEY: 0.005}) == 0.005


def test_test_sections_report_test_numbers_and_val_sections_say_what_they_are(accuracy, tmp_path):
    tested = [dict(record("brefine", seed, 0.02, val, schedule="T"), family="thin",
                   test_metrics={"coco/segm_mAP": test, "coco/segm_mAP_m": -1.0},
                   curve=[{"iteration": 200, "segm AP": val / 2, "boundary AP": 0.1},
                          {"iteration": 400, "segm AP": val, "boundary AP": 0.2}])
              for seed, val, test in ((0, 0.5, 0.4), (1, 0.7, 0.2))]
    table = tmp_path / "accuracy.md"
    accuracy.write_table([record("brefine", 0, 0.02, 0.9, schedule="V"), *tested], "cmd", table)
    text = table.read_text()
    # test first, with the test mean (0.3, not the val 0.6 or 0.9); -1 (no object of that
    # size) is shown as missing, not averaged in
    assert text.index("## T (test)") < text.index("## V (val, looked at while designing)")
    test_row = next(line for line in text.split("## T (test)")[1].splitlines()
                    if line.startswith("| brefine "))
    cells = [c.strip() for c in test_row.strip("|").split("|")]
    assert cells[4] == "0.300 ± 0.141" and cells[7] == "-" and cells[-1] == "0.600 ± 0.141"
    assert (tmp_path / "accuracy_curves.png").stat().st_size > 0


def test_a_column_some_seeds_lack_says_so(accuracy):
    # the s/iter of runs made before it was recorded: 1 value for 3 seeds
    assert accuracy.cell([1.145], 3) == "1.145 (1 of 3 seeds)"
    assert accuracy.cell([0.5, 0.7], 2) == "0.600 ± 0.141"
    assert accuracy.cell([], 3) == "-"
