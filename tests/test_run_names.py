"""One owner per run name, across work dirs that share an MLflow store."""

import os
import socket

import pytest

from brefine.tracking.lifecycle import OWNER_TAG, RunNameInUse, claim_run_name, mark_owner
from brefine.tracking.runs import connect, open_run


@pytest.fixture()
def store(tmp_path):
    return connect(f"sqlite:///{tmp_path / 'mlflow.db'}", "synthetic")


def test_a_finished_run_is_never_rewritten_by_a_later_attempt(store):
    from brefine.tracking.lifecycle import ended_by_outcome

    client, experiment_id = store
    run_id, _ = open_run(client, experiment_id, "done")
    client.set_terminated(run_id, "FINISHED")
    assert claim_run_name(client, experiment_id, "done") == "FINISHED"
    open_run(client, experiment_id, "done")  # a longer schedule continues it
    with pytest.raises(ValueError):
        with ended_by_outcome(client, run_id, finished_before=True):
            raise ValueError("another num_stages")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert "another num_stages" in run.data.tags["brefine.failed_continuation"]
    # a run that had not finished ends as it ended
    other, _ = open_run(client, experiment_id, "fresh")
    with pytest.raises(KeyboardInterrupt):
        with ended_by_outcome(client, other):
            raise KeyboardInterrupt
    assert client.get_run(other).info.status == "KILLED"


def test_a_live_run_is_not_joined_but_a_dead_drivers_run_is_taken_over(store):
    client, experiment_id = store
    run_id, _ = open_run(client, experiment_id, "live")
    mark_owner(client, run_id)  # this process: alive
    with pytest.raises(RunNameInUse, match=f"{os.getpid()}@"):
        claim_run_name(client, experiment_id, "live")
    client.set_tag(run_id, OWNER_TAG, f"999999999@{socket.gethostname()}")  # no such process
    claim_run_name(client, experiment_id, "live")
    client.set_tag(run_id, OWNER_TAG, "1@another-host")  # cannot tell: it may be alive
    with pytest.raises(RunNameInUse, match="another-host"):
        claim_run_name(client, experiment_id, "live")


def test_interrupted_and_new_names_are_free(store):
    client, experiment_id = store
    claim_run_name(client, experiment_id, "new")
    run_id, _ = open_run(client, experiment_id, "stopped")
    client.set_terminated(run_id, "KILLED")
    claim_run_name(client, experiment_id, "stopped")
