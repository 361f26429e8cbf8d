"""Imports that would print to the terminal, made quietly once per process.

``mmdet.datasets`` prints (not logs) a notice about an optional package it
does not need; MLflow logs its database set-up at INFO. Neither helps a user
reading a search's terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging


def quiet_imports() -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        import mmdet.datasets  # noqa: F401
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)


quiet_imports()
