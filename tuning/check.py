"""The final check: before a study recommends anything, its best candidates and the untuned recipe are trained
again at (a stated fraction of) the final run's budget, on the full data and the same hold-out, and the tuned
parameters are handed to ``make train`` only when a candidate wins there. At the whole final budget (the default)
the check's runs are ``make train``'s own runs, kept whole: the winner is the study's finished final model."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import optuna
from optuna.trial import TrialState

from competition import settings
from competition.errors import first_line
from pipelines.config import TrainConfig
from pipelines.train import train
from pipelines.tuned import write_tuned
from tuning.fidelity import CheckOptions, Fidelity
from tuning.objective import MONITOR, recipe


def candidates(study: optuna.Study, top: int) -> list[optuna.trial.FrozenTrial]:
    """The ``top`` finished trials by validation accuracy, other than the untuned recipe, one per recipe (a retried
    trial repeats its original's settings)."""
    seen, out = [], []
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    for trial in sorted(done, key=lambda t: (-t.value, t.number)):
        params = recipe(trial)
        if "start" in trial.user_attrs or params in seen:
            continue
        seen.append(params)
        out.append(trial)
    return out[:top]


def retrain(config: TrainConfig, dataset, run_dir: Path, clock, lean: bool = True) -> dict:
    """One run of the check, its validation figures: lean (a trial's run folder, weights kept in memory) below the
    whole final budget; at it, a whole run folder like ``make train``'s (model, validation predictions, TTA, plots)."""
    keras.backend.clear_session()
    result = train(config, dataset=dataset, run_dir=run_dir, lean=lean, clock=clock)
    return {MONITOR: result.metrics[MONITOR], "val_macro_f1": result.metrics["val_macro_f1"],
            "epochs_run": result.metrics["epochs_run"], "run_dir": str(run_dir)}


def final_check(study: optuna.Study, config: TrainConfig, check: CheckOptions, fidelity: Fidelity, dataset,
                runs_root: Path, clock=time.time) -> dict:
    """Retrain the candidates and the default at the check's budget; return the tuned-settings record (``params``,
    ``beats_default``, ``why`` and the check's figures), also kept in the study's ``check`` user attribute."""
    found = candidates(study, check.top)
    minutes = check.minutes(config.minutes)
    record = {"study": study.study_name, "fidelity": fidelity.identity(), "trial": None, "params": {},
              "beats_default": False, "run": None}
    if not found:
        record["why"] = ("the default stays: no final check was asked for (CHECK=\"top=0\")" if not check.top else
                         "the default stays: no trial other than the untuned recipe finished")
        return _finish(study, record)
    scaled = Fidelity(minutes=minutes, subset=1.0, final_minutes=config.minutes)  # full data; cap, warm-up scaled
    whole = check.keeps_runs  # the runs are make train's: kept whole, the winner needs no rerun
    folder = runs_root / f"check-after-{len(study.trials)}"
    shutil.rmtree(folder, ignore_errors=True)  # an earlier check of the same trials: superseded
    budget = f"{minutes:g} of the final run's {config.minutes:g} minutes" if config.minutes else "the final epochs"
    print(f"tune: final check at {budget}: the untuned recipe and trial(s) "
          f"{', '.join(str(t.number) for t in found)}, on the full data and the same hold-out", flush=True)
    name = f"{config.arch}-{settings.stamp()}"  # run folders named like make train's, for submissions
    default = retrain(scaled.apply(config), dataset, folder / f"{name}-default", clock, lean=not whole)
    print(f"tune: check: untuned recipe {default[MONITOR]:.4f}", flush=True)
    runs = []
    for trial in found:
        candidate = scaled.apply(config.update(**recipe(trial)))
        try:
            run = {"trial": trial.number, "search_value": trial.value, "params": recipe(trial),
                   **retrain(candidate, dataset, folder / f"{name}-trial-{trial.number:04d}", clock,
                             lean=not whole)}
        except Exception as err:  # out of memory at the full size, say: that candidate cannot win
            print(f"tune: check: trial {trial.number} failed: {first_line(err)}", flush=True)
            continue
        print(f"tune: check: trial {trial.number} {run[MONITOR]:.4f} (search {trial.value:.4f})", flush=True)
        runs.append(run)
    if not runs:
        record.update(why="the default stays: every candidate failed in the final check",
                      run=default["run_dir"] if whole else None)
        return _finish(study, record)
    best = max(runs, key=lambda r: r[MONITOR])
    gain = best[MONITOR] - default[MONITOR]
    beats = gain > 0 and gain >= check.margin
    figures = (f"at {budget} on the same hold-out, trial {best['trial']} reached {best[MONITOR]:.4f} and the "
               f"untuned recipe {default[MONITOR]:.4f} ({100 * gain:+.2f} points")
    record.update(trial=best["trial"], params=best["params"], beats_default=beats, **{MONITOR: best[MONITOR]},
                  val_macro_f1=best["val_macro_f1"], run=(best if beats else default)["run_dir"] if whole else None,
                  why=(figures + ")" if beats else "the default stays: " + figures +
                       (f", less than the margin of {100 * check.margin:g} points)" if gain > 0 else ")")),
                  check={"minutes": minutes, "final_minutes": config.minutes, "budget": check.budget, "kept": whole,
                         "margin": check.margin, "default": default, "candidates": runs})
    return _finish(study, record)


def _finish(study: optuna.Study, record: dict) -> dict:
    study.set_user_attr("check", record)
    print(f"tune: {'make train will use trial ' + str(record['trial']) + ': ' if record['beats_default'] else ''}"
          f"{record['why']}", flush=True)
    if record.get("run"):
        which = f"trial {record['trial']}" if record["beats_default"] else "the default"
        print(f"tune: the check's run of {which} is a finished make train run at the final budget: {record['run']}",
              flush=True)
    return record


def write_record(record: dict, slug: str, arch: str) -> Path:
    """The tuned-settings file ``make train`` reads (``pipelines.tuned.tuned_settings``), written atomically."""
    return write_tuned(slug, arch, record)
