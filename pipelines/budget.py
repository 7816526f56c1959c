"""The time budget of a training run: a Keras callback that fits the number of training steps to ``MINUTES=``."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from competition.fileio import write_json


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
    # each step's share of a full step's pixels at each fraction of the plan (progressive resizing); None: all alike
    cost: Callable[[np.ndarray], np.ndarray] | None = None
    # the share of a full step's time that does not shrink with the image: 0.2 measured for the cnn at 32 of 64
    # pixels on 2 cores; fitting it per run from its epochs was tried and made the plan swing (new sizes retrace)
    overhead: float = 0.25


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
        self.margin, self.verbose, self.clock, self.cost = budget.margin, verbose, clock, budget.cost
        self.overhead = budget.overhead
        self.units: list[float] = []  # with a cost: seconds of a full step, measured in each epoch
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
            if self.cost is not None:
                unit = step / float(self.step_cost(np.array([batch / self.planned_steps]))[0])
                self.apply(self.steps_that_fit_by_cost(batch + 1, unit, 0.1 * unit * self.steps_per_epoch),
                           f"{step * 1000:.0f} ms a step at the first size")
                return
            validation = step * self.steps_per_epoch * 0.1  # re-measured at the end of the epoch
            per_epoch = step * self.steps_per_epoch + validation
            left_after = self.left() - step * (self.steps_per_epoch - batch - 1)  # once this epoch's steps ran
            if left_after < validation:  # not even this epoch and its validation fit: it stops part-way
                self.apply(self.steps_that_fit(batch + 1, per_epoch, validation),
                           f"{step * 1000:.0f} ms a step; the first epoch does not fit")
                return
            whole = int(left_after // per_epoch)
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
        validation = getattr(self, "test_seconds", 0.0)
        fits, cost = self.plan_by_cost(epoch, done, validation) if self.cost is not None else \
            self.plan_by_epochs(done, validation)
        if fits != self.planned_steps:
            direction = "up" if fits > self.planned_steps else "down"
            self.apply(fits, f"re-planned {direction}: {cost}")
        else:
            self.save()
        if done >= self.planned_steps:
            self.model.stop_training = True

    def plan_by_epochs(self, done: int, validation: float) -> tuple[int, str]:
        """The steps that fit by the recent epochs' cost (the first epoch carries tracing: plan from its measured
        steps, and once later epochs exist, from them), and that cost in words."""
        recent = self.epoch_seconds[1:][-3:]
        if recent:
            per_epoch = float(np.mean(recent))
        else:
            per_epoch = self.epoch_seconds[0]
            if hasattr(self, "step_seconds"):
                per_epoch = min(per_epoch, self.step_seconds * self.steps_per_epoch + validation)
        fits = self.steps_that_fit(done, max(per_epoch, 1e-9), min(validation, per_epoch))
        return fits, f"epochs take {per_epoch:.1f} s"

    def step_cost(self, fractions: np.ndarray) -> np.ndarray:
        """What a step costs at each fraction of the plan against a full step: a fixed part (``overhead``) plus
        the rest in proportion to its pixels (a 32x32 step of a 64x64 cnn took 0.4 of a full step here, not 0.25)."""
        return self.overhead + (1.0 - self.overhead) * self.cost(fractions)

    def plan_by_cost(self, epoch: int, done: int, validation: float) -> tuple[int, str]:
        """The steps that fit by the cost of a full step, measured in the recent epochs (each epoch's training time
        over the relative cost of its steps), when steps cost what their size does; and that cost in words."""
        steps = np.arange(epoch * self.steps_per_epoch, min(done, self.planned_steps))
        spent = max(self.epoch_seconds[-1] - validation, 1e-9)
        self.units.append(spent / max(float(self.step_cost(steps / self.planned_steps).sum()), 1e-9))
        recent = self.units[1:][-3:]  # the first epoch carries tracing
        unit = float(np.mean(recent)) if recent else self.units[0]
        if not recent and hasattr(self, "step_seconds"):
            unit = min(unit, self.step_seconds / float(self.step_cost(np.array([0.0]))[0]))
        fits = self.steps_that_fit_by_cost(done, unit, min(validation, self.epoch_seconds[-1]))
        return fits, f"a full-size step takes {unit * 1000:.0f} ms"

    def steps_that_fit_by_cost(self, done: int, unit: float, validation: float) -> int:
        """The longest plan whose steps from ``done`` on (each ``unit`` seconds times its cost at its fraction of the
        plan) and validations fit in what is left; by bisection, since what a plan needs grows with its length."""
        left = max(self.left(), 0.0)

        def need(total: int) -> float:
            epochs = -(-total // self.steps_per_epoch) - done // self.steps_per_epoch
            return unit * float(self.step_cost(np.arange(done, total) / total).sum()) + validation * epochs

        low, high = done, self.max_steps
        if need(high) <= left:
            return high
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if need(middle) <= left else (low, middle)
        return low
