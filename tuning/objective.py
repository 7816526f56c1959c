"""One trial: sample a recipe, train it at the study's fidelity, report its progress to the pruner."""
from __future__ import annotations

import math
import os
import socket
import time
from pathlib import Path

import keras
import optuna

from competition.errors import first_line
from pipelines.callbacks import Deadline
from pipelines.config import TrainConfig
from pipelines.train import train
from tuning.fidelity import Fidelity
from tuning.space import SearchSpace

MONITOR = "val_accuracy"
GRID = 5  # progress is reported in steps of this many percent of the trial's run


class ReportProgress(keras.callbacks.Callback):
    """Report the validation accuracy to the trial at each ``GRID`` percent of the run done, and stop the trial
    when the pruner says so.

    The run done is the larger of the time budget spent and the epochs run out of the cap: a time-budgeted trial's
    resource is time, so trials are compared at the same share of it whatever their batch size or speed. A step an
    epoch skipped over gets the accuracy known at that point (the previous epoch's), so that the median pruner,
    which compares trials at equal steps, finds them. A trial at the end of its run is never pruned.
    """

    def __init__(self, trial: optuna.Trial, seconds: float, epochs: int, clock=time.time, monitor: str = MONITOR):
        super().__init__()
        self.trial, self.seconds, self.epochs, self.clock, self.monitor = trial, seconds, epochs, clock, monitor

    def on_train_begin(self, logs=None):
        self.started, self.step, self.value = self.clock(), -1, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        done = (epoch + 1) / self.epochs
        if self.seconds > 0:
            done = max(done, (self.clock() - self.started) / self.seconds)
        step = min(100, int(done * 100 + 1e-9) // GRID * GRID)
        if step <= self.step:
            return
        if self.value is not None:
            for skipped in range(self.step + GRID, step, GRID):
                self.trial.report(self.value, skipped)
        self.trial.report(float(value), step)
        self.step, self.value = step, float(value)
        if step < 100 and self.trial.should_prune():  # a trial at its end is kept: pruning it would save nothing
            raise optuna.TrialPruned(f"pruned at {step}% of its run: {self.monitor} {value:.4f}")


def recipe(trial: optuna.trial.FrozenTrial) -> dict:
    """The training settings a trial stands for: what it sampled and what the space held fixed; what ``make
    train`` runs with when its parameters are used."""
    return {**trial.user_attrs.get("fixed", {}), **trial.params}


def make_objective(config: TrainConfig, space: SearchSpace, dataset, trials_dir: Path, fidelity: Fidelity,
                   deadline: float | None = None, clock=time.time):
    """The objective: sample, train at ``fidelity`` on ``dataset`` (already reduced to it) with progress reports to
    the pruner, return validation accuracy.

    A NaN loss (stopped by ``TerminateOnNaN``) or any exception fails the trial with its reason in the trial's
    ``fail_reason`` user attribute; ``study.optimize(catch=...)`` then goes on with the next one. A trial still
    running when the search's ``deadline`` passes is pruned at the end of its epoch. ``clock`` drives the trial's
    time budget, its progress and the deadline.
    """

    def objective(trial: optuna.Trial) -> float:
        params = space.sample(trial)
        trial.set_user_attr("fixed", space.fixed)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        settings = fidelity.apply(config.update(**params))
        keras.backend.clear_session()
        run_dir = trials_dir / f"trial-{trial.number:04d}"
        try:
            result = train(settings, dataset=dataset, run_dir=run_dir, lean=True, clock=clock,
                           callbacks=[ReportProgress(trial, settings.minutes * 60, settings.epochs, clock),
                                      keras.callbacks.TerminateOnNaN(), Deadline(deadline, optuna.TrialPruned, clock)])
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
