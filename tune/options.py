"""The search's command line: its options, and the options a resumed search restores."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from brefine.configs import HYPERPARAMETERS
from brefine.driver.options import add_run_options

EMBEDDED_CONFIG = "brefine_tiny_synthetic"


# options a resumed search takes from the resuming command line, not its record
RESUME_OWN = ("resume", "name", "work_dir", "storage", "mlflow_uri")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    """The search's options from ``argv`` (default: ``sys.argv``), kept as ``args.argv``.

    Raises:
        SystemExit: bad options (argparse prints the usage) or ``--help``.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    return args


def resumed_args(recorded: list[str], given: argparse.Namespace) -> argparse.Namespace:
    """The options of the search being resumed: those it was started with
    (``recorded``), with the resuming command's own (:data:`RESUME_OWN`).

    Raises:
        ConfigError: the resuming command gives another value for an option of
            the search; the message names it.
    """
    from brefine.configs import ConfigError

    parser = build_parser()
    defaults, restored = parser.parse_args([]), parser.parse_args(recorded)
    for key, value in vars(given).items():
        if key in (*RESUME_OWN, "argv") or value == getattr(defaults, key, None):
            continue
        if value != getattr(restored, key):
            raise ConfigError(f"--{key.replace('_', '-')} {value} conflicts with the search "
                              f"being resumed ({getattr(restored, key)}); leave it out to "
                              "resume with the search's own options")
    for key in RESUME_OWN:
        if getattr(given, key) != getattr(defaults, key):
            setattr(restored, key, getattr(given, key))
    restored.argv = recorded
    return restored


USAGE = """Ray Tune search over BRefine's λ (boundary_lambda), w (rpn_weight) and num_stages.

    python tune/search.py                       # embedded default: local Ray, tiny
                                                # config, built-in data, about 10 min on 2 CPUs
    ray job submit --working-dir . -- python tune/search.py \\
        --config brefine_r50_fpn_1x_coco --num-samples 16 --max-concurrent 4 \\
        --num-workers 8 --gpus-per-worker 1 --storage s3://bucket/brefine

Each trial is a Ray Train run (DDP workers) whose validations Tune sees; the
search is an MLflow parent run, every trial a nested child run. At the end:
``--confirm K`` trains the K best configurations and the default again with
fresh seeds and decides (t intervals paired on the seeds): a winner, registered with the
MLflow alias ``champion``, or none and the seeds a decision would need.
``trials.parquet``, ``summary.md``, the decision and figures beside the Ray
results and on the parent run. Ctrl-C ends the search KILLED (exit 130);
``--resume --name NAME`` continues it, in the search or its confirmation.
"""


def build_parser() -> argparse.ArgumentParser:
    """The search's command-line options."""

    p = argparse.ArgumentParser(description=USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=EMBEDDED_CONFIG,
                   help=f"config file or shipped config name (default: {EMBEDDED_CONFIG}, the "
                        "embedded search: fine-tunes a cached base detector, see README)")
    add_run_options(p, name_help="search name (default: search-<config>-<time>)")
    p.add_argument("--base-iters", type=int, default=None, metavar="N",
                   help="embedded search: iterations of the cached base detector its trials "
                        "fine-tune (default 60: a first demo within 10 min; make search "
                        "uses 1200)")
    p.add_argument("--num-samples", type=int, default=None,
                   help="searched trials (default 4)")
    p.add_argument("--repeat-default", type=int, default=None,
                   help="also run the table's default values this many times with other seeds, "
                        "to measure seed noise (default: 2 in the embedded search, else 0)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="trials at once (default 1; 2 in the embedded search)")
    p.add_argument("--scheduler", choices=["asha", "fifo", "pbt"], default=None,
                   help="asha (default) stops weak trials at validations; fifo runs all out "
                        "(the embedded default); pbt (population based training) makes weak "
                        "trials continue from strong ones' checkpoints with perturbed λ and w")
    p.add_argument("--grace-period", type=int, default=None,
                   help="ASHA: iterations before a trial may be stopped (default: val_interval)")
    p.add_argument("--perturbation-interval", type=int, default=None,
                   help="PBT: iterations between exploit/explore steps (default: val_interval)")
    p.add_argument("--pbt-synch", action="store_true",
                   help="PBT: perturb when all trials reached the step (pauses trials; "
                        "default: asynchronous, as each trial gets there)")
    p.add_argument("--search-alg", choices=["random", "optuna"], default="random")
    p.add_argument("--confirm", type=int, default=None, metavar="K",
                   help="after the search, train its K best configurations and the default "
                        "again with --confirm-seeds fresh seeds each at the full schedule, and "
                        "declare a winner only when its t interval (paired on the seeds) to "
                        "every other "
                        "excludes zero (default: 1 in the embedded search, else 0: no decision)")
    p.add_argument("--confirm-seeds", type=int, default=None, metavar="N",
                   help="seeds per confirmed configuration, at least 2 (default: 2 in the "
                        "embedded search, else 3)")
    p.add_argument("--objective", choices=["accuracy", "pareto"], default="accuracy",
                   help="which configurations --confirm takes: the most accurate, or those on "
                        "the accuracy/training-cost Pareto front first")
    p.add_argument("--metric", help="metric to maximise (default: validation segm AP)")
    for hyper in HYPERPARAMETERS.values():
        if hyper.search == "choice":
            p.add_argument(hyper.cli_option, dest=hyper.name, type=hyper.kind, nargs="+",
                           help=f"{hyper.name} choices (default "
                                f"{' '.join(map(str, hyper.search_default))})")
        else:
            p.add_argument(hyper.cli_option, dest=hyper.name, type=hyper.kind, nargs=2,
                           metavar=("LOW", "HIGH"),
                           help=f"{hyper.name}, {hyper.search} (default "
                                f"{' '.join(map(str, hyper.search_default))})")
    p.add_argument("--resume", action="store_true",
                   help="restore the interrupted search --name from storage and finish it, "
                        "with the options it was started with")
    return p
