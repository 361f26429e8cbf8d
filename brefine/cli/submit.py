"""``brefine submit -- COMMAND``: a job on a Ray cluster, waiting for a settling head."""

from __future__ import annotations

import argparse
import os
import shlex


def register(sub) -> None:
    """Add the `brefine submit` parser to `sub`."""
    parser = sub.add_parser("submit", help="submit a job to a Ray cluster (ray job submit that "
                                           "waits for a settling head and follows the logs)")
    parser.add_argument("--address", default=os.environ.get("RAY_DASHBOARD_ADDRESS",
                                                            "http://127.0.0.1:8265"),
                        help="the head's dashboard (default $RAY_DASHBOARD_ADDRESS or "
                             "http://127.0.0.1:8265)")
    parser.add_argument("--working-dir", default=".", help="uploaded with the job (default .)")
    parser.add_argument("--wait", type=float, default=120,
                        help="seconds to wait for a head that is not ready yet (default 120)")
    parser.add_argument("--no-wait", action="store_true", help="return once submitted")
    parser.add_argument("entrypoint", nargs=argparse.REMAINDER,
                        help="-- then the command, e.g. -- python tune/search.py --num-samples 8")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `brefine submit`; returns the exit status.

    Raises:
        UsageError: no entrypoint after ``--``.
    """
    from brefine.driver.submit import submit

    from . import UsageError

    words = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    entrypoint = " ".join(shlex.quote(a) for a in words)
    if not entrypoint:
        raise UsageError("give the entrypoint after --, e.g. -- python tune/search.py")
    job_id, status = submit(args.address, entrypoint, args.working_dir, args.wait,
                            follow=not args.no_wait)
    print(f"job {job_id}: {status}")
    return 0 if status in ("SUCCEEDED", "PENDING", "RUNNING") else 1
