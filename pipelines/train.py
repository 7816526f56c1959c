"""Training: ``train(config) -> RunResult``, the one function the CLI, the tests and Optuna call."""
from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from competition.errors import PipelineError
from competition.fileio import atomic_path, write_json
from competition.registry import load_competition
from pipelines import plots, runs
from pipelines.budget import Budget, TimeBudget
from pipelines.callbacks import KeepBest
from pipelines.config import TrainConfig
from pipelines.data import Dataset, load_dataset
from pipelines.evaluate import evaluate, tta_within_budget
from pipelines.inference import predict_probabilities
from pipelines.inputs import label_targets, make_augmenter, make_tf_dataset
from pipelines.models import load_model, option_problems
from pipelines.normalize import fit_standardizer
from pipelines.probabilities import Probabilities, write_probabilities
from pipelines.pseudo import with_pseudo_labels
from pipelines.recipe import build_for_training, build_training_state, resolve_precision
from pipelines.resize import ProgressiveResize, resize_batch, size_schedule, size_variable
from pipelines.whitening import whiten_first_conv

MONITOR = "val_accuracy"


@dataclass
class RunResult:
    """What a run produced: its folder, validation metrics and per-epoch history."""

    run_dir: Path
    metrics: dict
    history: dict = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model.keras"


def check_config(config: TrainConfig) -> None:
    """Every bad setting at once, model options included, before any work and before any folder exists."""
    problems = config.problems() + option_problems(config.arch, config.model_options())
    if problems:
        raise PipelineError("bad training setting(s): " + "; ".join(problems) + "; nothing was trained")


def progress_verbosity(verbose: int) -> int:
    """Keras's ``verbose``: a live bar on a terminal, one line per epoch when the output goes to a file."""
    return verbose if verbose != 1 or sys.stdout.isatty() else 2


@dataclass
class Session:
    """What a run trains with, all made before its folder exists: settings, data, the compiled model."""

    config: TrainConfig
    dataset: Dataset
    model: keras.Model
    schedule: object  # the WarmupSchedule, or None for a constant learning rate
    steps_per_epoch: int
    precision: str
    slug: str
    pseudo_labels: dict | None = None  # what pseudo-labelling added, per class


def prepare_session(config: TrainConfig, dataset: Dataset | None = None, slug: str | None = None) -> Session:
    """Check every setting, load the data (unless given) and build the model: whatever can fail on bad input fails
    here, before any run folder is made. Given the ``dataset`` and the competition's ``slug``, it reads no
    competition file (a fold on a cluster worker has none)."""
    check_config(config)
    competition = None if dataset is not None and slug is not None else load_competition(config.competition)
    precision = resolve_precision(config.precision)
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    if dataset.num_classes < 2:
        where = competition.split_path("train") if competition else slug
        raise PipelineError(f"{where}: only one class; nothing to learn")
    pseudo = None
    if config.pseudo_labels:
        dataset, pseudo = with_pseudo_labels(dataset, config.pseudo_labels, config.pseudo_threshold)
        if config.verbose:
            print(f"train: {pseudo['added']} pseudo-labelled test images added (top probability >= "
                  f"{config.pseudo_threshold}) from {config.pseudo_labels}")
    keras.utils.set_random_seed(config.seed)
    steps_per_epoch = max(len(dataset.train) // config.batch_size, 1)
    model, schedule = build_for_training(config, dataset.input_shape, dataset.num_classes, steps_per_epoch, precision)
    return Session(config, dataset, model, schedule, steps_per_epoch, precision, slug or competition.slug,
                   pseudo)


def train(config: TrainConfig, dataset: Dataset | None = None, callbacks: list | tuple = (),
          run_dir: Path | None = None, lean: bool = False,
          clock: Callable[[], float] = time.perf_counter, slug: str | None = None) -> RunResult:
    """Train ``config.arch`` on the competition; write the run folder; return its validation metrics.

    A run that was killed resumes from its last finished epoch when the same settings are trained again (see
    ``runs.claim_unfinished_run``; a run another process is still training is never taken over), or when
    ``run_dir`` names it. ``lean`` is for tuning trials, where a killed trial is retried from scratch and only the
    numbers matter: no resumable backup, TensorBoard log or plots, and the best epoch's weights are kept in memory
    and saved once at the end. ``clock`` drives the time budget; ``slug`` (with ``dataset``) spares reading the
    competition's files.
    """
    session = prepare_session(config, dataset, slug)
    lock = claim_folder(config, run_dir, lean)
    try:
        result = fit(session, lock.run_dir, callbacks, lean, clock)
    finally:
        lock.release()
    if run_dir is None and not lean:  # a run of its own (not a trial, a fold or a refit): what `make predict` uses
        runs.mark_latest(session.slug, result.run_dir)
    return result


def claim_folder(config: TrainConfig, run_dir: Path | None, lean: bool) -> runs.RunLock:
    """The run folder, claimed: ``run_dir`` (a trial's, or one named to resume), else the unfinished run of the same
    settings that no live process holds, else a new ``runs/<arch>-<time>/``."""
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        lock = runs.RunLock.try_claim(Path(run_dir))
        if lock is None:
            raise PipelineError(f"{run_dir}: another process is training in this run folder; wait for it or "
                                f"give another folder")
        return lock
    lock = None if lean else runs.claim_unfinished_run(config)
    if lock is not None and config.verbose:
        print(f"train: resuming the unfinished run {lock.run_dir}")
    return lock or runs.new_run(config.arch)


def run_callbacks(session: Session, run_dir: Path, lean: bool, clock, validate,
                  resizing: tuple | None = None) -> tuple[list, KeepBest | None]:
    """The time budget, progressive resizing (``resizing``: the size schedule and its variable), best-model keeping
    (resumable checkpoint and backup, or weights in memory for a lean trial; the optimizer's moving average when it
    validates better), early stopping, the CSV log and the progress bar; and the keeper, to restore a lean trial's
    best weights. Without a validation split (a refit) nothing is kept or stopped early: the last epoch is the
    model."""
    config, model_path = session.config, run_dir / "model.keras"
    verbose = progress_verbosity(config.verbose)
    progbar = keras.callbacks.ProgbarLogger() if verbose else None
    out, keep, budget = [], None, None
    if config.minutes > 0:
        cost = resizing[0].relative_cost if resizing else None
        budget = TimeBudget(Budget(config.minutes * 60, session.steps_per_epoch, config.epochs, cost=cost),
                            session.schedule, None if lean else run_dir / "plan.json", progbar=progbar,
                            verbose=config.verbose, clock=clock)
        out.append(budget)
    if resizing:
        planned = (lambda: budget.planned_steps) if budget else (lambda: config.epochs * session.steps_per_epoch)
        out.append(ProgressiveResize(*resizing, session.steps_per_epoch, planned, verbose=config.verbose))
    if session.dataset.val is not None:
        before = [] if lean else runs.read_history(run_dir).get(MONITOR, [])
        keep = KeepBest(MONITOR, None if lean else model_path,
                        max(before) if before and model_path.exists() else -math.inf, validate)
        out += [keep, keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience)]
    if not lean:
        out += [keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
                keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0)]
    out.append(keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True))
    return out + ([progbar] if progbar else []), keep


def fit(session: Session, run_dir: Path, callbacks, lean: bool, clock) -> RunResult:
    """Fit in ``run_dir`` (claimed by the caller), then evaluate the best epoch's model (with the TTA that
    validates best), save its validation predictions and write the metrics."""
    config, dataset, model = session.config, session.dataset, session.model
    val = dataset.val
    standardizer = fit_standardizer(dataset.train.images, mode=config.normalization)
    standardizer.save(run_dir / "normalization.npz")
    if config.whiten:
        whiten_first_conv(model, dataset.train.images, standardizer, seed=config.seed)
    write_json(run_dir / "config.json", {
        **dataclasses.asdict(config), "slug": session.slug, "classes": dataset.classes,
        "input_shape": list(dataset.input_shape), "num_classes": dataset.num_classes,
        "train_size": len(dataset.train), "val_size": len(val) if val is not None else 0,
        "precision_used": session.precision, "pseudo_labels_added": session.pseudo_labels})
    sizes = size_schedule(config, dataset.input_shape)
    resizing = (sizes, size_variable(sizes)) if sizes else None
    train_ds = make_tf_dataset(dataset.train.images, label_targets(dataset.train.labels, dataset.num_classes),
                               standardizer, config.batch_size, shuffle_seed=config.seed,
                               augment=make_augmenter(config, seed=config.seed),
                               resize=resize_batch(resizing[1], sizes.full) if resizing else None)
    build_training_state(model, train_ds.element_spec)
    val_ds = None if val is None else make_tf_dataset(
        val.images, label_targets(val.labels, dataset.num_classes), standardizer, config.batch_size * 2)

    def validate(weights_model) -> float:
        probs = predict_probabilities(weights_model, val.images, standardizer)
        return float(np.mean(probs.argmax(axis=1) == val.labels))

    run_callbacks_, keep = run_callbacks(session, run_dir, lean, clock, validate, resizing)
    started = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=progress_verbosity(config.verbose),
              shuffle=False, callbacks=run_callbacks_ + list(callbacks))
    train_seconds = time.perf_counter() - started
    history = runs.read_history(run_dir)
    model_path = run_dir / "model.keras"
    if (lean and keep is not None and keep.weights is not None) or val is None:
        if keep is not None:
            keep.restore()
        with atomic_path(model_path) as tmp:
            model.save(tmp)
    if not model_path.exists():
        raise PipelineError(f"{run_dir}: no epoch finished with a {MONITOR}; nothing to evaluate")
    metrics = {"epochs_run": len(history.get("loss", [])), "train_seconds": round(train_seconds, 1),
               "precision": session.precision, "tta": config.tta if config.tta != "auto" else "none"}
    stopper = next((c for c in run_callbacks_ if isinstance(c, keras.callbacks.EarlyStopping)), None)
    if stopper is not None and stopper.stopped_epoch:
        metrics["stopped_early"] = f"no better {MONITOR} in the last {config.patience} epochs"
    resizer = next((c for c in run_callbacks_ if isinstance(c, ProgressiveResize)), None)
    if resizer is not None:
        metrics["image_sizes"] = [list(size) for size in resizer.sizes_used]
    if val is not None:
        best = model if lean else load_model(model_path)
        timer = next((c for c in run_callbacks_ if isinstance(c, TimeBudget)), None)
        choices, skipped = tta_within_budget(("none",) if lean and config.tta == "auto" else config.tta_choices(),
                                             getattr(timer, "test_seconds", None), timer and timer.seconds)
        if skipped:
            metrics["tta_skipped"] = skipped
            if config.verbose:
                print(f"train: {skipped}", flush=True)
        found = evaluate(best, val.images, val.labels, standardizer, dataset.classes, choices)
        metrics.update(val_accuracy=found.scores["accuracy"], val_macro_f1=found.scores["macro_f1"],
                       val_log_loss=found.scores["log_loss"], tta=found.tta, val_accuracy_by_tta=found.accuracy_by_tta,
                       weights=keep.best_source, val_per_class=found.scores["per_class"],
                       best_epoch=int(np.argmax(history[MONITOR])) + 1 if history.get(MONITOR) else None)
        if not lean:
            write_probabilities(run_dir / "val_predictions.npz", Probabilities(
                val.ids, found.probabilities_by_tta, val.labels, classes=dataset.classes))
            plots.confusion_matrix(val.labels, found.probabilities_by_tta[found.tta].argmax(axis=1),
                                   dataset.classes, run_dir / "confusion_matrix.png")
    if not lean:
        plots.learning_curves(history, run_dir / "learning_curves.png")
    write_json(run_dir / "metrics.json", metrics)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    return RunResult(run_dir=run_dir, metrics=metrics, history=history)
