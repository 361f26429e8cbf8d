"""Where BRefine keeps what it makes: a cache (datasets, wheels) and work dirs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$BREFINE_CACHE, else $XDG_CACHE_HOME/brefine, else ~/.cache/brefine."""
    if os.environ.get("BREFINE_CACHE"):
        return Path(os.environ["BREFINE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "brefine"
