"""The search's terminal: one line per trial event, Ray's own chatter in a log file.

* :class:`ProgressLines` (a Tune callback) prints a line when a trial starts
  (with its worker log), reports an intermediate validation, finishes or
  fails, with the optimized metric and the training iteration it reached.
* :func:`ray_log_to_file` sends the driver's Ray log records (Tune's, Train's)
  to ``<work dir>/<search>/ray-driver.log`` while the search runs; the
  summary points to it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Iterator

from ray.tune import Callback

from .names import child_name
from .trial import train_run_name


@contextlib.contextmanager
def ray_log_to_file(path: Path) -> Iterator[Path]:
    """While in the block, the records of the ``ray`` logger go to ``path``, not stderr."""
    logger = logging.getLogger("ray")
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    terminal = [h for h in logger.handlers if type(h) is not logging.FileHandler]
    for handler in terminal:
        logger.removeHandler(handler)
    logger.addHandler(to_file)
    try:
        yield path
    finally:
        logger.removeHandler(to_file)
        to_file.close()
        for handler in terminal:
            logger.addHandler(handler)


def say(line: str) -> None:
    """A progress line, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


class ProgressLines(Callback):
    """One line per trial event: started, validated, finished or stopped, failed.

    Args:
        work_dir, search, log_to_file: where a trial's worker log is (when written).
        metric: the optimized metric, shown by its short name.
        max_iters: the schedule, in training iterations.
        prefix: of the trials' names (``t``: search, ``c``: confirmation).
    """

    def __init__(self, work_dir: Path, search: str, log_to_file: bool, metric: str,
                 max_iters: int, prefix: str) -> None:
        self.work_dir, self.search, self.log_to_file = work_dir, search, log_to_file
        self.metric, self.max_iters, self.prefix = metric, max_iters, prefix

    def _name(self, trial) -> str:
        return child_name(trial.trial_id, trial.config, self.prefix)

    def _where(self, result: dict) -> str:
        iteration = result.get("iteration")
        reached = f"at iteration {iteration}/{self.max_iters}" if iteration is not None else \
            "before its first validation"
        value = result.get(self.metric)
        return reached + (f": {self.metric.rsplit('/', 1)[-1]} {value:.4f}"
                          if isinstance(value, (int, float)) else "")

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        log = self.work_dir / train_run_name(self.search, trial.trial_id) / "worker-rank0.log"
        say(f"{self._name(trial)} started" + (f"; worker log {log}" if self.log_to_file else ""))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get("iteration", 0) < self.max_iters:  # the last one: on_trial_complete
            say(f"{self._name(trial)} {self._where(result)}")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        ended = "finished" if result.get("iteration", 0) >= self.max_iters else "stopped early"
        cost = result.get("train_s_per_iter")
        say(f"{self._name(trial)} {ended} {self._where(result)}"
            + (f", {cost:.2f} s/iter" if isinstance(cost, (int, float)) else ""))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        say(f"{self._name(trial)} FAILED {self._where(trial.last_result or {})}: "
            f"{last_line(trial.error_file)}")


def last_line(path) -> str:
    """The last non-empty line of a trial's error file (the exception), or where it is."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except (OSError, TypeError):
        return f"see {path}"
    return lines[-1][:300] if lines else f"see {path}"
