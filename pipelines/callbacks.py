"""Keras callbacks of a training run: the atomic best checkpoint, the deadline of a search (the time budget is
``pipelines.budget``)."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import keras

from competition.fileio import atomic_path


class KeepBest(keras.callbacks.Callback):
    """Keep the best epoch's model by ``monitor``: the raw weights, or the optimizer's moving average of them
    (``use_ema``) when those validate better.

    With EMA on, every epoch also scores the averaged weights with ``validate(model) -> accuracy`` and logs it as
    ``<monitor>_ema``. With ``path`` the best model is saved there atomically (a resumable run); without, its
    weights stay in memory (a tuning trial) and ``restore()`` puts them back. Hand-written because Keras's
    ``ModelCheckpoint`` writes the file in place (a run killed while saving leaves a model that cannot be loaded)
    and neither it nor ``EarlyStopping(restore_best_weights=True)`` looks at the averaged weights.
    """

    def __init__(self, monitor: str = "val_accuracy", path: Path | None = None, best: float = -math.inf,
                 validate: Callable | None = None):
        super().__init__()
        self.monitor, self.path, self.best, self.validate = monitor, path, best, validate
        self.weights, self.best_source = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        value = logs.get(self.monitor)
        if value is None:
            return
        raw = None
        if self.validate is not None and getattr(self.model.optimizer, "use_ema", False):
            raw = self.model.get_weights()
            self.model.optimizer.finalize_variable_values(self.model.trainable_weights)  # the averaged weights
            averaged = float(self.validate(self.model))
            logs[f"{self.monitor}_ema"] = averaged
            if averaged > value:
                value = averaged
            else:
                self.model.set_weights(raw)
                raw = None
        if value > self.best:
            self.best, self.best_source = value, "ema" if raw is not None else "raw"
            if self.path is None:
                self.weights = self.model.get_weights()
            else:
                with atomic_path(self.path) as tmp:
                    self.model.save(tmp)
        if raw is not None:
            self.model.set_weights(raw)  # training goes on from the raw weights

    def restore(self) -> None:
        if self.weights is not None:
            self.model.set_weights(self.weights)


class Deadline(keras.callbacks.Callback):
    """Stop at the end of an epoch once ``clock()`` has passed ``deadline`` by raising ``stop``'s exception.

    A search uses it so ``MINUTES=`` ends within about an epoch rather than after the longest trial; ``clock`` is
    injectable so tests need no real time.
    """

    def __init__(self, deadline: float | None, stop: Callable[[str], BaseException],
                 clock: Callable[[], float] = time.time):
        super().__init__()
        self.deadline, self.stop, self.clock = deadline, stop, clock

    def on_epoch_end(self, epoch, logs=None):
        if self.deadline is not None and self.clock() >= self.deadline and epoch + 1 < self.params["epochs"]:
            raise self.stop(f"the tuning budget ran out after epoch {epoch + 1}")
