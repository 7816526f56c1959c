"""Where studies live: SQLite under ``tuning/`` by default, any SQLAlchemy URL, or an Optuna journal file.

Kept free of TensorFlow so storage-only tools (and tests) start fast.
"""
from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage

from competition import settings
from competition.errors import PipelineError, first_line

HEARTBEAT_SECONDS = 30


def default_storage() -> str:
    return f"sqlite:///{settings.tuning_dir() / 'studies.db'}"


def open_storage(url: str | None = None, heartbeat: int = HEARTBEAT_SECONDS):
    """An Optuna storage for ``url`` (default: ``tuning/studies.db``).

    SQLite gets write-ahead logging and a 60 s busy timeout so several local workers share it without
    "database is locked"; RDB storages get a heartbeat, so a rerun marks the trials of a killed process failed and
    retries each once. ``*.journal``/``*.log`` paths (or ``journal:PATH``) use Optuna's journal file storage, which
    has no heartbeat.
    """
    url = url or default_storage()
    if url.startswith("journal:") or (("://" not in url) and url.endswith((".journal", ".log"))):
        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in url:
        raise PipelineError(f"storage '{url}': use an SQLAlchemy URL (sqlite:///..., postgresql://...) "
                            "or a journal file path ending in .journal")
    engine_kwargs = {}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path, timeout=60) as con:  # persistent: the file stays in WAL mode
            con.execute("PRAGMA journal_mode=WAL")
        engine_kwargs = {"connect_args": {"timeout": 60}}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                              grace_period=heartbeat * 3,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    except Exception as err:  # bad URL, server down, driver missing: one line
        raise PipelineError(f"storage '{url}': {first_line(err)}") from None
