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
from pipelines.callbacks import BestCheckpoint, TimeBudget
from pipelines.config import TrainConfig
from pipelines.data import Dataset, load_dataset
from pipelines.inference import predict_probabilities
from pipelines.inputs import make_augmenter, make_tf_dataset
from pipelines.metrics import scores
from pipelines.models import option_problems
from pipelines.normalize import fit_standardizer
from pipelines.recipe import build_for_training, resolve_precision

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


def train(config: TrainConfig, dataset: Dataset | None = None, callbacks: list | tuple = (),
          run_dir: Path | None = None, lean: bool = False,
          clock: Callable[[], float] = time.perf_counter) -> RunResult:
    """Train ``config.arch`` on the competition; write the run folder; return its validation metrics.

    A run that was killed resumes from its last finished epoch when the same settings are trained again (see
    ``runs.claim_unfinished_run``; a run another process is still training is never taken over), or when
    ``run_dir`` names it. ``lean`` is for tuning trials, where a killed trial is retried from scratch and only the
    numbers matter: no resumable backup, TensorBoard log or plots, and the best epoch's weights are kept in memory
    (``EarlyStopping(restore_best_weights=True)``) and saved once at the end. ``clock`` drives the time budget.
    """
    check_config(config)
    competition = load_competition(config.competition)
    precision = resolve_precision(config.precision)
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    if dataset.num_classes < 2:
        raise PipelineError(f"{competition.split_path('train')}: only one class; nothing to learn")
    binary = dataset.num_classes == 2

    keras.utils.set_random_seed(config.seed)
    drop = len(dataset.train) >= config.batch_size
    steps_per_epoch = len(dataset.train) // config.batch_size if drop else 1
    model, schedule = build_for_training(config, dataset.input_shape, dataset.num_classes, steps_per_epoch, precision)

    if run_dir is not None:  # a tuning trial's folder, or a run named to resume
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = None if lean else runs.RunLock.try_claim(run_dir)
        if not lean and lock is None:
            raise PipelineError(f"{run_dir}: another process is training in this run folder; wait for it or "
                                f"give another folder")
    else:
        lock = None if lean else runs.claim_unfinished_run(config)
        if lock is not None and config.verbose:
            print(f"train: resuming the unfinished run {lock.run_dir}")
        lock = lock or runs.new_run(config.arch)
        run_dir = lock.run_dir
    try:
        return _fit(config, dataset, model, schedule, run_dir, steps_per_epoch, precision, binary, competition.slug,
                    callbacks, lean, clock)
    finally:
        if lock is not None:
            lock.release()


def _fit(config, dataset, model, schedule, run_dir, steps_per_epoch, precision, binary, slug, callbacks, lean,
         clock) -> RunResult:
    standardizer = fit_standardizer(dataset.train.images, mode=config.normalization)
    standardizer.save(run_dir / "normalization.npz")
    write_json(run_dir / "config.json", {
        **dataclasses.asdict(config),
        "slug": slug,
        "classes": dataset.classes,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "train_size": len(dataset.train),
        "val_size": len(dataset.val),
        "precision_used": precision,
    })
    one_hot = None if binary else dataset.num_classes
    train_ds = make_tf_dataset(dataset.train.images, dataset.train.labels, standardizer, config.batch_size,
                               shuffle=True, seed=config.seed, binary=binary, num_classes=one_hot,
                               augment=make_augmenter(config, seed=config.seed), drop_remainder=True)
    val_ds = make_tf_dataset(dataset.val.images, dataset.val.labels, standardizer, config.batch_size * 2,
                             binary=binary, num_classes=one_hot)

    model_path = run_dir / "model.keras"
    before = runs.read_history(run_dir).get(MONITOR, [])
    verbose = progress_verbosity(config.verbose)
    progbar = keras.callbacks.ProgbarLogger() if verbose else None
    budget = None
    if config.minutes > 0:
        budget = TimeBudget(config.minutes * 60, schedule, steps_per_epoch, config.epochs,
                            None if lean else run_dir / "plan.json", progbar=progbar, verbose=config.verbose,
                            clock=clock)
    if lean:
        keeping = [keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience,
                                                 restore_best_weights=True)]
    else:
        keeping = [
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
            BestCheckpoint(model_path, monitor=MONITOR,
                           best=max(before) if before and model_path.exists() else -math.inf),
            keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
            keras.callbacks.EarlyStopping(monitor=MONITOR, mode="max", patience=config.patience),
        ]
    run_callbacks = [*([budget] if budget else []), *keeping,
                     keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
                     *([progbar] if progbar else []), *callbacks]
    started = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=verbose, shuffle=False,
              callbacks=run_callbacks)
    train_seconds = time.perf_counter() - started
    history = runs.read_history(run_dir)
    if lean and history.get(MONITOR):
        with atomic_path(model_path) as tmp:
            model.save(tmp)  # EarlyStopping restored the best epoch's weights
    if not model_path.exists():
        raise PipelineError(f"{run_dir}: no epoch finished with a {MONITOR}; nothing to evaluate")

    best = model if lean else keras.models.load_model(model_path, compile=False)
    probs = predict_probabilities(best, dataset.val.images, standardizer)
    val = scores(dataset.val.labels, probs, dataset.classes)
    metrics = {
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "val_log_loss": val["log_loss"],
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": int(np.argmax(history[MONITOR])) + 1 if history.get(MONITOR) else None,
        "train_seconds": round(train_seconds, 1),
        "precision": precision,
        "val_per_class": val["per_class"],
    }
    if not lean:
        plots.learning_curves(history, run_dir / "learning_curves.png")
        plots.confusion_matrix(dataset.val.labels, probs.argmax(axis=1), dataset.classes,
                               run_dir / "confusion_matrix.png")
    write_json(run_dir / "metrics.json", metrics)
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    if not lean:  # a tuning trial is not a run for `make predict`
        runs.mark_latest(slug, run_dir)
    return RunResult(run_dir=run_dir, metrics=metrics, history=history)


# Until every caller imports from the owning modules (pipelines.runs, .recipe, .inputs, .inference, .metrics).
from pipelines.recipe import WarmupSchedule, make_optimizer  # noqa: E402,F401
from pipelines.runs import latest_run, load_config, unfinished_run  # noqa: E402,F401
