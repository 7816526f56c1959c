"""Training: ``train(config) -> RunResult``, the one function the CLI, the tests and Optuna call."""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.metrics import accuracy_score, f1_score, log_loss

from competition import settings
from competition.config import load_competition
from competition.errors import PipelineError
from competition.fileio import atomic_path, write_json, write_text
from pipelines import plots
from pipelines.data import Dataset, load_dataset
from pipelines.models import build_model
from pipelines.normalize import Standardizer, fit_standardizer

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as the run's ``config.json``."""

    competition: str = settings.DEFAULT_COMPETITION
    arch: str = settings.DEFAULT_ARCH
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout_rate: float = 0.3
    normalization: str = "pixel"
    patience: int = 8
    seed: int = settings.SEED
    verbose: int = 1

    def update(self, **changes) -> "TrainConfig":
        """A copy with ``changes``; unknown names are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise PipelineError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)


@dataclass
class RunResult:
    """What a run produced: its folder, validation metrics and per-epoch history."""

    run_dir: Path
    metrics: dict
    history: dict = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.run_dir / "model.keras"


def new_run_dir(arch: str) -> Path:
    """``runs/<arch>-<time>/``, made unique if two runs start in the same second."""
    base = settings.runs_dir() / f"{arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    path.mkdir(parents=True)
    return path


def latest_run_file(slug: str) -> Path:
    return settings.runs_dir() / f"latest-{slug}.txt"


def latest_run(slug: str) -> Path:
    """The newest finished run for a competition."""
    pointer = latest_run_file(slug)
    if not pointer.exists():
        raise PipelineError(f"no finished run for {slug}; run `make train COMPETITION={slug}` first")
    return Path(pointer.read_text().strip())


def make_optimizer(config: TrainConfig):
    name = config.optimizer.lower()
    if name == "adam":
        return keras.optimizers.Adam(config.learning_rate)
    if name == "adamw":
        return keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay or 1e-4)
    if name == "sgd":
        return keras.optimizers.SGD(config.learning_rate, momentum=config.momentum, nesterov=True)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(config.learning_rate, momentum=config.momentum if config.momentum < 0.5 else 0.0)
    raise PipelineError(f"unknown optimizer '{config.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")


def make_tf_dataset(images, labels, standardizer: Standardizer, batch_size: int, shuffle: bool = False,
                    seed: int = 0, binary: bool = False):
    """uint8 arrays -> batched, standardized, prefetched ``tf.data.Dataset``."""
    mean = tf.constant(standardizer.mean, tf.float32)
    scale = tf.constant(standardizer.scale, tf.float32)
    normalize = lambda x: (tf.cast(x, tf.float32) - mean) / scale  # noqa: E731
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(images)
    else:
        ds = tf.data.Dataset.from_tensor_slices((images, labels.astype(np.float32 if binary else np.int64)))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map((lambda x, y: (normalize(x), y)) if labels is not None else normalize,
                num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def predict_probabilities(model, images, standardizer: Standardizer, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (N, num_classes), also for a one-unit sigmoid model."""
    ds = make_tf_dataset(images, None, standardizer, batch_size)
    probs = np.asarray(model.predict(ds, verbose=0), dtype=np.float64)
    if probs.shape[-1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    return probs


def scores(labels: np.ndarray, probs: np.ndarray) -> dict:
    """Accuracy, macro F1 and log loss with scikit-learn."""
    probs = np.clip(probs, 1e-7, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    classes = np.arange(probs.shape[1])
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=classes, average="macro", zero_division=0)),
        "log_loss": float(log_loss(labels, probs, labels=classes)),
    }


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever ``monitor`` improves, atomically, so a kill never leaves a broken file."""

    def __init__(self, path: Path, monitor: str = "val_accuracy"):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, -math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = value
            with atomic_path(self.path) as tmp:
                self.model.save(tmp)


def train(config: TrainConfig, dataset: Dataset | None = None, callbacks: list | tuple = (),
          run_dir: Path | None = None) -> RunResult:
    """Train ``config.arch`` on the competition; write the run folder; return its validation metrics."""
    competition = load_competition(config.competition)
    if config.epochs < 1 or config.batch_size < 1:
        raise PipelineError("epochs and batch_size must be at least 1")
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    keras.utils.set_random_seed(config.seed)
    binary = dataset.num_classes == 2
    if dataset.num_classes < 2:
        raise PipelineError(f"{competition.split_csv('train')}: only one class; nothing to learn")

    run_dir = Path(run_dir) if run_dir else new_run_dir(config.arch)
    run_dir.mkdir(parents=True, exist_ok=True)
    standardizer = fit_standardizer(dataset.train.images, mode=config.normalization)
    standardizer.save(run_dir / "normalization.npz")
    write_json(run_dir / "config.json", {
        **dataclasses.asdict(config),
        "classes": dataset.classes,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "train_size": len(dataset.train),
        "val_size": len(dataset.val),
    })

    model = build_model(config.arch, dataset.input_shape, dataset.num_classes, dropout_rate=config.dropout_rate)
    model.compile(
        optimizer=make_optimizer(config),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    train_ds = make_tf_dataset(dataset.train.images, dataset.train.labels, standardizer, config.batch_size,
                               shuffle=True, seed=config.seed, binary=binary)
    val_ds = make_tf_dataset(dataset.val.images, dataset.val.labels, standardizer, config.batch_size * 2,
                             binary=binary)
    model_path = run_dir / "model.keras"
    started = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        verbose=config.verbose,
        shuffle=False,  # the tf.data pipeline already shuffles
        callbacks=[
            BestCheckpoint(model_path, monitor="val_accuracy"),
            keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=config.patience,
                                          restore_best_weights=True),
            keras.callbacks.CSVLogger(str(run_dir / "history.csv")),
            *callbacks,
        ],
    ).history
    train_seconds = time.perf_counter() - started

    best = keras.models.load_model(model_path)
    probs = predict_probabilities(best, dataset.val.images, standardizer)
    val = scores(dataset.val.labels, probs)
    metrics = {
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "val_log_loss": val["log_loss"],
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": int(np.argmax(history["val_accuracy"])) + 1 if history.get("val_accuracy") else None,
        "train_seconds": round(train_seconds, 1),
    }
    plots.learning_curves(history, run_dir / "learning_curves.png")
    plots.confusion_matrix(dataset.val.labels, probs.argmax(axis=1), dataset.classes, run_dir / "confusion_matrix.png")
    write_json(run_dir / "metrics.json", metrics)
    write_text(latest_run_file(competition.slug), f"{run_dir}\n")
    return RunResult(run_dir=run_dir, metrics=metrics, history={k: [float(v) for v in vals] for k, vals in history.items()})


def load_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise PipelineError(f"{run_dir}: not a finished run (no config.json)")
    return json.loads(path.read_text())
