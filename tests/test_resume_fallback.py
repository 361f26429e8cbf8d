"""Resuming passes over a last checkpoint that was cut short, to the run's one before it."""

import pyarrow.fs as pafs
import pytest
import torch
from ray.train import Checkpoint
from test_checkpoints import RunsCode, mmengine_like_checkpoint

from brefine.checkpoints import (CHECKPOINT_FILE, CheckpointError, UnreadableCheckpoint,
                                 load_checkpoint_file, restore_intact, run_checkpoints)

# Ray Train's names: checkpoint_<date and time>, one folder per report
NAMES = ("checkpoint_2026-01-02_03-04-05.000001", "checkpoint_2026-01-02_03-04-06.000002",
         "checkpoint_2026-01-02_03-04-07.000003")


def write(folder, iteration, truncate=False, state=None):
    folder.mkdir(parents=True)
    state = state or mmengine_like_checkpoint()
    state["meta"]["iter"] = iteration
    path = folder / CHECKPOINT_FILE
    torch.save(state, path)
    if truncate:  # what a node lost while writing leaves
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return Checkpoint(str(folder), pafs.LocalFileSystem())


@pytest.fixture()
def run_folder(tmp_path):
    """A run's Ray storage: iterations 2 and 4, the last cut short, and a newer folder Ray
    never committed (a report cut short), beside Ray's own files."""
    run = tmp_path / "storage" / "run"
    write(run / NAMES[0], 2)
    latest = write(run / NAMES[1], 4, truncate=True)
    write(run / NAMES[2], 6)
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    (run / "driver_artifacts").mkdir()
    return run, latest


def test_a_truncated_file_is_unreadable_not_unsafe(run_folder):
    run, _ = run_folder
    with pytest.raises(UnreadableCheckpoint, match="is the file complete"):
        load_checkpoint_file(run / NAMES[1] / CHECKPOINT_FILE)


def test_the_run_checkpoints_are_the_latest_then_older_ones(run_folder):
    run, latest = run_folder
    assert [c.path for c in run_checkpoints(latest)] == [str(run / NAMES[1]), str(run / NAMES[0])]


def test_resume_falls_back_to_the_newest_intact_checkpoint(run_folder, tmp_path):
    run, latest = run_folder
    warnings = []
    restored = restore_intact(run_checkpoints(latest), tmp_path / "restored", warn=warnings.append)
    assert restored == tmp_path / "restored" / CHECKPOINT_FILE
    assert load_checkpoint_file(restored)["meta"]["iter"] == 2  # not 4, cut short; not 6
    assert len(warnings) == 1 and str(run / NAMES[1] / CHECKPOINT_FILE) in warnings[0]
    assert "cut short" in warnings[0]


def test_an_intact_latest_checkpoint_is_used_without_a_warning(run_folder, tmp_path):
    run, _ = run_folder
    warnings = []
    latest = Checkpoint(str(run / NAMES[2]), pafs.LocalFileSystem())
    restored = restore_intact(run_checkpoints(latest), tmp_path / "r", warn=warnings.append)
    assert load_checkpoint_file(restored)["meta"]["iter"] == 6 and not warnings


def test_no_intact_checkpoint_names_every_file(tmp_path):
    run = tmp_path / "run"
    older = write(run / NAMES[0], 2, truncate=True)
    (run / NAMES[1]).mkdir()  # a folder whose file never arrived
    latest = Checkpoint(str(run / NAMES[1]), pafs.LocalFileSystem())
    with pytest.raises(UnreadableCheckpoint) as err:
        restore_intact(run_checkpoints(latest), tmp_path / "r", warn=lambda line: None)
    assert str(run / NAMES[1] / CHECKPOINT_FILE) in str(err.value)
    assert f"{older.path}/{CHECKPOINT_FILE}" in str(err.value)


def test_an_unsafe_latest_checkpoint_is_refused_not_skipped(tmp_path):
    run = tmp_path / "run"
    write(run / NAMES[0], 2)
    state = mmengine_like_checkpoint()
    state["meta"]["payload"] = RunsCode(tmp_path / "pwned")
    latest = write(run / NAMES[1], 4, state=state)
    with pytest.raises(CheckpointError, match="refusing to load") as err:
        restore_intact(run_checkpoints(latest), tmp_path / "r", warn=lambda line: None)
    assert not isinstance(err.value, UnreadableCheckpoint)
    assert not (tmp_path / "pwned").exists()


def test_the_worker_restores_from_rays_checkpoint_of_the_run(run_folder, tmp_path, monkeypatch,
                                                             capsys):
    import ray.train

    from brefine.engine.worker import _restore

    run, latest = run_folder
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: latest)
    restored = _restore(tmp_path / "work", 0, resume_from=None)
    assert load_checkpoint_file(restored)["meta"]["iter"] == 2
    assert str(run / NAMES[1] / CHECKPOINT_FILE) in capsys.readouterr().err
    # ranks sharing a work dir restore side by side: neither rewrites the file the other loads
    other_rank = _restore(tmp_path / "work", 1, resume_from=None)
    assert other_rank != restored and load_checkpoint_file(restored)["meta"]["iter"] == 2
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    assert _restore(tmp_path / "work", 0, resume_from=None) is None
