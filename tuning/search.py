"""Optuna search over the same ``train`` function ``make train`` runs.

One study per competition and arch, stored in SQLite under ``tuning/`` (or any SQLAlchemy URL, or a journal file),
so a rerun resumes it and several worker processes, on one machine or many, share it. Each trial reports its
validation accuracy every epoch so the pruner can stop bad ones; a heartbeat lets a rerun fail (and retry once) the
trials of a process that was killed.
"""
from __future__ import annotations

import math
import multiprocessing
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
from pipelines.config import TrainConfig, write_tuned
from pipelines.data import load_dataset
from pipelines.train import train
from tuning.space import SearchSpace, build_space, check_compatible, departures, starting_point
from tuning.storage import HEARTBEAT_SECONDS, default_storage, open_storage

# Median by default: in `make bench-tune` it gave more trials per hour than Hyperband and the better best score.
# Hyperband prunes from the second trial on, where the median pruner waits for 4 complete ones: it suits budgets
# of only a few full-length trials.
PRUNERS = ("median", "hyperband", "none")
FIDELITY = ("epochs",)  # how long a trial trains: not part of the recipe a trial's score is compared on
MONITOR = "val_accuracy"


@dataclass
class TuneOptions:
    """How a study runs: everything but the training config and the search space."""

    storage: str | None = None
    study: str | None = None
    pruner: str = "median"
    heartbeat: int = HEARTBEAT_SECONDS
    workers: int = 1
    max_epochs: int = 40  # Hyperband's largest budget: the most epochs a trial can run


def study_name(config: TrainConfig) -> str:
    return f"{load_competition(config.competition).slug}-{config.arch}"


def best_params_path(slug: str, arch: str) -> Path:
    return settings.best_params_path(slug, arch)


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


def open_study(name: str, options: TuneOptions, seed: int) -> optuna.Study:
    """Create the study or load it; the sampler's seed moves on with the study so a rerun does not repeat trials."""
    storage = open_storage(options.storage, options.heartbeat)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(options.pruner, options.max_epochs))
    # constant_liar: trials still running elsewhere count as bad, so parallel workers do not sample the same spot
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.get_trials(deepcopy=False)), constant_liar=True)
    return study


def count_states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    return counts


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


def run_trials(config: TrainConfig, space: SearchSpace, name: str, options: TuneOptions, n_trials: int | None,
               deadline: float | None, dataset=None, seed_offset: int = 0, clock=time.time) -> optuna.Study:
    """Run trials of study ``name`` in this process until ``n_trials`` are done or ``clock()`` passes ``deadline``;
    at least one trial runs, however little of the budget is left once the data and the study are open."""
    competition = load_competition(config.competition)
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)  # once per process
    study = open_study(name, options, config.seed + seed_offset)
    slug = competition.slug

    def keep_best(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and study.best_trial.number == trial.number:
            write_best_params(study, slug, config.arch)
        elif trial.user_attrs.get("run_dir"):  # only the best trial keeps its model file
            (Path(trial.user_attrs["run_dir"]) / "model.keras").unlink(missing_ok=True)

    def stop_at_deadline(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if deadline is not None and clock() >= deadline:
            study.stop()

    study.optimize(make_objective(config, space, dataset, settings.runs_dir() / f"tune-{name}", deadline, clock),
                   n_trials=n_trials, catch=(Exception,), gc_after_trial=True,
                   callbacks=[keep_best, stop_at_deadline])
    return study


def _worker(config: TrainConfig, space: SearchSpace, name: str, options: TuneOptions, n_trials: int | None,
            deadline: float | None, index: int, threads: int) -> None:
    """One worker process: its share of the CPU, its own data copy, its own sampler seed."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    run_trials(config, space, name, options, n_trials, deadline, seed_offset=1000 * index)


def tune(config: TrainConfig, n_trials: int | None = 10, storage: str | None = None, timeout: float | None = None,
         space: SearchSpace | None = None, workers: int = 1, pruner: str = "median", study: str | None = None,
         heartbeat: int = HEARTBEAT_SECONDS, dataset=None, clock=time.time) -> optuna.Study:
    """Run ``n_trials`` more trials (in all, over ``workers`` processes) of the study for this competition and arch,
    stopping new trials after ``timeout`` seconds (at least one runs); write the best parameters; return the study.

    ``dataset`` (one worker only) skips loading the data again when the caller has it already; ``clock`` (seconds
    since the epoch, as ``time.time``) lets tests run a budget without real time (one worker only)."""
    if n_trials is None and timeout is None:
        raise PipelineError("give a budget: a number of trials (TRIALS=) or minutes (MINUTES=)")
    if workers < 1:
        raise PipelineError("workers must be at least 1")
    deadline = None if timeout is None else clock() + timeout
    space = space or build_space(config.arch)
    if "minutes" not in space.fixed and "minutes" not in space.params:
        # a trial runs the epochs it sampled; make train's time budget would re-plan them
        config = config.update(minutes=0)
    epochs = space.params.get("epochs")
    options = TuneOptions(storage=storage, study=study, pruner=pruner, heartbeat=heartbeat, workers=workers,
                          max_epochs=epochs.high if epochs is not None
                          else int(space.fixed.get("epochs", config.epochs)))
    name = study or study_name(config)
    existing = open_study(name, options, config.seed)
    check_compatible(existing, space)
    if not existing.get_trials(deepcopy=False):
        # a new study starts from the untuned recipe, so the search is measured against it on the same hold-out
        start = starting_point(space, config)
        moved = [name for name in departures(space, config, start) if name not in FIDELITY]
        existing.enqueue_trial(start, user_attrs={"start": "make train's defaults", "moved": moved},
                               skip_if_exists=True)  # several machines starting one study at once
    counts = count_states(existing)
    where = options.storage or default_storage()
    print(f"tune: study {name} in {where} ({sum(counts.values())} trials so far"
          + "".join(f", {n} {state}" for state, n in counts.items()) + ")")
    print(f"tune: search space for {config.arch}:\n{space.describe()}")
    print(f"tune: budget {n_trials if n_trials is not None else 'unlimited'} trials"
          + (f", {timeout / 60:g} minutes" if timeout else "") + f"; {workers} worker(s); pruner {pruner}"
          + ("; no heartbeat (journal)" if isinstance(open_storage(storage, heartbeat), JournalStorage)
             else f"; heartbeat {heartbeat} s"),
          flush=True)

    _run_workers(config, space, name, options, n_trials, deadline, workers, dataset, clock)
    slug = load_competition(config.competition).slug

    final = optuna.load_study(study_name=name, storage=open_storage(storage, heartbeat))
    write_best_params(final, slug, config.arch)
    return final


def _run_workers(config, space, name, options, n_trials, deadline, workers, dataset, clock) -> None:
    """Run the trials in this process, or in ``workers`` spawned processes sharing the study."""
    if workers == 1:
        run_trials(config, space, name, options, n_trials, deadline, dataset=dataset, clock=clock)
    else:
        shares = [None] * workers if n_trials is None else \
            [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
        threads = max(1, (os.cpu_count() or 1) // workers)
        config = config.update(verbose=min(config.verbose, 2) and 2)  # one line per epoch, not interleaved bars
        context = multiprocessing.get_context("spawn")
        processes = [context.Process(target=_worker, name=f"tune-worker-{i}",
                                     args=(config, space, name, options, share, deadline, i + 1, threads))
                     for i, share in enumerate(shares) if share != 0]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed:
            print(f"tune: worker(s) {', '.join(failed)} exited abnormally; rerun to continue the study")


def best_params(trial: optuna.trial.FrozenTrial) -> dict:
    """The trial's full training settings: the sampled parameters and the ones the space held fixed."""
    return {**trial.user_attrs.get("fixed", {}), **trial.params}


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
    return better, (f"{MONITOR} {best.value:.4f} (trial {best.number}) vs {default.value:.4f} for the untuned recipe "
                    f"(trial {default.number}) on the same split")


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


def load_best_params(slug: str, arch: str) -> dict | None:
    """The tuned-settings record for this competition and arch, if a study wrote one."""
    from pipelines.config import read_tuned

    return read_tuned(slug, arch)
