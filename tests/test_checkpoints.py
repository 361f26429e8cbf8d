"""Checkpoints load without running code: the allow-list, the refusal, the strict fit."""

import os

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from brefine.checkpoints import CheckpointError, load_checkpoint_file


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def mmengine_like_checkpoint():
    """What a Runner saves: weights, optimizer state, the message hub's buffers, numpy meta."""
    hub = MessageHub.get_instance("checkpoint-test")
    for value in (1.0, 2.0, 3.0):
        hub.update_scalar("train/loss", value)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return dict(meta=dict(seed=np.int64(3), iter=12, dataset_meta=dict(classes=("a", "b"))),
                state_dict=model.state_dict(), optimizer=optimizer.state_dict(),
                message_hub=hub.state_dict())


def test_a_runner_checkpoint_loads_with_its_buffers(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(mmengine_like_checkpoint(), path)
    loaded = load_checkpoint_file(path)
    assert isinstance(loaded["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == pytest.approx(2.0)
    assert loaded["meta"]["seed"] == 3 and loaded["meta"]["iter"] == 12


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    state = mmengine_like_checkpoint()
    state["meta"]["payload"] = RunsCode(marker)
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="refusing to load checkpoint") as err:
        load_checkpoint_file(path)
    assert "system" in str(err.value) and "--trust-checkpoint" in str(err.value)
    assert not marker.exists()
    load_checkpoint_file(path, trust=True)  # the explicit opt-in does run it
    assert marker.exists()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pth"):
        load_checkpoint_file(tmp_path / "nope.pth")
