"""``brefine submit``: ``ray job submit`` that waits for a head still settling.

It submits an entrypoint (``python tune/search.py ...``) with the working
directory to a cluster's job server, follows its logs and returns its exit
status. Compared with ``ray job submit`` it

* sends the head's authentication token (Ray 2.60 heads require one; the job
  client reads ``~/.ray/auth_token`` only when ``RAY_AUTH_MODE=token``, which
  is set here when that file exists);
* retries while the head answers "No available agent to submit job" or does
  not answer yet, for up to ``--wait`` seconds, saying so, instead of failing
  at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional

TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


class SubmitError(RuntimeError):
    """The job server cannot take the job; the message says what to check."""

NOT_READY = ("No available agent", "Connection refused", "Failed to connect",
             "ConnectionError", "Max retries exceeded", "503")


def submit(address: str, entrypoint: str, working_dir: Optional[str] = None,
           wait_s: float = 120, follow: bool = True,
           log: Callable[[str], None] = print) -> tuple[str, str]:
    """Submit and (``follow``) wait for the end; returns (job id, final status).

    Raises:
        SubmitError: the head does not take the job within ``wait_s``.
    """
    if "RAY_AUTH_MODE" not in os.environ and (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
    from ray.job_submission import JobSubmissionClient

    runtime_env = {"working_dir": working_dir} if working_dir else None
    deadline = time.time() + wait_s
    while True:
        try:
            client = JobSubmissionClient(address)
            job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
            break
        except Exception as err:  # the SDK raises RuntimeError/ConnectionError kinds
            text = str(err)
            if not any(marker in text for marker in NOT_READY) or time.time() > deadline:
                raise SubmitError(f"cannot submit to {address}: {text.splitlines()[0]}. "
                                   "Is the head up (`ray status`), and is this the dashboard "
                                   "address (http://127.0.0.1:8265 through `ray dashboard "
                                   "cluster/gpu.yaml`)?") from None
            log(f"the head at {address} is not ready for jobs yet ({text.splitlines()[0][:80]}); "
                "retrying")
            time.sleep(3)
    log(f"submitted job {job_id} to {address}")
    if not follow:
        return job_id, client.get_job_status(job_id).value
    printed = 0
    while True:
        status = client.get_job_status(job_id).value
        logs = client.get_job_logs(job_id)
        if len(logs) > printed:
            log(logs[printed:].rstrip("\n"))
            printed = len(logs)
        if status in TERMINAL:
            return job_id, status
        time.sleep(2)
