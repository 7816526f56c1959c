"""Progressive resizing (fastai's, FFCV's): training starts on smaller images and grows them to the full size over
the first share of the planned steps, so the early epochs cost less and the budget holds more of them.

The size follows the plan as a fraction of its steps (like the learning-rate schedule), in whole multiples of 8
pixels; the time budget is told what each step costs at its size (``SizeSchedule.relative_cost``), so it plans the
steps that fit. Validation, the saved model and prediction all see the full size.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from pipelines.models import SMALLEST_SIDE

MULTIPLE = 8  # pixels: sizes step in these, so a run traces a handful of shapes rather than one per step


@dataclass(frozen=True)
class SizeSchedule:
    """Image size by fraction of the planned steps: ``start`` of ``full`` at 0, growing linearly to ``full`` at
    ``share`` (rounded to ``MULTIPLE`` pixels, at least ``smallest``, at most the full size), full after it."""

    full: tuple[int, int]
    share: float
    start: float = 0.5
    smallest: int = MULTIPLE

    def sides_at(self, fractions) -> tuple[np.ndarray, np.ndarray]:
        """Height and width at each fraction of the plan."""
        grown = np.clip(np.asarray(fractions, dtype=np.float64) / max(self.share, 1e-9), 0.0, 1.0)
        scale = self.start + (1.0 - self.start) * grown
        return tuple(np.clip(np.round(side * scale / MULTIPLE) * MULTIPLE, min(self.smallest, side), side).astype(int)
                     for side in self.full)

    def size_at(self, fraction: float) -> tuple[int, int]:
        height, width = self.sides_at(fraction)
        return int(height), int(width)

    def relative_cost(self, fractions) -> np.ndarray:
        """What a step costs at each fraction of the plan, against a full-size step: its share of the pixels."""
        height, width = self.sides_at(np.atleast_1d(fractions))
        return height * width / (self.full[0] * self.full[1])


def size_schedule(config, input_shape) -> SizeSchedule | None:
    """The size schedule a training config asks for (``progressive=``, ``progressive_scale=``); None when off or
    when the smallest size would be the full one."""
    if not config.progressive:
        return None
    schedule = SizeSchedule(tuple(input_shape[:2]), config.progressive, config.progressive_scale,
                            SMALLEST_SIDE.get(config.arch, MULTIPLE))
    return schedule if schedule.size_at(0.0) != schedule.full else None


def size_variable(schedule: SizeSchedule) -> tf.Variable:
    """The variable the input pipeline reads the current size from, at the schedule's first size."""
    return tf.Variable(schedule.size_at(0.0), dtype=tf.int32, trainable=False, name="image_size")


def resize_batch(size: tf.Variable, full: tuple[int, int]):
    """A ``tf.data`` map step: a standardized batch resized (bilinear, antialiased) to the size ``size`` holds now;
    left as it is at the full size."""
    full_size = tf.constant(full, tf.int32)

    def resize(images, labels):
        current = size.read_value()
        images = tf.cond(tf.reduce_all(tf.equal(current, full_size)), lambda: images,
                         lambda: tf.image.resize(images, current, antialias=True))
        return images, labels

    return resize


class ProgressiveResize(keras.callbacks.Callback):
    """Sets the training images' size before each step from ``schedule`` and the plan's length (``planned()``
    steps: the time budget's, which it may change). The size changes between batches already prefetched, so a
    change takes effect a few steps late; the plan does not need it exact."""

    def __init__(self, schedule: SizeSchedule, size: tf.Variable, steps_per_epoch: int, planned: Callable[[], int],
                 verbose: int = 1):
        super().__init__()
        self.schedule, self.size, self.steps_per_epoch, self.planned = schedule, size, steps_per_epoch, planned
        self.current = tuple(int(v) for v in size.numpy())
        self.sizes_used: list[tuple[int, int]] = [self.current]
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        if self.verbose:
            (h, w), (full_h, full_w) = self.current, self.schedule.full
            print(f"progressive resizing: {h}x{w} growing to {full_h}x{full_w} over the first "
                  f"{self.schedule.share:.0%} of the planned steps", flush=True)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch
        wanted = self.schedule.size_at(step / max(self.planned(), 1))
        if wanted != self.current:
            self.size.assign(wanted)
            self.current = wanted
            self.sizes_used.append(wanted)
