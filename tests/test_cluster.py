"""cluster/gpu.yaml against Ray's own cluster-config schema and preparation."""

import copy
import re
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from brefine.cli import build_parser

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load((CLUSTER / "gpu.yaml").read_text())


@pytest.fixture(scope="module")
def prepared(raw):
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_rays_schema_rejects_a_broken_copy(raw):
    # the validation below can fail: a misspelt top-level key is refused
    broken = prepare_config({**copy.deepcopy(raw), "max_wokers": 3})
    with pytest.raises(Exception, match="max_wokers"):
        validate_config(broken)


def test_prepared_config_has_head_and_gpu_worker_types(prepared):
    types = prepared["available_node_types"]
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == "head.cpu"
    assert types["head.cpu"]["resources"] == {"CPU": 0}
    gpu_types = {k: v for k, v in types.items() if k != "head.cpu"}
    assert {v["node_config"]["InstanceType"] for v in gpu_types.values()} == \
        {"g6e.2xlarge", "p4d.24xlarge"}
    for node_type in gpu_types.values():
        assert node_type["min_workers"] == 0  # GPUs only while there is work
        assert node_type["max_workers"] >= 1
    assert sum(v["max_workers"] for v in gpu_types.values()) >= prepared["max_workers"]
    assert prepared["idle_timeout_minutes"] > 0
    assert prepared["docker"]["image"] and prepared["docker"]["container_name"]


def test_nothing_listens_beyond_loopback(raw, prepared):
    assert "security_group" not in raw["provider"]  # only Ray's intra-cluster + SSH rules
    start = " ".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start
    server = re.search(r"brefine mlflow-server[^>&]*", start).group(0)
    assert "--allow-remote" not in server and "--host" not in server  # default 127.0.0.1
    words = server.replace("${BREFINE_MLFLOW_PORT:-5000}", "5000").split()
    args = build_parser().parse_args(words[1:])
    assert args.host == "127.0.0.1" and args.artifacts_destination.startswith("s3://")


def test_no_credentials_in_the_cluster_files():
    for path in CLUSTER.iterdir():
        text = path.read_text()
        assert not re.search(r"AKIA[0-9A-Z]{16}|aws_secret_access_key|AWS_SECRET_ACCESS_KEY\s*=",
                             text), path


def test_mlflow_server_command_stays_on_loopback(tmp_path):
    from brefine.tracking.runs import TrackingError
    from brefine.tracking.server import server_command

    command = server_command(f"sqlite:///{tmp_path}/db/mlflow.db", "s3://bucket/mlflow")
    assert command[1] == "server"
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--artifacts-destination") + 1] == "s3://bucket/mlflow"
    assert "--serve-artifacts" in command
    assert (tmp_path / "db").is_dir()
    with pytest.raises(TrackingError, match="--host 0.0.0.0"):
        server_command("sqlite:///x.db", "s3://b/m", host="0.0.0.0")
    assert "0.0.0.0" in server_command("sqlite:///x.db", "s3://b/m", host="0.0.0.0",
                                       allow_remote=True)
    with pytest.raises(TrackingError, match="--backend-store-uri"):
        server_command("/var/mlflow", "s3://b/m")


def test_image_matches_the_pinned_torch():
    import torch

    text = (CLUSTER / "Dockerfile").read_text()
    cuda = re.search(r"ARG CUDA_VERSION=(\d+\.\d+)", text).group(1)
    assert torch.version.cuda == cuda, "the image's CUDA must be the one torch was built with"
    assert torch.__version__.endswith("+cu" + cuda.replace(".", ""))
    assert "FORCE_CUDA=1" in text and "TORCH_CUDA_ARCH_LIST" in text
    assert "brefine smoke" in text


def test_smoke_command_on_cpu():
    from brefine.apis.smoke import smoke

    lines = []
    record = smoke("cpu", log=lines.append)
    assert any(line.startswith("mmcv ops") for line in lines)
    assert record["loss"] > 0


def test_only_head_local_stores_are_relayed(monkeypatch):
    from brefine.tracking.relay import RELAY_ENV, is_head_local, should_relay

    assert is_head_local("http://127.0.0.1:5000") and is_head_local("http://localhost:5000")
    assert is_head_local("sqlite:////root/mlflow.db")
    assert not is_head_local("https://mlflow.example.com")
    monkeypatch.setenv(RELAY_ENV, "never")
    assert not should_relay("http://127.0.0.1:5000")
    monkeypatch.setenv(RELAY_ENV, "always")
    assert should_relay("https://mlflow.example.com")
    monkeypatch.setenv(RELAY_ENV, "sometimes")
    with pytest.raises(ValueError, match=RELAY_ENV):
        should_relay("http://127.0.0.1:5000")


@pytest.mark.slow
def test_head_restarts_only_its_own_mlflow_server(raw, tmp_path):
    """The head's start command, run twice: the first server is replaced, an unrelated
    process whose command line says "mlflow server" lives on."""
    import os
    import socket
    import subprocess
    import sys
    import time

    import requests

    command = next(c for c in raw["head_start_ray_commands"] if "mlflow-server" in c)
    command = command.replace("s3://my-brefine-bucket/mlflow", str(tmp_path / "artifacts"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HOME=str(tmp_path), BREFINE_MLFLOW_PORT=str(port),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    decoy = subprocess.Popen(["bash", "-c", "exec -a 'mlflow server --decoy' sleep 600"])
    pid_file = tmp_path / ".cache/brefine/mlflow/server.pid"

    def started():
        subprocess.run(["bash", "-c", command], env=env, check=True, timeout=120)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok:
                    return int(pid_file.read_text())
            except requests.RequestException:
                time.sleep(0.5)
        raise AssertionError((Path("/tmp/mlflow-server.log")).read_text()[-2000:])

    try:
        first = started()
        second = started()
        assert first != second
        assert not Path(f"/proc/{first}").exists() or \
            "mlflow" not in Path(f"/proc/{first}/cmdline").read_text()
        assert decoy.poll() is None  # the broad `pkill -f "mlflow server"` killed this
    finally:
        decoy.kill()
        subprocess.run(["kill", pid_file.read_text().strip()], check=False)
