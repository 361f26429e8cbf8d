"""PyTorch's rendezvous on loopback when every worker is on this machine.

Ray Train's torch backend lets rank 0 host the process group's ``TCPStore``,
and PyTorch binds that server to every interface (``::``): for as long as a
run lasts, anyone who can reach the machine can read and write the store the
ranks rendezvous through. When the workers' address is loopback (a local
Ray, which :func:`brefine.driver.ray_cluster.start_ray` runs in single-machine
mode), rank 0 hosts the store on a socket bound to 127.0.0.1 instead, and
every rank, rank 0 included, joins it as a client: the path PyTorch's
``env://`` rendezvous takes for a store its launcher hosts
(``TORCHELASTIC_USE_AGENT_STORE``). On a cluster nothing changes: the store
must answer other machines there, and ``cluster/README.md`` says how the
cluster's network protects it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from datetime import timedelta

import ray
from ray.train._internal.utils import get_address_and_port
from ray.train.torch import TorchConfig
from ray.train.torch.config import (
    _set_torch_distributed_env_vars,
    _setup_torch_process_group,
    _TorchBackend,
)

# rank 0's store server and its listening socket: they live as long as the
# worker process (a restarted worker group starts new processes)
_served = []


def serve_store_on_loopback(timeout_s: float) -> int:
    """Host a ``TCPStore`` on 127.0.0.1 in this worker; returns its port."""
    from torch.distributed import TCPStore

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    store = TCPStore("127.0.0.1", port, is_master=True, timeout=timedelta(seconds=timeout_s),
                     wait_for_workers=False, master_listen_fd=listener.fileno())
    _served.extend([listener, store])
    return port


def join_store(port: int) -> None:
    """Point this worker's ``env://`` rendezvous at the loopback store on ``port``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      TORCHELASTIC_USE_AGENT_STORE="True")


class _LoopbackTorchBackend(_TorchBackend):
    def on_start(self, worker_group, backend_config) -> None:
        address, _ = worker_group.execute_single(0, get_address_and_port)
        if not ipaddress.ip_address(address).is_loopback:  # a cluster: Ray's own set-up
            super().on_start(worker_group, backend_config)
            return
        port = worker_group.execute_single(0, serve_store_on_loopback,
                                           timeout_s=backend_config.timeout_s)
        worker_group.execute(join_store, port=port)
        worker_group.execute(_set_torch_distributed_env_vars)
        ray.get([worker_group.execute_single_async(
            rank, _setup_torch_process_group, backend=backend_config.backend, world_rank=rank,
            world_size=len(worker_group), init_method="env://",
            timeout_s=backend_config.timeout_s) for rank in range(len(worker_group))])


@dataclass
class LoopbackTorchConfig(TorchConfig):
    """Ray's ``TorchConfig`` whose process-group store stays on loopback when the
    workers' address is loopback. ``backend`` must be set (gloo or nccl)."""

    @property
    def backend_cls(self):
        return _LoopbackTorchBackend
