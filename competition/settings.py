"""Paths, seed and defaults: the one place they live.

Every path is relative to the project home, which is the current directory unless
``KIP_HOME`` says otherwise, so a clone works wherever it is and tests can point it
at a temporary folder.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

SEED = 42
DEFAULT_COMPETITION = "digits-demo"
DEFAULT_ARCH = "cnn"
VALIDATION_FRACTION = 0.15


def home() -> Path:
    return Path(os.environ.get("KIP_HOME", os.getcwd())).resolve()


def raw_dir(slug: str) -> Path:
    return home() / "data" / "raw" / slug


def cache_dir(slug: str) -> Path:
    return home() / "data" / "cache" / slug


def stamp() -> str:
    """The local time that names an output folder or file (``runs/cnn-<stamp>/``): sorts as it was made."""
    return time.strftime("%Y%m%d-%H%M%S")


def runs_dir() -> Path:
    return home() / "runs"


def submissions_dir() -> Path:
    return home() / "submissions"


def tuning_dir() -> Path:
    return home() / "tuning"


def reports_dir(slug: str) -> Path:
    return home() / "reports" / slug


def best_params_path(slug: str, arch: str) -> Path:
    """What a study recommends for ``make train``: ``tuning/best-<slug>-<arch>.json``."""
    return tuning_dir() / f"best-{slug}-{arch}.json"


def latest_run_pointer(slug: str) -> Path:
    """``runs/latest-<slug>.txt``: the newest finished run, what ``make predict`` uses."""
    return runs_dir() / f"latest-{slug}.txt"


def latest_submission_pointer(slug: str) -> Path:
    """``submissions/latest-<slug>.txt``: the newest submission, what ``make submit`` uploads."""
    return submissions_dir() / f"latest-{slug}.txt"
