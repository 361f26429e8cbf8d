"""AWS keys never reach an environment Ray or Tune copies into its logs."""

import os
import stat

import pytest

from brefine.driver.ray_cluster import AWS_SECRETS, hide_aws_credentials


@pytest.fixture()
def aws_env(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACANARY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "canary-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "canary-token")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    monkeypatch.delenv("AWS_CONFIG_FILE", raising=False)
    return tmp_path


def test_keys_move_to_a_private_file_the_aws_chain_reads(aws_env):
    import boto3

    path = hide_aws_credentials(str(aws_env))
    assert not any(name in os.environ for name in AWS_SECRETS)
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == path
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    credentials = boto3.Session().get_credentials().get_frozen_credentials()
    assert (credentials.access_key, credentials.secret_key, credentials.token) == \
        ("AKIACANARY", "canary-secret", "canary-token")


def test_an_environment_without_keys_is_left_alone(monkeypatch, tmp_path):
    for name in AWS_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SHARED_CREDENTIALS_FILE", raising=False)
    assert hide_aws_credentials(str(tmp_path)) is None
    assert "AWS_SHARED_CREDENTIALS_FILE" not in os.environ and not list(tmp_path.iterdir())
