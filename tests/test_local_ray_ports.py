"""A local Ray started as every brefine driver starts it listens on loopback only."""

import ipaddress
import time
import urllib.request

import psutil
import pytest

from brefine.driver.ray_cluster import start_ray, stop_ray

pytestmark = pytest.mark.slow


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 of a dual-stack socket
    return (mapped or address).is_loopback


def ray_processes() -> list[psutil.Process]:
    """This driver and every process its local Ray started, with their children (workers)."""
    import ray

    found = [psutil.Process()]
    for infos in ray._private.worker._global_node.all_processes.values():
        for info in infos:
            try:
                process = psutil.Process(info.process.pid)
                found += [process, *process.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
    return found


def listening(processes: list[psutil.Process]) -> dict[tuple[str, int], str]:
    """(host, port) -> owner's command line, for each listening TCP socket of ``processes``."""
    names = {}
    for process in processes:
        try:
            names[process.pid] = " ".join(process.cmdline()[:2])[-80:]
        except psutil.NoSuchProcess:
            continue
    return {(c.laddr.ip, c.laddr.port): names[c.pid]
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in names}


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
