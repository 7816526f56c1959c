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


# Median by default: in `make bench-tune` it gave more trials per hour than Hyperband and the better best score.
# Hyperband prunes from the second trial on, where the median pruner waits for 4 complete ones: it suits budgets
# of only a few full-length trials.
PRUNERS = ("median", "hyperband", "none")


def make_pruner(name: str, max_epochs: int = 40) -> optuna.pruners.BasePruner:
    """Median: after 4 trials, stop a trial whose validation accuracy from its second epoch on is below the median
    of earlier trials at that epoch. Hyperband: successive halving over 1, 3, 9, ... epochs up to ``max_epochs``."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise PipelineError(f"unknown pruner '{name}'; choose one of {', '.join(PRUNERS)}")


def open_study(name: str, storage: str | None = None, heartbeat: int = HEARTBEAT_SECONDS, pruner: str = "median",
               seed: int = settings.SEED, max_epochs: int = 40) -> optuna.Study:
    """Create the study or load it; the sampler's seed moves on with the study so a rerun does not repeat trials."""
    study = optuna.create_study(study_name=name, storage=open_storage(storage, heartbeat), direction="maximize",
                                load_if_exists=True, pruner=make_pruner(pruner, max_epochs))
    # constant_liar: trials still running elsewhere count as bad, so parallel workers do not sample the same spot
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)), constant_liar=True)
    return study


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


def compare_with_default(study: optuna.Study) -> tuple[bool, str]:
    """Whether the best trial beat the untuned recipe on the same split, and why (one phrase)."""
    best, default = study.best_trial, default_trial(study)
    if default is None:
        return False, "the study has no finished trial of the untuned recipe to compare with"
    if default.user_attrs.get("moved"):
        return False, (f"the search space does not hold the untuned recipe ({', '.join(default.user_attrs['moved'])} "
                       f"moved into it), so there is nothing to compare with")
    if best.number == default.number:
        return False, f"the untuned recipe is the best trial ({default.value:.4f})"
    better = best.value > default.value
    return better, (f"val_accuracy {best.value:.4f} (trial {best.number}) vs {default.value:.4f} for the untuned "
                    f"recipe (trial {default.number}) on the same split")


