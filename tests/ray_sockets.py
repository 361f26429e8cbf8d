"""The listening sockets of a local Ray's processes (this driver, Ray's, its workers)."""

import ipaddress

import psutil


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


def exposed_sockets() -> dict[tuple[str, int], str]:
    """The listening sockets of this driver's local Ray that are not on loopback."""
    return {address: owner for address, owner in listening(ray_processes()).items()
            if not is_loopback(address[0])}
