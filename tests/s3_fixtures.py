"""A local S3 (moto in server mode on a loopback port) and an MLflow server for tests.

Everything talks to them through the real clients (boto3, pyarrow, MLflow)
configured the standard way: ``AWS_ENDPOINT_URL`` and the AWS key variables.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

# a credential the tests look for everywhere it must not be
SECRET_KEY = "brefine-test-secret-4f9d2c"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_s3(bucket: str):
    """Yield the endpoint URL of a fresh moto S3 holding ``bucket``; env set meanwhile."""
    import boto3
    from moto.server import ThreadedMotoServer

    from brefine.driver.ray_cluster import environment

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(AWS_ACCESS_KEY_ID="brefine-test-key", AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    try:
        with environment(env):
            boto3.client("s3").create_bucket(Bucket=bucket)
            yield endpoint
    finally:
        server.stop()


def upload_dir(local: Path, bucket: str, prefix: str) -> int:
    import boto3

    client = boto3.client("s3")
    files = [p for p in Path(local).rglob("*") if p.is_file()]
    for path in files:
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")
    return len(files)


def list_keys(bucket: str, prefix: str = "") -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@contextmanager
def mlflow_server(backend_store_uri: str, artifacts_destination: str, log: Path):
    """`brefine mlflow-server` on a loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "brefine.cli", "mlflow-server", "--port", str(port),
             "--backend-store-uri", backend_store_uri,
             "--artifacts-destination", artifacts_destination, "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"mlflow server exited:\n{log.read_text()}")
                try:
                    if requests.get(url + "/health", timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not answer in 120 s:\n{log.read_text()}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
