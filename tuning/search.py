"""Optuna search over the same ``train`` function ``make train`` runs.

One study per competition and arch, stored in SQLite under ``tuning/`` (or any SQLAlchemy URL, or a journal file),
so a rerun resumes it and several worker processes, on one machine or many, share it. Each trial reports its
validation accuracy every epoch so the pruner can stop bad ones; a heartbeat lets a rerun fail (and retry once) the
trials of a process that was killed.
"""
from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import optuna
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState
from optuna_integration import KerasPruningCallback

from competition import settings
from competition.errors import PipelineError, first_line
from competition.registry import load_competition
from pipelines.callbacks import Deadline
from pipelines.cluster import scheduler_address
from pipelines.config import TrainConfig
from pipelines.data import load_dataset
from pipelines.train import train
from pipelines.tuned import write_tuned
from tuning.space import SearchSpace, build_space, check_compatible, departures, starting_point
from tuning.storage import (
    HEARTBEAT_SECONDS,
    compare_with_default,
    count_states,
    default_storage,
    open_storage,
    open_study,
    study_name,
)

FIDELITY = ("epochs",)  # how long a trial trains: not part of the recipe a trial's score is compared on
MONITOR = "val_accuracy"


@dataclass
class TuneOptions:
    """How a study runs: its budget (``trials`` more, and/or ``minutes``), where it lives, how it prunes, how many
    worker processes share it."""

    trials: int | None = 10
    minutes: float | None = None
    storage: str | None = None
    study: str | None = None
    pruner: str = "median"
    heartbeat: int = HEARTBEAT_SECONDS
    workers: int = 1
    scheduler: str | None = None  # a Dask scheduler's address: the trials run on its workers (tuning/cluster.py)


@dataclass
class Search:
    """One study's search as every worker runs it: the settings, the space, the study and the deadline."""

    config: TrainConfig
    space: SearchSpace
    name: str
    options: TuneOptions
    deadline: float | None  # seconds since the epoch (time.time), or None
    max_epochs: int = 40  # Hyperband's largest budget: the most epochs a trial can run

    def open(self, seed_offset: int = 0) -> optuna.Study:
        o = self.options
        return open_study(self.name, o.storage, o.heartbeat, o.pruner, self.config.seed + seed_offset,
                          self.max_epochs)


def best_params_path(slug: str, arch: str) -> Path:
    return settings.best_params_path(slug, arch)


def make_objective(config: TrainConfig, space: SearchSpace, dataset, trials_dir: Path, deadline: float | None = None,
                   clock=time.time):
    """The objective: sample, train with per-epoch reports to the pruner, return validation accuracy.

    A NaN loss (stopped by ``TerminateOnNaN``) or any exception fails the trial with its reason in the trial's
    ``fail_reason`` user attribute; ``study.optimize(catch=...)`` then goes on with the next one. A trial still
    running when the budget's ``deadline`` passes is pruned at the end of its epoch.
    """

    def objective(trial: optuna.Trial) -> float:
        params = space.sample(trial)
        trial.set_user_attr("fixed", space.fixed)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        keras.backend.clear_session()
        run_dir = trials_dir / f"trial-{trial.number:04d}"
        try:
            result = train(config.update(**params), dataset=dataset, run_dir=run_dir, lean=True,
                           callbacks=[KerasPruningCallback(trial, MONITOR), keras.callbacks.TerminateOnNaN(),
                                      Deadline(deadline, optuna.TrialPruned, clock)])
            bad = [i for i, v in enumerate(result.history.get("loss", []), start=1) if not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"loss became NaN/inf at epoch {bad[0]}; TerminateOnNaN stopped the run")
        except optuna.TrialPruned as pruned:
            trial.set_user_attr("pruned", first_line(pruned) or "the pruner stopped it")
            (run_dir / "model.keras").unlink(missing_ok=True)
            raise
        except Exception as err:
            trial.set_user_attr("fail_reason", first_line(err)[:500])
            (run_dir / "model.keras").unlink(missing_ok=True)
            raise
        trial.set_user_attr("run_dir", str(result.run_dir))
        for key in ("val_macro_f1", "val_log_loss", "epochs_run", "train_seconds"):
            trial.set_user_attr(key, result.metrics[key])
        return result.metrics[MONITOR]

    return objective


def run_trials(search: Search, n_trials: int | None, dataset=None, seed_offset: int = 0,
               clock=time.time) -> optuna.Study:
    """Run trials in this process until ``n_trials`` are done or ``clock()`` passes the search's deadline; at least
    one trial runs, however little of the budget is left once the data and the study are open."""
    config = search.config
    competition = load_competition(config.competition)
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)  # once per process
    study = search.open(seed_offset)

    def keep_best(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            write_best_params(study, competition.slug, config.arch)
        elif trial.user_attrs.get("run_dir"):  # only the best trial keeps its model file
            (Path(trial.user_attrs["run_dir"]) / "model.keras").unlink(missing_ok=True)

    def stop_at_deadline(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if search.deadline is not None and clock() >= search.deadline:
            study.stop()

    objective = make_objective(config, search.space, dataset, settings.runs_dir() / f"tune-{search.name}",
                               search.deadline, clock)
    study.optimize(objective, n_trials=n_trials, catch=(Exception,), gc_after_trial=True,
                   callbacks=[keep_best, stop_at_deadline])
    return study


def tune(config: TrainConfig, space: SearchSpace | None = None, options: TuneOptions | None = None, dataset=None,
         clock=time.time) -> optuna.Study:
    """Run ``options.trials`` more trials (in all, over ``options.workers`` processes) of the study for this
    competition and arch, starting none after ``options.minutes`` (at least one runs); write the best parameters;
    return the study.

    ``dataset`` (one worker only) skips loading the data again when the caller has it already; ``clock`` (seconds
    since the epoch, as ``time.time``) lets tests run a budget without real time (one worker only)."""
    options = options or TuneOptions()
    if options.trials is None and options.minutes is None:
        raise PipelineError("give a budget: a number of trials (TRIALS=) or minutes (MINUTES=)")
    if options.workers < 1:
        raise PipelineError("workers must be at least 1")
    space = space or build_space(config.arch)
    if "minutes" not in space.fixed and "minutes" not in space.params:
        # a trial runs the epochs it sampled; make train's time budget would re-plan them
        config = config.update(minutes=0)
    epochs = space.params.get("epochs")
    slug = load_competition(config.competition).slug
    search = Search(config, space, options.study or study_name(slug, config.arch), options,
                    None if options.minutes is None else clock() + options.minutes * 60,
                    epochs.high if epochs is not None else int(space.fixed.get("epochs", config.epochs)))
    existing = search.open()
    check_compatible(existing, space)
    if not existing.get_trials(deepcopy=False):
        # a new study starts from the untuned recipe, so the search is measured against it on the same hold-out
        start = starting_point(space, config)
        moved = [name for name in departures(space, config, start) if name not in FIDELITY]
        existing.enqueue_trial(start, user_attrs={"start": "make train's defaults", "moved": moved},
                               skip_if_exists=True)  # several machines starting one study at once
    _announce(search, existing)
    _run_workers(search, dataset, clock)
    final = optuna.load_study(study_name=search.name, storage=open_storage(options.storage, options.heartbeat))
    write_best_params(final, slug, config.arch)
    return final


def _announce(search: Search, study: optuna.Study) -> None:
    counts, o = count_states(study), search.options
    print(f"tune: study {search.name} in {o.storage or default_storage()} ({sum(counts.values())} trials so far"
          + "".join(f", {n} {state}" for state, n in counts.items()) + ")")
    print(f"tune: search space for {search.config.arch}:\n{search.space.describe()}")
    journal = isinstance(open_storage(o.storage, o.heartbeat), JournalStorage)
    print(f"tune: budget {o.trials if o.trials is not None else 'unlimited'} trials"
          + (f", {o.minutes:g} minutes" if o.minutes else "") + f"; {o.workers} worker(s); pruner {o.pruner}"
          + ("; no heartbeat (journal)" if journal else f"; heartbeat {o.heartbeat} s"), flush=True)


def _run_workers(search: Search, dataset, clock) -> None:
    """Run the trials in this process, or on a Dask cluster: ``workers`` local worker processes or a scheduler's."""
    if search.options.workers > 1 or scheduler_address(search.options.scheduler):
        from tuning.cluster import run_on_cluster  # Dask

        run_on_cluster(search, dataset)
        return
    run_trials(search, search.options.trials, dataset=dataset, clock=clock)


def best_params(trial: optuna.trial.FrozenTrial) -> dict:
    """The trial's full training settings: the sampled parameters and the ones the space held fixed."""
    return {**trial.user_attrs.get("fixed", {}), **trial.params}


def write_best_params(study: optuna.Study, slug: str, arch: str) -> Path | None:
    """Write the best trial's sampled parameters atomically, and whether they beat the untuned recipe.

    Settings the study held fixed (``SPACE="epochs=2"``, ``SET=``) are the search's conditions, not findings, so
    they are recorded but never handed on to ``make train``.
    """
    try:
        best = study.best_trial
    except ValueError:
        return None
    beats, why = compare_with_default(study)
    return write_tuned(slug, arch, {
        "study": study.study_name,
        "trial": best.number,
        MONITOR: best.value,
        "val_macro_f1": best.user_attrs.get("val_macro_f1"),
        "params": dict(best.params),
        "fixed": best.user_attrs.get("fixed", {}),
        "beats_default": beats,
        "why": why,
    })


