"""Training: ``train(config) -> RunResult``, the one function the CLI, the tests and Optuna call."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support

from competition import settings
from competition.config import load_competition
from competition.errors import PipelineError
from competition.fileio import atomic_path, write_json, write_text
from pipelines import plots
from pipelines.data import Dataset, load_dataset
from pipelines.models import build_model
from pipelines.normalize import Standardizer, fit_standardizer

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("cosine", "onecycle", "constant")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")

# Augmentation presets; a setting given on its own (e.g. rotation=15) wins over the preset's value.
AUGMENT_PRESETS = {
    "none": dict(flip="none", rotation=0.0, zoom=0.0, brightness=0.0, translation=0.0),
    "standard": dict(flip="horizontal", rotation=0.0, zoom=0.0, brightness=0.0, translation=0.1),
    "pets": dict(flip="horizontal", rotation=10.0, zoom=0.1, brightness=0.3, translation=0.0),
}


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as the run's ``config.json``.

    The defaults are a general recipe, not fitted to one competition: batch norm and global pooling,
    AdamW with decoupled weight decay, warmup then cosine decay, label smoothing, flips and small shifts,
    mixed precision where the hardware has it, and a time budget (``minutes``) that sets the number of
    epochs from the measured speed of the first steps so the schedule completes in time.
    """

    competition: str = settings.DEFAULT_COMPETITION
    arch: str = settings.DEFAULT_ARCH
    epochs: int = 60  # the most epochs; the time budget may plan fewer
    minutes: float = 18.0  # time budget for fitting; 0 = none, run all epochs
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 2e-3  # the peak, reached after warmup
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.05
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout_rate: float = 0.3
    batchnorm: bool = True
    global_pool: bool = True
    weights: str = ""  # pretrained weights file (mobilenetv2)
    augment: str = "standard"  # a preset of AUGMENT_PRESETS
    augment_strength: float = 1.0  # scales rotation, zoom, brightness and translation
    flip: str | None = None
    rotation: float | None = None  # degrees
    zoom: float | None = None  # fraction
    brightness: float | None = None  # fraction of the value range, +-
    translation: float | None = None  # fraction of the size
    mixup: float = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha); 0 = off
    precision: str = "auto"
    normalization: str = "pixel"
    patience: int = 10
    seed: int = settings.SEED
    verbose: int = 1

    def update(self, **changes) -> "TrainConfig":
        """A copy with ``changes``; unknown names are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise PipelineError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def augmentation(self) -> dict:
        """The effective augmentation: the preset, overridden by settings given on their own, scaled."""
        if self.augment not in AUGMENT_PRESETS:
            raise PipelineError(f"unknown augment preset '{self.augment}'; choose one of {', '.join(AUGMENT_PRESETS)}")
        out = dict(AUGMENT_PRESETS[self.augment])
        for name in out:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if out["flip"] not in FLIPS:
            raise PipelineError(f"unknown flip '{out['flip']}'; choose one of {', '.join(FLIPS)}")
        for name in ("rotation", "zoom", "brightness", "translation"):
            out[name] = float(out[name]) * self.augment_strength
        return {**out, "mixup": self.mixup, "cutmix": self.cutmix}


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


def comparable(config: dict) -> dict:
    """The settings that decide what a run computes (``verbose`` does not)."""
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"verbose"}
    return {k: v for k, v in config.items() if k in names}


def unfinished_run(config: TrainConfig) -> Path | None:
    """The newest run folder of the same settings that was stopped before it finished, to resume it.

    A run is unfinished while it has ``backup/`` (BackupAndRestore's state) and no ``metrics.json``, which
    is written last. Rerunning the same command therefore continues a killed run from its last finished
    epoch; changing any setting starts a new run.
    """
    root = settings.runs_dir()
    if not root.is_dir():
        return None
    wanted = comparable(dataclasses.asdict(config))
    for path in sorted(root.glob(f"{config.arch}-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        if (path / "backup").is_dir() and not (path / "metrics.json").exists() and (path / "config.json").exists():
            try:
                saved = json.loads((path / "config.json").read_text())
            except json.JSONDecodeError:
                continue
            if comparable(saved) == wanted:
                return path
    return None


def latest_run_file(slug: str) -> Path:
    return settings.runs_dir() / f"latest-{slug}.txt"


def latest_run(slug: str) -> Path:
    """The newest finished run for a competition."""
    pointer = latest_run_file(slug)
    if not pointer.exists():
        raise PipelineError(f"no finished run for {slug}; run `make train COMPETITION={slug}` first")
    return Path(pointer.read_text().strip())


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def resolve_precision(setting: str = "auto") -> str:
    """``auto``: mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX or AVX-512 BF16, else float32."""
    if setting not in PRECISIONS:
        raise PipelineError(f"unknown precision '{setting}'; choose one of {', '.join(PRECISIONS)}")
    if setting != "auto":
        return setting
    if tf.config.list_physical_devices("GPU"):
        return "mixed_float16"
    return "mixed_bfloat16" if {"amx_bf16", "avx512_bf16"} & cpu_flags() else "float32"


@keras.saving.register_keras_serializable(package="kip")
class WarmupSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate by step: ``cosine`` (linear warmup, cosine decay to 0), ``onecycle`` (cosine up from
    peak/25 over the first 25%, then cosine down to peak/1e4) or ``constant`` (after warmup).

    ``total_steps`` is a variable so the time budget can set it once the first steps have been timed.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0, kind: str = "cosine"):
        if kind not in SCHEDULES:
            raise PipelineError(f"unknown schedule '{kind}'; choose one of {', '.join(SCHEDULES)}")
        self.peak, self.kind, self.warmup_steps = float(peak), kind, float(warmup_steps)
        self.total_steps = tf.Variable(float(max(total_steps, 1)), trainable=False, dtype=tf.float32)

    def set_total_steps(self, steps: int) -> None:
        self.total_steps.assign(float(max(steps, 1)))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        total = self.total_steps
        pi = tf.constant(math.pi)
        if self.kind == "onecycle":
            up = tf.maximum(0.25 * total, 1.0)
            low, end = self.peak / 25.0, self.peak / 1e4
            rising = low + (self.peak - low) * 0.5 * (1 - tf.cos(pi * tf.minimum(step / up, 1.0)))
            down = tf.clip_by_value((step - up) / tf.maximum(total - up, 1.0), 0.0, 1.0)
            falling = end + (self.peak - end) * 0.5 * (1 + tf.cos(pi * down))
            return tf.where(step < up, rising, falling)
        warm = tf.minimum(tf.constant(self.warmup_steps), 0.3 * total)
        warming = self.peak * (step + 1.0) / tf.maximum(warm, 1.0)
        if self.kind == "constant":
            decayed = tf.constant(self.peak)
        else:
            progress = tf.clip_by_value((step - warm) / tf.maximum(total - warm, 1.0), 0.0, 1.0)
            decayed = self.peak * 0.5 * (1 + tf.cos(pi * progress))
        return tf.where(step < warm, warming, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": int(self.total_steps.numpy()),
                "warmup_steps": int(self.warmup_steps), "kind": self.kind}


def make_optimizer(config: TrainConfig, learning_rate=None):
    """The optimizer by name, with weight decay (not on batch-norm parameters or biases)."""
    name = config.optimizer.lower()
    lr = config.learning_rate if learning_rate is None else learning_rate
    decay = config.weight_decay or None
    if name == "adam":
        optimizer = keras.optimizers.Adam(lr, weight_decay=decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=bool(config.nesterov),
                                         weight_decay=decay)
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, momentum=config.momentum if config.momentum < 0.5 else 0.0,
                                             weight_decay=decay)
    else:
        raise PipelineError(f"unknown optimizer '{config.optimizer}'; choose one of {', '.join(OPTIMIZERS)}")
    if decay:
        optimizer.exclude_from_weight_decay(var_names=["_bn", "bias", "beta", "gamma"])
    return optimizer


def make_augmenter(config: TrainConfig, seed: int = 0):
    """Keras preprocessing layers for a batch of float images in 0..255 (and one-hot labels), or None."""
    aug = config.augmentation()
    pipeline = []
    if aug["flip"] != "none":
        pipeline.append(keras.layers.RandomFlip(aug["flip"], seed=seed, dtype="float32"))
    if aug["rotation"]:
        pipeline.append(keras.layers.RandomRotation(aug["rotation"] / 360.0, fill_mode="reflect", seed=seed + 1,
                                                    dtype="float32"))
    if aug["zoom"]:
        pipeline.append(keras.layers.RandomZoom(aug["zoom"], fill_mode="reflect", seed=seed + 2, dtype="float32"))
    if aug["translation"]:
        pipeline.append(keras.layers.RandomTranslation(aug["translation"], aug["translation"], fill_mode="reflect",
                                                       seed=seed + 3, dtype="float32"))
    if aug["brightness"]:
        pipeline.append(keras.layers.RandomBrightness(aug["brightness"], value_range=(0, 255), seed=seed + 4,
                                                      dtype="float32"))
    mixers = []
    if aug["mixup"]:
        mixers.append(keras.layers.MixUp(alpha=aug["mixup"], seed=seed + 5, dtype="float32"))
    if aug["cutmix"]:
        mixers.append(keras.layers.CutMix(factor=aug["cutmix"], seed=seed + 6, dtype="float32"))
    if not pipeline and not mixers:
        return None
    geometric = keras.Sequential(pipeline, name="augment") if pipeline else None

    def augment(images, labels):
        if geometric is not None:
            images = geometric(images, training=True)
        if mixers:
            def mix(layer):
                out = layer({"images": images, "labels": labels}, training=True)
                return out["images"], out["labels"]
            if len(mixers) == 1:
                images, labels = mix(mixers[0])
            else:  # mixup or cutmix, one of them per batch
                images, labels = tf.cond(tf.random.uniform([], seed=seed) < 0.5,
                                         lambda: mix(mixers[0]), lambda: mix(mixers[1]))
        return images, labels

    return augment


def make_tf_dataset(images, labels, standardizer: Standardizer, batch_size: int, shuffle: bool = False,
                    seed: int = 0, binary: bool = False, num_classes: int | None = None, augment=None,
                    drop_remainder: bool = False):
    """uint8 arrays -> shuffled, batched, augmented, standardized, prefetched ``tf.data.Dataset``.

    With ``num_classes`` the labels are one-hot (what label smoothing, mixup and cutmix need); two classes
    give one float label column for the sigmoid unit. Augmentation runs on whole batches in 0..255, before
    the standardization, in parallel with training.
    """
    mean = tf.constant(standardizer.mean, tf.float32)
    scale = tf.constant(standardizer.scale, tf.float32)
    normalize = lambda x: (tf.cast(x, tf.float32) - mean) / scale  # noqa: E731
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(images)
        return ds.batch(batch_size).map(normalize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    if binary:
        labels = labels.astype(np.float32).reshape(-1, 1)
    elif num_classes:
        labels = np.eye(num_classes, dtype=np.float32)[labels]
    else:
        labels = labels.astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder and len(images) >= batch_size)

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        if augment is not None:
            x, y = augment(x, y)
        return (x - mean) / scale, y

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def predict_probabilities(model, images, standardizer: Standardizer, batch_size: int = 256,
                          tta: bool = False) -> np.ndarray:
    """Class probabilities (N, num_classes), also for a one-unit sigmoid model; ``tta`` averages in the
    horizontally flipped images."""
    def run(batch_images):
        ds = make_tf_dataset(batch_images, None, standardizer, batch_size)
        return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)

    probs = run(images)
    if tta:
        probs = (probs + run(np.ascontiguousarray(images[:, :, ::-1]))) / 2
    if probs.shape[-1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    return probs


def scores(labels: np.ndarray, probs: np.ndarray, classes: list | None = None) -> dict:
    """Accuracy, macro F1, log loss and per-class precision/recall/F1 with scikit-learn."""
    probs = np.clip(probs, 1e-7, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    ids = np.arange(probs.shape[1])
    precision, recall, f1, support = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    names = [str(c) for c in (classes if classes is not None else ids)]
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=ids, average="macro", zero_division=0)),
        "log_loss": float(log_loss(labels, probs, labels=ids)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(names, precision, recall, f1, support)},
    }


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever ``monitor`` improves, atomically, so a kill never leaves a broken file."""

    def __init__(self, path: Path, monitor: str = "val_accuracy", best: float = -math.inf):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = value
            with atomic_path(self.path) as tmp:
                self.model.save(tmp)


class BestWeights(keras.callbacks.Callback):
    """Keep a copy of the weights whenever ``monitor`` improves, in memory (for tuning trials: no file per epoch)."""

    def __init__(self, monitor: str = "val_accuracy"):
        super().__init__()
        self.monitor, self.best, self.weights = monitor, -math.inf, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best, self.weights = value, self.model.get_weights()


class TimeBudget(keras.callbacks.Callback):
    """Fit the number of epochs to a time budget from the measured speed of the first training steps.

    It times steps ``warmup_steps`` .. ``warmup_steps + measure_steps`` of the first epoch, adds the
    measured cost of validation, plans the epochs that fit in the budget (at most the configured
    number), and shortens the learning-rate schedule to match, so the schedule completes rather than
    being cut off. After the first epoch it re-plans with the real epoch time; later, if epochs slow down
    (a shared machine), it shortens the plan and the schedule with it. The plan is saved in ``plan.json``
    so a resumed run keeps it.
    """

    def __init__(self, seconds: float, schedule: WarmupSchedule | None, steps_per_epoch: int, max_epochs: int,
                 plan_path: Path, progbar=None, warmup_steps: int = 3, measure_steps: int = 10,
                 margin: float = 0.97, verbose: int = 1):
        super().__init__()
        self.seconds, self.schedule, self.steps_per_epoch = seconds, schedule, steps_per_epoch
        self.max_epochs, self.plan_path, self.progbar = max_epochs, Path(plan_path), progbar
        self.warmup_steps = min(warmup_steps, max(steps_per_epoch - 2, 0))
        self.measure_steps = max(1, min(measure_steps, steps_per_epoch - self.warmup_steps - 1))
        self.margin, self.verbose = margin, verbose
        self.planned = max_epochs
        self.resumed = self.plan_path.exists()
        if self.resumed:
            self.planned = json.loads(self.plan_path.read_text())["epochs"]
        self.first_epoch = None
        self.replanned = False
        self.epoch_times: list[float] = []

    def apply(self, epochs: int, why: str) -> None:
        self.planned = int(min(max(epochs, 1), self.max_epochs))
        if self.schedule is not None:
            self.schedule.set_total_steps(self.planned * self.steps_per_epoch)
        if self.progbar is not None:
            self.progbar.epochs = self.planned
        write_json(self.plan_path, {"epochs": self.planned, "budget_seconds": self.seconds, "why": why})
        if self.verbose:
            print(f"\ntime budget: {self.seconds / 60:.1f} min -> {self.planned} epochs ({why})")

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        if self.resumed:
            self.apply(self.planned, "resumed with the saved plan")

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch
        self.epoch_started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.resumed or self.replanned or self.first_epoch is None:
            return
        if batch == self.warmup_steps:
            self.t0 = time.perf_counter()
        elif batch == self.warmup_steps + self.measure_steps and hasattr(self, "t0"):
            step = (time.perf_counter() - self.t0) / self.measure_steps
            self.step_seconds = step
            # the rest of this epoch, plus later epochs at the measured speed; validation is added later
            left = self.seconds * self.margin - (time.perf_counter() - self.started)
            this_epoch = step * (self.steps_per_epoch - batch - 1)
            per_epoch = step * self.steps_per_epoch * 1.1  # validation and checkpoint, re-measured after epoch 1
            self.apply(1 + int(max(left - this_epoch, 0) // per_epoch), f"{step * 1000:.0f} ms a step")

    def on_test_begin(self, logs=None):
        self.val_started = time.perf_counter()

    def on_test_end(self, logs=None):
        self.val_seconds = time.perf_counter() - self.val_started

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        epoch_seconds = now - self.epoch_started
        left = self.seconds * self.margin - (now - self.started)
        if not self.resumed and not self.replanned and epoch == self.first_epoch:
            self.replanned = True
            # the first epoch carries tracing; later ones take the measured steps plus validation
            steady = epoch_seconds
            if hasattr(self, "step_seconds"):
                steady = min(epoch_seconds, self.step_seconds * self.steps_per_epoch
                             + getattr(self, "val_seconds", 0.0) + 0.02 * epoch_seconds)
            self.apply(epoch + 1 + int(max(left, 0) // steady), f"{epoch_seconds:.0f} s for the first epoch")
        elif epoch + 1 < self.planned:
            # a shared machine slows down: shorten the plan (and so the schedule) rather than cut it off
            self.epoch_times.append(epoch_seconds)
            recent = float(np.mean(self.epoch_times[-3:]))
            fits = epoch + 1 + int(max(left, 0) // recent)
            if fits < self.planned:
                self.apply(fits, f"re-planned: epochs now take {recent:.0f} s")
        if epoch + 1 >= self.planned:
            self.model.stop_training = True


def build_for_training(config: TrainConfig, input_shape, num_classes: int, steps_per_epoch: int,
                       precision: str | None = None):
    """The model built under ``precision`` and compiled with the config's optimizer, schedule and loss.

    Returns ``(model, schedule)``. The mixed-precision policy is set only while the layers are built, so
    nothing else in the process changes.
    """
    precision = precision or resolve_precision(config.precision)
    binary = num_classes == 2
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        model = build_model(config.arch, input_shape, num_classes, dropout_rate=config.dropout_rate,
                            batchnorm=config.batchnorm, global_pool=config.global_pool, weights=config.weights)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    schedule = None
    if config.schedule != "constant" or config.warmup_epochs:
        schedule = WarmupSchedule(config.learning_rate, config.epochs * steps_per_epoch,
                                  warmup_steps=int(config.warmup_epochs * steps_per_epoch), kind=config.schedule)
    if config.label_smoothing < 0 or config.label_smoothing >= 1:
        raise PipelineError(f"label_smoothing {config.label_smoothing} must be in [0, 1)")
    loss = (keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing) if binary
            else keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing))
    model.compile(optimizer=make_optimizer(config, schedule), loss=loss, metrics=["accuracy"])
    return model, schedule


def read_history(path: Path) -> dict:
    """Per-epoch history from the run's CSV log (it spans a resumed run's sessions)."""
    if not path.exists() or path.stat().st_size == 0:
        return {}
    frame = pd.read_csv(path).drop_duplicates("epoch", keep="last")
    return {c: frame[c].astype(float).tolist() for c in frame.columns if c != "epoch"}


def train(config: TrainConfig, dataset: Dataset | None = None, callbacks: list | tuple = (),
          run_dir: Path | None = None, lean: bool = False) -> RunResult:
    """Train ``config.arch`` on the competition; write the run folder; return its validation metrics.

    A run that was killed resumes from its last finished epoch when the same settings are trained again
    (see ``unfinished_run``), or when ``run_dir`` names it. ``lean`` is for tuning trials, where a killed
    trial is retried from scratch and only the numbers matter: no resumable backup, TensorBoard log or
    plots, and the best weights are kept in memory and saved once at the end rather than at every
    improvement.
    """
    competition = load_competition(config.competition)
    if config.epochs < 1 or config.batch_size < 1:
        raise PipelineError("epochs and batch_size must be at least 1")
    config.augmentation()  # checks the augmentation settings before any work
    precision = resolve_precision(config.precision)
    if dataset is None:
        dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    binary = dataset.num_classes == 2
    if dataset.num_classes < 2:
        raise PipelineError(f"{competition.split_csv('train')}: only one class; nothing to learn")

    resumed = run_dir is None and not lean and unfinished_run(config)
    run_dir = Path(resumed or run_dir or new_run_dir(config.arch))
    run_dir.mkdir(parents=True, exist_ok=True)
    if resumed and config.verbose:
        print(f"train: resuming the unfinished run {run_dir}")
    standardizer = fit_standardizer(dataset.train.images, mode=config.normalization)
    standardizer.save(run_dir / "normalization.npz")
    write_json(run_dir / "config.json", {
        **dataclasses.asdict(config),
        "classes": dataset.classes,
        "input_shape": list(dataset.input_shape),
        "num_classes": dataset.num_classes,
        "train_size": len(dataset.train),
        "val_size": len(dataset.val),
        "precision_used": precision,
    })

    keras.utils.set_random_seed(config.seed)
    drop = len(dataset.train) >= config.batch_size
    steps_per_epoch = len(dataset.train) // config.batch_size if drop else 1
    model, schedule = build_for_training(config, dataset.input_shape, dataset.num_classes, steps_per_epoch, precision)
    one_hot = None if binary else dataset.num_classes
    train_ds = make_tf_dataset(dataset.train.images, dataset.train.labels, standardizer, config.batch_size,
                               shuffle=True, seed=config.seed, binary=binary, num_classes=one_hot,
                               augment=make_augmenter(config, seed=config.seed), drop_remainder=True)
    val_ds = make_tf_dataset(dataset.val.images, dataset.val.labels, standardizer, config.batch_size * 2,
                             binary=binary, num_classes=one_hot)

    model_path, history_path = run_dir / "model.keras", run_dir / "history.csv"
    monitor = "val_accuracy"
    before = read_history(history_path).get(monitor, [])
    progbar = keras.callbacks.ProgbarLogger() if config.verbose else None
    budget = None
    if config.minutes and config.minutes > 0:
        budget = TimeBudget(config.minutes * 60, schedule, steps_per_epoch, config.epochs, run_dir / "plan.json",
                            progbar=progbar, verbose=config.verbose)
    if lean:
        best_weights = BestWeights(monitor)
        keeping = [best_weights]
    else:
        keeping = [
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
            BestCheckpoint(model_path, monitor=monitor,
                           best=max(before) if before and model_path.exists() else -math.inf),
            keras.callbacks.TensorBoard(str(run_dir / "logs"), write_graph=False, profile_batch=0),
        ]
    run_callbacks = [
        *([budget] if budget else []),
        *keeping,
        keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience),
        keras.callbacks.CSVLogger(str(history_path), append=True),
        *([progbar] if progbar else []),
        *callbacks,
    ]
    started = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, verbose=config.verbose, shuffle=False,
              callbacks=run_callbacks)
    train_seconds = time.perf_counter() - started
    if lean and best_weights.weights is not None:
        model.set_weights(best_weights.weights)
        with atomic_path(model_path) as tmp:
            model.save(tmp)
    if not model_path.exists():
        raise PipelineError(f"{run_dir}: no epoch finished with a {monitor}; nothing to evaluate")

    best = model if lean else keras.models.load_model(model_path, compile=False)
    probs = predict_probabilities(best, dataset.val.images, standardizer)
    val = scores(dataset.val.labels, probs, dataset.classes)
    history = read_history(history_path)
    metrics = {
        "val_accuracy": val["accuracy"],
        "val_macro_f1": val["macro_f1"],
        "val_log_loss": val["log_loss"],
        "epochs_run": len(history.get("loss", [])),
        "best_epoch": int(np.argmax(history[monitor])) + 1 if history.get(monitor) else None,
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
        write_text(latest_run_file(competition.slug), f"{run_dir}\n")
    return RunResult(run_dir=run_dir, metrics=metrics, history=history)


def load_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise PipelineError(f"{run_dir}: not a finished run (no config.json)")
    return json.loads(path.read_text())
