"""Starting (or joining) Ray for a driver: isolated, quiet, and honest about waiting.

A driver joins the cluster at ``$RAY_ADDRESS`` when it is set (a ``ray job
submit`` job, a cluster head). Otherwise it starts a local Ray of its own that
cannot be confused with any other Ray on the machine:

* its own temp dir and a GCS port chosen here, so nothing reads or overwrites
  another instance's ``/tmp/ray/ray_current_cluster``;
* ``RAY_ADDRESS`` pinned to that GCS for every process of the job (as is a
  joined cluster's address): Ray Train's placement-group cleaner asks the
  State API for "the" cluster and, beside a second instance, found several
  and crashed, leaving the finished run's resources held;
* every port of Ray's on loopback: the node's address is 127.0.0.1, as in the
  local-only Ray of macOS and Windows (:func:`_loopback_node`), so the GCS,
  the raylet, the workers, the agents, the dashboard and the three Prometheus
  exporters (dashboard, autoscaler monitor, dashboard agent) answer nobody on
  the network; Ray's token authentication (on by default) guards them besides.
  The dashboard's and the monitor's exporters get ports of their own, not
  Ray's fixed 44227 and 44217, which a second instance could not bind. (The
  rendezvous store PyTorch opens for a multi-worker run, rank 0's TCPStore,
  binds all interfaces whatever its address; Ray Train offers no other.)
* no AWS key in any environment Ray or Tune copies and logs: the keys move to
  a 0600 credentials file (:func:`hide_aws_credentials`);
* the temp root is mode 0700 and is deleted when the driver ends
  (``$BREFINE_KEEP_RAY_TEMP=1`` keeps it).

A run whose workers cannot be placed is reported on the terminal within a
minute (:class:`ResourceWaitWatcher`) and fails after
``$RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` seconds (default 600 locally,
where nothing will come, and 3600 on a cluster, where the autoscaler may add
nodes).

Once Ray is up, SIGTERM is answered as Ctrl-C (KeyboardInterrupt in the main
thread). ``ray job stop``, ``kill`` and a cluster scheduler's preemption all
send SIGTERM; ``ray.init`` makes it ``sys.exit``, which no driver's
``except KeyboardInterrupt`` sees, so the MLflow runs of a stopped job stayed
RUNNING. ``ray job stop`` waits 3 s ($RAY_JOB_STOP_WAIT_TIME_S) before
SIGKILL: time enough to end the runs KILLED.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

LOCAL_START_TIMEOUT_S = 600
CLUSTER_START_TIMEOUT_S = 3600
START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"


class _DropTokenAuthNotice(logging.Filter):
    """Ray warns at every local start that token authentication is on, which is
    the default it chose and what we want: a notice, not a warning to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
    _DropTokenAuthNotice())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_local() -> bool:
    """True when a driver starts its own Ray (no ``$RAY_ADDRESS`` to join)."""
    return not os.environ.get("RAY_ADDRESS")


def start_ray(num_cpus: Optional[int] = None, log: Callable[[str], None] = print,
              startup_concurrency: Optional[int] = None) -> None:
    """Join ``$RAY_ADDRESS`` or start an isolated local Ray (no-op when connected).

    ``startup_concurrency``: worker processes a local Ray may start at once
    (Ray's default is the CPU count). A search starts about 8 processes per
    trial (trainable, controller, helpers, workers); below that, Ray warns that
    it started 4x its limit, a warning the user cannot act on. Setting it by
    environment variable instead crashes this Ray's raylet at start.
    """
    import ray

    if ray.is_initialized():
        return
    _init_ray(num_cpus, log, startup_concurrency)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def stop_ray(timeout_s: float = 30.0) -> None:
    """``ray.shutdown()``, given at most ``timeout_s``: for a driver about to
    leave with ``os._exit`` (whose threads are still inside ``fit()``), which
    runs no exit handler. A local Ray's dashboard and runtime-env agents
    were once seen to outlive such a driver, orphaned."""
    stopper = threading.Thread(target=_remove_local_temp_dir, daemon=True)
    stopper.start()
    stopper.join(timeout_s)


# Ray Tune copies these from the driver's environment into every trainable's
# runtime env, which Ray's runtime-env agent writes to its log in clear text
AWS_SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
               "AWS_SECURITY_TOKEN")
KEEP_TEMP_ENV = "BREFINE_KEEP_RAY_TEMP"
_local_temp_dir: Optional[str] = None


def hide_aws_credentials(folder: str) -> Optional[str]:
    """Move AWS keys from the environment into ``<folder>/aws-credentials`` (mode 0600).

    ``AWS_SHARED_CREDENTIALS_FILE`` then points at the file, so this process,
    the local Ray it starts and every worker of it read the same credentials
    through the standard AWS chain (boto3, pyarrow), while no environment that
    Ray or Tune copies or logs holds a key. Returns the file, or None when the
    environment held no key.
    """
    keys = {name: os.environ[name] for name in AWS_SECRETS if os.environ.get(name)}
    if not keys:
        return None
    path = os.path.join(folder, "aws-credentials")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"[{os.environ.get('AWS_PROFILE', 'default')}]\n")
        if "AWS_ACCESS_KEY_ID" in keys:
            out.write(f"aws_access_key_id = {keys['AWS_ACCESS_KEY_ID']}\n")
        if "AWS_SECRET_ACCESS_KEY" in keys:
            out.write(f"aws_secret_access_key = {keys['AWS_SECRET_ACCESS_KEY']}\n")
        token = keys.get("AWS_SESSION_TOKEN") or keys.get("AWS_SECURITY_TOKEN")
        if token:
            out.write(f"aws_session_token = {token}\n")
    for name in keys:
        del os.environ[name]
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = path
    return path


def _remove_local_temp_dir() -> None:
    """Shut the local Ray down and delete its temp root (unless $BREFINE_KEEP_RAY_TEMP)."""
    global _local_temp_dir
    if _local_temp_dir is None:
        return
    import ray

    ray.shutdown()
    if not os.environ.get(KEEP_TEMP_ENV):
        shutil.rmtree(_local_temp_dir, ignore_errors=True)
    _local_temp_dir = None


# Ray's switch for the local-only Ray it starts on macOS and Windows, where the
# node's address is 127.0.0.1 and every server binds loopback only
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def _loopback_node(environ: dict[str, str]) -> Iterator[None]:
    """A local Ray started inside this block has the address 127.0.0.1: all its ports on loopback.

    ``environ`` (and ``$RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) is set for the
    block, so the processes ``ray.init`` starts inherit it; both are restored
    after. ``ray.init`` replaces a node address of 127.0.0.1 by the machine's
    own unless Ray clusters are off, a flag Ray reads once, on import, hence
    set on its module here. With the node on 127.0.0.1, Ray 2.60 binds its gRPC
    servers (GCS, raylet, workers, object manager), its agents and its
    Prometheus exporters to loopback rather than to 0.0.0.0.
    """
    from ray._private import ray_constants

    clusters = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with environment({**environ, SINGLE_MACHINE_ENV: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = clusters


@contextmanager
def environment(values: dict[str, str]):
    """``os.environ`` updated with ``values`` for the block, then restored as it was."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def _local_system_config(startup_concurrency: Optional[int]) -> dict:
    """The raylet settings of a local Ray.

    Ray starts one idle worker process per CPU for the first driver, to have
    them ready for its tasks; a run starts actors only, each in a process of
    its own, so those processes were started and killed unused (about 2 s of
    CPU each, at the moment a run starts).
    """
    config = {"prestart_worker_first_driver": False}
    if startup_concurrency:
        config["worker_maximum_startup_concurrency"] = startup_concurrency
    return config


def _init_ray(num_cpus: Optional[int], log: Callable[[str], None],
              startup_concurrency: Optional[int] = None) -> None:
    import ray

    global _local_temp_dir
    address = os.environ.get("RAY_ADDRESS")
    default_timeout = CLUSTER_START_TIMEOUT_S if address else LOCAL_START_TIMEOUT_S
    env = {START_TIMEOUT_ENV: os.environ.get(START_TIMEOUT_ENV, str(default_timeout))}
    if address:
        log(f"Ray: joining the cluster at {address}")
        # the cluster's nodes have credentials of their own (cluster/README.md)
        folder = tempfile.mkdtemp(prefix="brefine-aws-")
        atexit.register(shutil.rmtree, folder, True)
        hide_aws_credentials(folder)
        if not address.startswith("ray://"):  # a Ray Client address means nothing to workers
            env["RAY_ADDRESS"] = address  # the cleaner's State API lookup, as for a local Ray
        ray.init(address=address, runtime_env={"env_vars": env},
                 logging_level=logging.WARNING)
        return
    gcs_port, dashboard_port = _free_port(), _free_port()
    # a 0700 root that Ray's own folder sits in: Ray makes its temp dir 0777
    # when its first worker starts, the root keeps its logs no other user's
    temp_dir = tempfile.mkdtemp(prefix="brefine-ray-", dir="/tmp")
    hide_aws_credentials(temp_dir)
    log(f"Ray: starting a local instance ({num_cpus or os.cpu_count()} CPUs, dashboard "
        f"http://127.0.0.1:{dashboard_port}, logs in {temp_dir}); this takes up to a minute")
    env["RAY_ADDRESS"] = f"127.0.0.1:{gcs_port}"
    # one machine has no node to lose to preemption: no watcher actor (a process
    # of its own) per Ray Train run
    env[PREEMPTION_WATCHER_ENV] = "0"
    # read by the head's processes as they start, which inherit this environment
    ports = {"RAY_GCS_SERVER_PORT": gcs_port, "DASHBOARD_METRIC_PORT": _free_port(),
             "AUTOSCALER_METRIC_PORT": _free_port()}
    with _loopback_node({name: str(port) for name, port in ports.items()}):
        ray.init(num_cpus=num_cpus, _temp_dir=os.path.join(temp_dir, "ray"),
                 include_dashboard=True,
                 dashboard_host="127.0.0.1", dashboard_port=dashboard_port,
                 runtime_env={"env_vars": env}, log_to_driver=False,
                 logging_level=logging.WARNING,
                 _system_config=_local_system_config(startup_concurrency))
    _local_temp_dir = temp_dir
    atexit.register(_remove_local_temp_dir)


class ResourceWaitWatcher:
    """Prints, once per placement group, that a run is waiting for resources.

    A placement group still pending after ``grace_s`` seconds (or a third of
    the start timeout, when that is shorter: the message must come before the
    failure) means workers that cannot be placed yet: resources held by other
    trials or runs, or a request larger than the cluster.
    """

    def __init__(self, grace_s: float = 30.0, poll_s: float = 5.0,
                 log: Callable[[str], None] = print) -> None:
        self.grace_s, self.poll_s, self.log = grace_s, poll_s, log
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="resource-wait-watcher",
                                        daemon=True)

    def __enter__(self) -> "ResourceWaitWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()

    def _run(self) -> None:
        import ray

        timeout = os.environ.get(START_TIMEOUT_ENV, str(
            LOCAL_START_TIMEOUT_S if is_local() else CLUSTER_START_TIMEOUT_S))
        grace_s = min(self.grace_s, float(timeout) / 3)
        while not self._stop.wait(self.poll_s):
            try:
                table = ray.util.placement_group_table()
                free = ray.available_resources()
            except Exception:  # Ray shutting down: nothing left to watch
                return
            now = time.time()
            for pg_id, pg in table.items():
                if pg.get("state") != "PENDING":
                    continue
                first = self._seen.setdefault(pg_id, now)
                if first and now - first >= grace_s:
                    self._seen[pg_id] = 0.0  # reported
                    needs = [{k: v for k, v in bundle.items() if not k.startswith("bundle_group")}
                             for bundle in pg.get("bundles", {}).values()]
                    self.log(f"waiting for resources: a run needs {needs}, free now "
                             f"{ {k: v for k, v in free.items() if k in ('CPU', 'GPU')} }; "
                             f"it fails after {timeout} s (${START_TIMEOUT_ENV})")
