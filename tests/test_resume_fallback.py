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
    """A run's Ray storage: iterations 2 and 4, then 6 cut short (a node lost while
    uploading it), beside Ray's own files."""
    run = tmp_path / "storage" / "run"
    write(run / NAMES[0], 2)
    write(run / NAMES[1], 4)
    write(run / NAMES[2], 6, truncate=True)
    (run / "checkpoint_manager_snapshot.json").write_text("{}")
    (run / "driver_artifacts").mkdir()
    return run


def checkpoints_of(run):
    return run_checkpoints(pafs.LocalFileSystem(), str(run))


def test_a_truncated_file_is_unreadable_not_unsafe(run_folder):
    with pytest.raises(UnreadableCheckpoint, match="is the file complete"):
        load_checkpoint_file(run_folder / NAMES[2] / CHECKPOINT_FILE)


def test_the_run_checkpoints_are_its_checkpoint_folders_newest_first(run_folder, tmp_path):
    assert [c.path for c in checkpoints_of(run_folder)] == \
        [str(run_folder / name) for name in reversed(NAMES)]
    assert checkpoints_of(tmp_path / "never-ran") == []
    latest = Checkpoint(str(run_folder / NAMES[0]), pafs.LocalFileSystem())

    class Unlistable(pafs.LocalFileSystem):
        def get_file_info(self, paths_or_selector):
            raise OSError("access denied")

    # a folder that cannot be listed leaves Ray's own latest checkpoint
    assert run_checkpoints(Unlistable(), str(run_folder), latest=latest) == [latest]


def test_resume_falls_back_to_the_newest_intact_checkpoint(run_folder, tmp_path):
    warnings = []
    restored = restore_intact(checkpoints_of(run_folder), tmp_path / "restored",
                              warn=warnings.append)
    assert restored == tmp_path / "restored" / CHECKPOINT_FILE
    assert load_checkpoint_file(restored)["meta"]["iter"] == 4  # not 6, cut short
    assert len(warnings) == 1 and str(run_folder / NAMES[2] / CHECKPOINT_FILE) in warnings[0]
    assert "cut short" in warnings[0]


def test_an_intact_latest_checkpoint_is_used_without_a_warning(tmp_path):
    run = tmp_path / "run"
    write(run / NAMES[0], 2)
    write(run / NAMES[1], 4)
    warnings = []
    restored = restore_intact(checkpoints_of(run), tmp_path / "r", warn=warnings.append)
    assert load_checkpoint_file(restored)["meta"]["iter"] == 4 and not warnings


def test_no_intact_checkpoint_names_every_file(tmp_path):
    run = tmp_path / "run"
    older = write(run / NAMES[0], 2, truncate=True)
    (run / NAMES[1]).mkdir()  # a folder whose file never arrived
    with pytest.raises(UnreadableCheckpoint) as err:
        restore_intact(checkpoints_of(run), tmp_path / "r", warn=lambda line: None)
    assert str(run / NAMES[1] / CHECKPOINT_FILE) in str(err.value)
    assert f"{older.path}/{CHECKPOINT_FILE}" in str(err.value)


def test_an_unsafe_latest_checkpoint_is_refused_not_skipped(tmp_path):
    run = tmp_path / "run"
    write(run / NAMES[0], 2)
    state = mmengine_like_checkpoint()
    state["meta"]["payload"] = RunsCode(tmp_path / "pwned")
    write(run / NAMES[1], 4, state=state)
    with pytest.raises(CheckpointError, match="refusing to load") as err:
        restore_intact(checkpoints_of(run), tmp_path / "r", warn=lambda line: None)
    assert not isinstance(err.value, UnreadableCheckpoint)
    assert not (tmp_path / "pwned").exists()


def test_the_worker_restores_the_newest_checkpoint_its_run_wrote(run_folder, tmp_path,
                                                                 monkeypatch, capsys):
    import ray.train

    from brefine.engine.worker import _restore

    # Ray's controller committed only iteration 2: the run was stopped (Ctrl-C) between
    # the upload of 4 and the controller's bookkeeping; 6 was cut short
    monkeypatch.setattr(ray.train, "get_checkpoint",
                        lambda: Checkpoint(str(run_folder / NAMES[0]), pafs.LocalFileSystem()))
    other_run = write(tmp_path / "other" / NAMES[0], 8)
    restored = _restore(tmp_path / "work", 0, str(run_folder), resume_from=other_run)
    assert load_checkpoint_file(restored)["meta"]["iter"] == 4  # its own, not resume_from's
    assert str(run_folder / NAMES[2] / CHECKPOINT_FILE) in capsys.readouterr().err
    # ranks sharing a work dir restore side by side: neither rewrites the file the other loads
    other_rank = _restore(tmp_path / "work", 1, str(run_folder), resume_from=None)
    assert other_rank != restored and load_checkpoint_file(restored)["meta"]["iter"] == 4

    # a run of a new name (PBT exploiting another trial) starts from resume_from, or afresh
    monkeypatch.setattr(ray.train, "get_checkpoint", lambda: None)
    new_run = str(tmp_path / "new-run")
    assert load_checkpoint_file(_restore(tmp_path / "w2", 0, new_run, resume_from=other_run)
                                )["meta"]["iter"] == 8
    assert _restore(tmp_path / "w3", 0, new_run, resume_from=None) is None
