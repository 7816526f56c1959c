"""Optuna search over the same ``train`` function ``make train`` runs, at a lower fidelity, then a final check.

One study per competition and arch, stored in SQLite under ``tuning/`` (or any SQLAlchemy URL, or a journal file),
so a rerun resumes it and several worker processes, on one machine or many, share it. Each trial runs make train's
time-budgeted recipe at the study's fidelity (``tuning.fidelity``) and reports its progress so the pruner can stop
bad ones; a heartbeat lets a rerun fail (and retry once) the trials of a process that was killed. At the end the
best candidates and the default are trained again at the final budget (``tuning.check``), and the tuned parameters
are recommended only when one wins there.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.storages.journal import JournalStorage
from optuna.trial import TrialState

from competition import settings
from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines.cluster import scheduler_address
from pipelines.config import TrainConfig
from pipelines.data import load_dataset
from pipelines.runs import mark_latest
from tuning.check import final_check, write_record
from tuning.fidelity import CheckOptions, Fidelity, check_study, reduce_dataset, search_minutes
from tuning.objective import make_objective
from tuning.space import SearchSpace, build_space, check_compatible, departures, describe, early_tries, starting_point
from tuning.storage import (
    HEARTBEAT_SECONDS,
    count_states,
    default_storage,
    drop_model_unless_best,
    open_storage,
    open_study,
    startup_trials,
    study_name,
)

PRUNED_SHARE = 0.5  # with successive halving a trial runs about half its budget on average: for TPE's start-up


@dataclass
class TuneOptions:
    """How a study runs: its budget (``trials`` more, and/or ``minutes`` in all, the final check included), its
    fidelity and final check, where it lives, how it prunes, how many worker processes share it; ``record``: write
    the tuned-settings file ``make train`` reads."""

    trials: int | None = 10
    minutes: float | None = None
    storage: str | None = None
    study: str | None = None
    pruner: str = "sha"
    heartbeat: int = HEARTBEAT_SECONDS
    workers: int = 1
    fidelity: Fidelity = field(default_factory=Fidelity)
    check: CheckOptions = field(default_factory=CheckOptions)
    record: bool = True
    scheduler: str | None = None  # a Dask scheduler's address: the trials run on its workers (tuning/cluster.py)


@dataclass
class Search:
    """One study's search as every worker runs it: the settings, the space, the study, the fidelity (resolved), the
    deadline of the trials and the sampler's start-up."""

    config: TrainConfig
    space: SearchSpace
    name: str
    options: TuneOptions
    fidelity: Fidelity
    deadline: float | None  # seconds since the epoch (time.time), or None
    startup: int = 10

    def open(self, seed_offset: int = 0) -> optuna.Study:
        o = self.options
        return open_study(self.name, o.storage, o.heartbeat, o.pruner, self.config.seed + seed_offset, self.startup)


def best_params_path(slug: str, arch: str) -> Path:
    return settings.best_params_path(slug, arch)


def run_trials(search: Search, n_trials: int | None, dataset=None, seed_offset: int = 0,
               clock=time.time) -> optuna.Study:
    """Run trials in this process until ``n_trials`` are done or ``clock()`` passes the search's deadline; at least
    one trial runs, however little of the budget is left once the data and the study are open. ``dataset`` is the
    full data; each trial sees it reduced to the search's fidelity."""
    config = search.config
    if dataset is None:
        dataset = load_dataset(load_competition(config.competition), seed=config.seed, progress=config.verbose > 0)
    reduced = reduce_dataset(dataset, search.fidelity, config.seed)  # once per process
    study = search.open(seed_offset)

    def keep_best_model(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        drop_model_unless_best(study, trial.number, trial.state == TrialState.COMPLETE, trial.user_attrs.get("run_dir"))

    def stop_at_deadline(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if search.deadline is not None and clock() >= search.deadline:
            study.stop()

    objective = make_objective(config, search.space, reduced, settings.runs_dir() / f"tune-{search.name}",
                               search.fidelity, search.deadline, clock)
    study.optimize(objective, n_trials=n_trials, catch=(Exception,), gc_after_trial=True,
                   callbacks=[keep_best_model, stop_at_deadline])
    return study


def tune(config: TrainConfig, space: SearchSpace | None = None, options: TuneOptions | None = None, dataset=None,
         clock=time.time) -> optuna.Study:
    """Run ``options.trials`` more trials (in this process, or on a Dask cluster's workers) of the study for this
    competition and arch, starting none once the part of ``options.minutes`` left for them is spent (at least one
    runs); then the final check, here, which writes the tuned-settings record; return the study.

    ``dataset`` skips loading the data again when the caller has it already; ``clock`` (seconds since the epoch, as
    ``time.time``) lets tests run a budget without real time (in this process only)."""
    options = options or TuneOptions()
    if options.trials is None and options.minutes is None:
        raise PipelineError("give a budget: a number of trials (TRIALS=) or minutes (MINUTES=)")
    if options.workers < 1:
        raise PipelineError("workers must be at least 1")
    space = space or build_space(config.arch)
    fidelity = options.fidelity.resolve(config.minutes)
    minutes = search_minutes(options.minutes, fidelity, options.check)  # before anything is opened or written
    slug = load_competition(config.competition).slug
    name = options.study or study_name(slug, config.arch)
    expected = options.trials
    if minutes is not None and fidelity.minutes:
        expected = min(expected or 10 ** 6, int(minutes / (fidelity.minutes * PRUNED_SHARE)))
    search = Search(config, space, name, options, fidelity, None if minutes is None else clock() + minutes * 60)
    existing = search.open()
    check_study(existing, fidelity)
    check_compatible(existing, space)
    search.startup = startup_trials(None if expected is None else len(existing.trials) + expected)
    start = starting_point(space, config)
    _notice_excluded_defaults(space, config, start)
    if not existing.get_trials(deepcopy=False):
        # a new study starts from the untuned recipe, so the search is measured against it on the same hold-out
        existing.enqueue_trial(start, user_attrs={"start": "make train's defaults",
                                                  "moved": departures(space, config, start)},
                               skip_if_exists=True)  # several machines starting one study at once
        for params in early_tries(space, start):
            existing.enqueue_trial(params, user_attrs={"tries": ", ".join(
                f"{n}={v}" for n, v in params.items() if start.get(n) != v)}, skip_if_exists=True)
    _announce(search, existing, minutes)
    if dataset is None:  # once: the trials (here or sent to the cluster's workers) and the check share it
        dataset = load_dataset(load_competition(config.competition), seed=config.seed, progress=config.verbose > 0)
    _run_workers(search, dataset, clock)
    final = optuna.load_study(study_name=search.name, storage=open_storage(options.storage, options.heartbeat))
    record = final_check(final, config, options.check, fidelity, dataset, settings.runs_dir() / f"tune-{name}", clock)
    if options.record:
        write_record(record, slug, config.arch)
        if record.get("run"):  # the check trained make train's run: make predict and make submit take it up
            mark_latest(slug, Path(record["run"]))
            print(f"tune: make predict and make submit use it (runs/latest-{slug}.txt); make train trains another")
    return final


def _notice_excluded_defaults(space: SearchSpace, config: TrainConfig, start: dict) -> None:
    """One line when the space leaves out make train's own value of a setting: the search still runs (trial 0 starts
    from the nearest point) and the final check still trains the default itself."""
    moved = departures(space, config, start)
    if moved:
        print("tune: notice: the search space excludes make train's default "
              + ", ".join(f"{n}={getattr(config, n)!r} ({describe(space.params[n])})" for n in moved)
              + "; trial 0 starts from the nearest point and the final check still trains the default itself")


def _announce(search: Search, study: optuna.Study, minutes: float | None) -> None:
    counts, o = count_states(study), search.options
    print(f"tune: study {search.name} in {o.storage or default_storage()} ({sum(counts.values())} trials so far"
          + "".join(f", {n} {state}" for state, n in counts.items()) + ")")
    print(f"tune: search space for {search.config.arch}:\n{search.space.describe()}")
    journal = isinstance(open_storage(o.storage, o.heartbeat), JournalStorage)
    print(f"tune: fidelity {search.fidelity.describe()}; a trial's epochs, warm-up and patience scaled by "
          f"{search.fidelity.epoch_scale:.3g}")
    print(f"tune: budget {o.trials if o.trials is not None else 'unlimited'} trials"
          + (f", {o.minutes:g} minutes ({minutes:.3g} for trials, the rest for the final check)" if o.minutes else "")
          + f"; {o.workers} worker(s); pruner {o.pruner}; TPE start-up {search.startup} trials"
          + ("; no heartbeat (journal)" if journal else f"; heartbeat {o.heartbeat} s"), flush=True)


def _run_workers(search: Search, dataset, clock) -> None:
    """Run the trials in this process, or on a Dask cluster (``workers`` local worker processes or a scheduler's):
    the one place where tuning starts parallel workers."""
    if search.options.workers > 1 or scheduler_address(search.options.scheduler):
        from tuning.cluster import run_on_cluster  # Dask

        run_on_cluster(search, dataset)
        return
    run_trials(search, search.options.trials, dataset=dataset, clock=clock)
