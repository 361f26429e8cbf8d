"""A local Ray started as every brefine driver starts it listens on loopback only."""

import time
import urllib.request

import pytest
from ray_sockets import is_loopback, listening, ray_processes

from brefine.driver.ray_cluster import start_ray, stop_ray

pytestmark = pytest.mark.slow


def metrics_exporters() -> dict[str, tuple[str, int]]:
    """Where Ray says its three Prometheus exporters are: dashboard, autoscaler monitor, agent."""
    import ray
    from ray.experimental.internal_kv import _internal_kv_get

    found = {}
    for name, key in (("dashboard", "DashboardMetricsAddress"),
                      ("monitor", "AutoscalerMetricsAddress")):
        value = _internal_kv_get(key)
        if value:
            host, _, port = value.decode().rpartition(":")
            found[name] = (host, int(port))
    node = ray.nodes()[0]
    if node.get("MetricsExportPort"):
        found["agent"] = (node["NodeManagerAddress"], node["MetricsExportPort"])
    return found


@pytest.fixture(scope="module")
def local_ray():
    start_ray(num_cpus=1)
    yield
    stop_ray()


def test_every_port_of_a_local_ray_is_on_loopback(local_ray):
    import ray

    ray.get(ray.remote(lambda: 1).remote())  # a worker process, with its own gRPC server
    deadline = time.time() + 90
    while True:  # the exporters start after ray.init returns
        exporters = metrics_exporters()
        sockets = listening(ray_processes())
        ports = {port for _, port in sockets}
        if len(exporters) == 3 and all(port in ports for _, port in exporters.values()):
            break
        assert time.time() < deadline, f"exporters {exporters}, listening {sorted(sockets)}"
        time.sleep(2)
    exposed = {address: owner for address, owner in sockets.items() if not is_loopback(address[0])}
    assert not exposed, f"listening beyond loopback: {exposed}"
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"
    assert all(is_loopback(host) for host, _ in exporters.values()), exporters
    for name, (host, port) in exporters.items():  # they are the exporters, and they answer here
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as response:
            assert response.status == 200, name
    # each instance its own exporter ports: Ray's fixed ones go to the first instance only
    assert exporters["dashboard"][1] != 44227 and exporters["monitor"][1] != 44217
