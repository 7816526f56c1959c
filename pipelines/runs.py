"""Run folders: ``runs/<arch>-<time>/``, who owns one while it trains, and how other stages read them.

The one module that knows a run folder's files: ``config.json`` (every setting, the classes), ``metrics.json``
(written last: a run is finished once it exists), ``history.csv``, ``plan.json``, ``backup/`` and ``model.keras``.
Other modules call ``read_run``/``read_config``/``read_metrics`` rather than opening them.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

import pandas as pd

from competition import settings
from competition.errors import PipelineError
from competition.fileio import write_text

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive claim on a run folder while a process trains in it.

    It is an advisory ``fcntl.flock`` on ``<run>/.lock``: the kernel drops it when the process ends, however it
    ends, so a folder left by a killed run can be claimed (and resumed) at once while a live run's cannot. The
    file also names the owner (host, pid, start) for people looking at the folder.
    """

    def __init__(self, run_dir: Path, handle):
        self.run_dir, self._handle = Path(run_dir), handle

    @classmethod
    def try_claim(cls, run_dir: Path) -> RunLock | None:
        """The lock, or None when another live process holds it."""
        handle = open(Path(run_dir) / LOCK_NAME, "a+")
        try:
            import fcntl
        except ImportError:  # not POSIX: no claim is enforced
            return cls(run_dir, handle)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        handle.flush()
        return cls(run_dir, handle)

    def release(self) -> None:
        if not self._handle.closed:
            self._handle.close()  # closing drops the flock

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def new_folder(prefix: str) -> Path:
    """Make ``runs/<prefix>-<time>/``, with ``-2``, ``-3``, ... when another started in the same second."""
    base = settings.runs_dir() / f"{prefix}-{settings.stamp()}"
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


def new_run(arch: str) -> RunLock:
    """Make ``runs/<arch>-<time>/`` (unique if two runs start in the same second) and claim it."""
    return RunLock.try_claim(new_folder(arch))


def comparable(config: dict, names: set[str]) -> dict:
    """The settings that decide what a run computes (``verbose`` does not)."""
    return {k: v for k, v in config.items() if k in names - {"verbose"}}


def claim_unfinished_run(config) -> RunLock | None:
    """Claim the newest run folder of the same settings that was stopped before it finished, to resume it.

    A run is unfinished while it has ``backup/`` (BackupAndRestore's state) and no ``metrics.json``, which is
    written last. A folder another live process is training in is skipped: its lock cannot be claimed. Rerunning
    the same command therefore continues a killed run from its last finished epoch; changing any setting, or
    starting a second identical run while the first trains, starts a new folder.
    """
    root = settings.runs_dir()
    if not root.is_dir():
        return None
    names = {f.name for f in dataclasses.fields(config)}
    wanted = comparable(dataclasses.asdict(config), names)
    for path in sorted(root.glob(f"{config.arch}-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        unfinished = (path / "backup").is_dir() and not (path / "metrics.json").exists()
        if not (unfinished and (path / "config.json").exists()):
            continue
        try:
            saved = json.loads((path / "config.json").read_text())
        except json.JSONDecodeError:
            continue
        if comparable(saved, names) != wanted:
            continue
        lock = RunLock.try_claim(path)
        if lock is not None:
            return lock
    return None


def unfinished_run(config) -> Path | None:
    """The folder ``claim_unfinished_run`` would resume (claimed and released at once), or None."""
    lock = claim_unfinished_run(config)
    if lock is None:
        return None
    lock.release()
    return lock.run_dir


def mark_latest(slug: str, run_dir: Path) -> None:
    """Point ``runs/latest-<slug>.txt`` (what ``make predict`` uses) at a finished run."""
    write_text(settings.latest_run_pointer(slug), f"{run_dir}\n")


def latest_run(slug: str) -> Path:
    """The newest finished run for a competition (by slug)."""
    pointer = settings.latest_run_pointer(slug)
    if not pointer.exists():
        raise PipelineError(f"no finished run for {slug}; run `make train COMPETITION={slug}` first")
    return Path(pointer.read_text().strip())


def resolve_run(name) -> Path:
    """A run, CV, blend or refit folder given as a path (from here or from the project home) or as a name under
    ``runs/``; a name found nowhere comes back as given, for the error that names it."""
    path = Path(name)
    for candidate in (path, settings.home() / path, settings.runs_dir() / path):
        if candidate.exists():
            return candidate
    return path


def find_runs(names: list[str] | None, slug: str) -> list[Path]:
    """The named run folders (see ``resolve_run``), else the competition's newest finished run."""
    if names:
        return [resolve_run(n) for n in names]
    return [latest_run(slug)]


def read_config(run_dir: Path) -> dict:
    """A run's ``config.json``: its settings, classes and input shape."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise PipelineError(f"{run_dir}: not a run folder (no config.json); give a folder under runs/")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise PipelineError(f"{path}: not valid JSON; the run folder is damaged, retrain it") from None



def read_metrics(run_dir: Path) -> dict | None:
    """A finished run's ``metrics.json``, or None while it has not finished."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise PipelineError(f"{path}: not valid JSON; the run folder is damaged, retrain it") from None


def read_history(run_dir: Path) -> dict:
    """Per-epoch history from the run's CSV log (it spans a resumed run's sessions)."""
    path = Path(run_dir) / "history.csv"
    if not path.exists() or path.stat().st_size == 0:
        return {}
    frame = pd.read_csv(path).drop_duplicates("epoch", keep="last")
    return {c: frame[c].astype(float).tolist() for c in frame.columns if c != "epoch"}


def run_summary(metrics: dict) -> str:
    """What a finished run's numbers say in a line: epochs and seconds, and why it stopped when early stopping ended
    it before its plan (with the best epoch, whose weights are the model)."""
    out = f"{metrics['epochs_run']} epochs, {metrics['train_seconds']:.0f} s"
    if metrics.get("stopped_early"):
        out += f"; stopped early: {metrics['stopped_early']}, best epoch {metrics.get('best_epoch')}"
    return out
