"""`brefine predict` on bad input: one line and exit 2, never a traceback."""

import pytest
import torch

from brefine.cli import main as cli
from brefine.configs import load_config
from brefine.models.build import build_detector


@pytest.fixture(scope="module")
def two_stage_checkpoint(tmp_path_factory):
    """Weights of the tiny BRefine with 2 stages (random init: the fit is under test)."""
    model = build_detector(load_config("brefine_tiny_synthetic", {"num_stages": 2}))
    path = tmp_path_factory.mktemp("ckpt") / "two_stages.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    return path


@pytest.fixture(scope="module")
def image(tiny_data):
    from pathlib import Path

    return str(next((Path(tiny_data) / "images").glob("val_*.png")))


def run(capsys, *args):
    code = cli(["predict", *map(str, args)])
    err = capsys.readouterr().err
    return code, err


def test_a_checkpoint_of_other_settings_is_refused_and_predicts_with_them(
        two_stage_checkpoint, image, tmp_path, capsys):
    code, err = run(capsys, "brefine_tiny_synthetic", two_stage_checkpoint, image,
                    "--out", tmp_path / "a")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "does not fit the config's model" in err
    code, err = run(capsys, "brefine_tiny_synthetic", two_stage_checkpoint, image,
                    "--set", "num_stages=2", "--out", tmp_path / "b", "--score-thr", "0")
    assert code == 0, err
    assert (tmp_path / "b" / "predictions.json").is_file()


def test_a_truncated_checkpoint_and_a_text_file_named_png_are_one_line(
        two_stage_checkpoint, image, tmp_path, capsys):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(two_stage_checkpoint.read_bytes()[:5000])
    code, err = run(capsys, "brefine_tiny_synthetic", cut, image, "--out", tmp_path / "a")
    assert code == 2 and "cannot be read" in err and err.count("\n") == 1, err
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    code, err = run(capsys, "brefine_tiny_synthetic", two_stage_checkpoint, text,
                    "--set", "num_stages=2", "--out", tmp_path / "b")
    assert code == 2 and "notes.png is not an image" in err and err.count("\n") == 1, err
