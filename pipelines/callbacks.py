"""Keras callbacks of a training run: the time budget, the atomic best checkpoint, the deadline of a search."""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from competition.fileio import atomic_path, write_json


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


@dataclass(frozen=True)
class Budget:
    """A time budget for fitting: ``seconds`` of which ``margin`` is planned, ``steps_per_epoch``, at most
    ``max_epochs``; the first epoch's steps ``warmup_steps`` .. ``+ measure_steps`` are timed for the first plan."""

    seconds: float
    steps_per_epoch: int
    max_epochs: int
    margin: float = 0.98
    warmup_steps: int = 3
    measure_steps: int = 10


class TimeBudget(keras.callbacks.Callback):
    """Fit the number of training steps to a time budget from the measured speed of training, and keep it fitted.

    It times steps ``warmup_steps`` .. ``warmup_steps + measure_steps`` of the first epoch, plans the steps that
    fit in the budget (at most ``max_epochs`` epochs) and sets the learning-rate schedule's length to match, so the
    schedule completes rather than being cut off. At the end of every epoch it plans again from the recent epochs'
    cost, shorter when epochs slowed down (a shared machine) and longer when they got faster. The plan is in steps,
    not whole epochs: the last epoch stops part-way (its validation still runs), so the budget is spent rather than
    rounded down to an epoch. The plan is saved in ``plan.json`` so a resumed run keeps it. ``clock`` (seconds) is
    injectable so tests need no real time.
    """

    def __init__(self, budget: Budget, schedule, plan_path: Path | None, progbar=None, verbose: int = 1,
                 clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.seconds, self.schedule, self.steps_per_epoch = budget.seconds, schedule, budget.steps_per_epoch
        self.max_steps, self.plan_path, self.progbar = budget.max_epochs * self.steps_per_epoch, plan_path, progbar
        self.warmup_steps = min(budget.warmup_steps, max(self.steps_per_epoch - 2, 0))
        self.measure_steps = max(1, min(budget.measure_steps, self.steps_per_epoch - self.warmup_steps - 1))
        self.margin, self.verbose, self.clock = budget.margin, verbose, clock
        self.planned_steps = self.max_steps
        self.spent_before = 0.0  # budget used by the sessions of a resumed run
        self.resumed = plan_path is not None and Path(plan_path).exists()
        if self.resumed:
            saved = json.loads(Path(plan_path).read_text())
            self.planned_steps = int(saved.get("steps", saved["epochs"] * self.steps_per_epoch))
            self.spent_before = float(saved.get("spent_seconds", 0.0))
        self.epoch_seconds: list[float] = []
        self.why = ""

    @property
    def planned(self) -> int:
        """The planned epochs, the last one possibly partial."""
        return -(-self.planned_steps // self.steps_per_epoch)

    def apply(self, steps: int, why: str) -> None:
        """Set the plan (and the schedule's length); say so when it changes."""
        steps = int(min(max(steps, 1), self.max_steps))
        changed = steps != self.planned_steps or not self.why
        self.planned_steps, self.why = steps, why
        if self.schedule is not None:
            self.schedule.set_total_steps(self.planned_steps)
        if self.progbar is not None:
            self.progbar.epochs = self.planned
        self.save()
        if self.verbose and changed:
            epochs = self.planned_steps / self.steps_per_epoch
            print(f"\ntime budget: {self.seconds / 60:.1f} min -> {epochs:.1f} epochs ({why})", flush=True)

    def save(self) -> None:
        if self.plan_path is not None:
            write_json(self.plan_path, {"epochs": self.planned, "steps": self.planned_steps,
                                        "budget_seconds": self.seconds, "why": self.why,
                                        "spent_seconds": round(self.elapsed(), 2)})

    def elapsed(self) -> float:
        return self.spent_before + self.clock() - self.started

    def left(self) -> float:
        return self.seconds * self.margin - self.elapsed()

    def steps_that_fit(self, done: int, per_epoch: float, validation: float) -> int:
        """``done`` steps plus whole epochs that fit in what is left, plus a partial one (and its validation)."""
        left = max(self.left(), 0.0)
        whole = int(left // per_epoch)
        rest = left - whole * per_epoch - validation
        per_step = max(per_epoch - validation, 1e-9) / self.steps_per_epoch
        return done + whole * self.steps_per_epoch + max(int(rest // per_step), 0)

    def on_train_begin(self, logs=None):
        self.started = self.clock()
        if self.resumed:
            self.apply(self.planned_steps, "resumed with the saved plan")

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_started = epoch, self.clock()
        self.first = not self.epoch_seconds and not self.resumed

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch * self.steps_per_epoch + batch + 1 >= self.planned_steps:
            self.model.stop_training = True  # Keras ends the epoch here; its validation still runs
        if not self.first:
            return
        if batch == self.warmup_steps:
            self.t0 = self.clock()
        elif batch == self.warmup_steps + self.measure_steps and hasattr(self, "t0"):
            step = (self.clock() - self.t0) / self.measure_steps
            self.step_seconds = step
            per_epoch = step * self.steps_per_epoch * 1.1  # validation, re-measured at the end of the epoch
            this_epoch = step * (self.steps_per_epoch - batch - 1)
            left_after = self.left() - this_epoch
            whole = max(int(left_after // per_epoch), 0)
            self.apply(self.steps_per_epoch * (1 + whole), f"{step * 1000:.0f} ms a step")

    def on_test_begin(self, logs=None):
        self.test_started = self.clock()

    def on_test_end(self, logs=None):
        self.test_seconds = self.clock() - self.test_started

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(self.clock() - self.epoch_started)
        done = (epoch + 1) * self.steps_per_epoch
        if done >= self.planned_steps:
            self.model.stop_training = True
            self.save()
            return
        # the first epoch carries tracing: plan from its measured steps, and once later epochs exist, from them
        recent = self.epoch_seconds[1:][-3:]
        validation = getattr(self, "test_seconds", 0.0)
        if recent:
            per_epoch = float(np.mean(recent))
        else:
            per_epoch = self.epoch_seconds[0]
            if hasattr(self, "step_seconds"):
                per_epoch = min(per_epoch, self.step_seconds * self.steps_per_epoch + validation)
        fits = self.steps_that_fit(done, max(per_epoch, 1e-9), min(validation, per_epoch))
        if fits != self.planned_steps:
            direction = "up" if fits > self.planned_steps else "down"
            self.apply(fits, f"re-planned {direction}: epochs take {per_epoch:.1f} s")
        else:
            self.save()
        if done >= self.planned_steps:
            self.model.stop_training = True


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
