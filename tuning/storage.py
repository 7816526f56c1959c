"""The study: where it lives (SQLite under ``tuning/`` by default, any SQLAlchemy URL, or an Optuna journal file),
how it is named, opened, pruned and counted, and its trial of the untuned recipe.

Kept free of TensorFlow so storage-only tools (and tests) start fast.
"""
from __future__ import annotations

import sqlite3
import warnings
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

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


def study_name(slug: str, arch: str) -> str:
    """A competition and arch's study: ``<slug>-<arch>`` unless ``STUDY=`` names another."""
    return f"{slug}-{arch}"


def load_study(name: str, storage: str | None = None) -> optuna.Study:
    """An existing study, or a one-line error saying there is none yet."""
    try:
        return optuna.load_study(study_name=name, storage=open_storage(storage))
    except KeyError:
        raise PipelineError(f"no study '{name}' in {storage or default_storage()}; run `make tune` first") from None


# Successive halving by default: one bracket of rungs, so every trial is compared from the start (Hyperband's
# brackets each need their own start-up trials: about 40 trials for 4 brackets, more than an hour holds on a CPU).
PRUNERS = ("sha", "median", "hyperband", "none")
FIRST_RUNG = 12  # percent of a trial's run: rungs at 12% and 36% (x3), never at its end


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """Pruners over a trial's progress in percent of its run (``tuning.objective.ReportProgress``).

    sha (asynchronous successive halving): at 12% and again at 36% of its run a trial goes on only when it is in the
    top third of the trials that got there (the first ones: the best so far). median: from 20% on, after 4 finished
    trials, stop a trial below the median of earlier ones at the same point. hyperband: successive halving in
    several brackets from 12% to 100%. none: no pruning."""
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=FIRST_RUNG, reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=20)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=FIRST_RUNG, max_resource=100, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise PipelineError(f"unknown pruner '{name}'; choose one of {', '.join(PRUNERS)}")


def startup_trials(expected: int | None) -> int:
    """TPE's random start-up fitted to the trials a budget is expected to hold: a quarter of them, 4 to 10."""
    return 10 if expected is None else max(4, min(10, round(expected / 4)))


def open_study(name: str, storage: str | None = None, heartbeat: int = HEARTBEAT_SECONDS, pruner: str = "sha",
               seed: int = settings.SEED, startup: int = 10) -> optuna.Study:
    """Create the study or load it; the sampler's seed moves on with the study so a rerun does not repeat trials.

    Multivariate TPE (grouped, for the settings only some optimizers and schedules take) models the settings
    together, so the search narrows around what wins; ``startup`` random trials (the study's own count, trial 0
    included) come first; constant_liar: trials still running elsewhere count as bad, so parallel workers do not
    sample the same spot."""
    study = optuna.create_study(study_name=name, storage=open_storage(storage, heartbeat), direction="maximize",
                                load_if_exists=True, pruner=make_pruner(pruner))
    study.sampler = make_sampler(seed + len(study.get_trials(deepcopy=False)), startup)
    return study


def make_sampler(seed: int, startup: int = 10) -> optuna.samplers.TPESampler:
    """The study's sampler (``open_study``), also where a cluster worker samples a trial the client asked for."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate, group
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, group=True,
                                          constant_liar=True)


def count_states(study: optuna.Study) -> dict[str, int]:
    """How many trials are in each state (``complete``, ``pruned``, ``fail``, ``running``, ...)."""
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


def default_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The study's finished trial of ``make train``'s untuned recipe (its first, enqueued by ``tune``)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if "start" in trial.user_attrs:
            return trial
    return None


def drop_model_unless_best(study: optuna.Study, trial_number: int, complete: bool, run_dir) -> None:
    """Only the study's best trial keeps its model file: remove ``model.keras`` from ``run_dir`` otherwise."""
    if complete and study.best_trial.number == trial_number:
        return
    if run_dir:
        (Path(run_dir) / "model.keras").unlink(missing_ok=True)
