"""The training recipe around a model: numeric precision, learning-rate schedule, optimizer, loss, compile."""
from __future__ import annotations

import math
import types
from pathlib import Path

import keras
import tensorflow as tf
from keras import ops

from competition.errors import PipelineError
from pipelines.config import PRECISIONS, SCHEDULES, TrainConfig
from pipelines.models import any_size_input, build_model


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
    """Learning rate by step: ``cosine`` (linear warmup, cosine decay to 0), ``linear`` (linear warmup, linear decay
    to 0), ``onecycle`` (cosine up from peak/25 over the first 25%, then cosine down to peak/1e4) or ``constant``
    (after warmup). Every shape is defined as fractions of ``total_steps``, so it ends exactly where the plan does.

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
        progress = tf.clip_by_value((step - warm) / tf.maximum(total - warm, 1.0), 0.0, 1.0)
        if self.kind == "constant":
            decayed = tf.constant(self.peak)
        elif self.kind == "linear":
            decayed = self.peak * (1.0 - progress)
        else:
            decayed = self.peak * 0.5 * (1 + tf.cos(pi * progress))
        return tf.where(step < warm, warming, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": int(self.total_steps.numpy()),
                "warmup_steps": int(self.warmup_steps), "kind": self.kind}


def make_optimizer(config: TrainConfig, learning_rate=None):
    """The optimizer by name, with decoupled weight decay (not on batch-norm parameters or biases).

    Keras 3 applies ``weight_decay`` the decoupled way (AdamW's) in every optimizer, so ``adam`` with weight decay
    is ``adamw``; both names are accepted. ``momentum`` is used by ``sgd`` and ``rmsprop``.
    """
    name = config.optimizer.lower()
    lr = config.learning_rate if learning_rate is None else learning_rate
    decay = config.weight_decay or None
    ema = {"use_ema": bool(config.ema), "ema_momentum": config.ema or 0.99}
    if name == "adam":
        optimizer = keras.optimizers.Adam(lr, weight_decay=decay, **ema)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(lr, weight_decay=config.weight_decay, **ema)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=bool(config.nesterov),
                                         weight_decay=decay, **ema)
    elif name == "rmsprop":
        optimizer = keras.optimizers.RMSprop(lr, momentum=config.momentum, weight_decay=decay, **ema)
    else:
        raise PipelineError(f"unknown optimizer '{config.optimizer}'; choose one of adam, adamw, sgd, rmsprop")
    if decay:
        optimizer.exclude_from_weight_decay(var_names=["_bn", "bias", "beta", "gamma"])
    if config.ema:
        warm_up_average(optimizer)
    return optimizer


def warm_up_average(optimizer) -> None:
    """Give the optimizer's weight average (``use_ema``) a warm-up: momentum ``min(ema, (1 + t) / (10 + t))`` at step
    ``t``, as ``tf.train.ExponentialMovingAverage(num_updates=...)`` does.

    Keras applies the full momentum from the first step, so at 0.999 the average of a run of a few thousand steps (a
    CPU budget's) still carries much of the random initial weights: on GIC's cnn in 20 minutes it scored at chance
    for 10 epochs and 0.707 against the raw weights' 0.737 at the end. Replaces Keras's (private) update method on
    this one optimizer, so the saved optimizer is still Keras's own class.
    """
    def update(self, trainable_variables):
        step = ops.cast(self.iterations, "float32")
        momentum = ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step))
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                rate = ops.cast(momentum, var.dtype)
                average.assign(rate * average + (1.0 - rate) * var)

    optimizer._update_model_variables_moving_average = types.MethodType(update, optimizer)


def make_loss(config: TrainConfig, binary: bool):
    """Binary cross-entropy for one sigmoid unit, else categorical cross-entropy on one-hot labels (which is what
    label smoothing, mixup and cutmix need), both with the config's label smoothing."""
    if binary:
        return keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing)
    return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)


def build_for_training(config: TrainConfig, input_shape, num_classes: int, steps_per_epoch: int,
                       precision: str | None = None):
    """The model built under ``precision`` and compiled with the config's optimizer, schedule and loss.

    Returns ``(model, schedule)``. The mixed-precision policy is set only while the layers are built, so
    nothing else in the process changes.
    """
    precision = precision or resolve_precision(config.precision)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        shape, options = input_shape, config.model_options()
        if config.progressive:  # the training images change size: the model takes any
            shape, options = any_size_input(config.arch, input_shape, options)
        model = build_model(config.arch, shape, num_classes, **options)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    schedule = None
    if config.schedule != "constant" or config.warmup_epochs:
        schedule = WarmupSchedule(config.learning_rate, config.epochs * steps_per_epoch,
                                  warmup_steps=int(config.warmup_epochs * steps_per_epoch), kind=config.schedule)
    if config.label_smoothing < 0 or config.label_smoothing >= 1:
        raise PipelineError(f"label_smoothing {config.label_smoothing} must be in [0, 1)")
    model.compile(optimizer=make_optimizer(config, schedule), loss=make_loss(config, num_classes == 2),
                  metrics=["accuracy"])
    return model, schedule


def build_training_state(model: keras.Model, element_spec) -> None:
    """Create the optimizer's and the metrics' variables before ``fit``, from the training batches' ``element_spec``.

    Keras (3.15, TensorFlow, no distribution strategy) leaves them to the first traced training step, and a
    ``tf.function`` that creates variables in its first call is traced twice: a second trace of the whole step, about
    2 s of CPU for the cnn on 2 cores in every run. This is the build Keras itself does under a distribution
    strategy (``_symbolic_build``, private: skipped where a Keras version lacks it, which only costs that trace).
    """
    build = getattr(model, "_symbolic_build", None)
    if build is not None:
        build(data_batch=element_spec)
