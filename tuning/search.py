"""Optuna search over optimizer, learning rate and epochs, stored in SQLite so a rerun resumes."""
from __future__ import annotations

import json
from pathlib import Path

import keras
import optuna
from optuna_integration import KerasPruningCallback

from competition import settings
from competition.config import load_competition
from competition.errors import PipelineError
from competition.fileio import write_json
from pipelines.data import load_dataset
from pipelines.train import TrainConfig, train

SEARCH_SPACE = {
    "optimizer": ["adam", "sgd", "rmsprop"],
    "learning_rate": (1e-4, 3e-2),
    "epochs": (5, 40),
}


def default_storage() -> str:
    path = settings.tuning_dir() / "studies.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def study_name(config: TrainConfig) -> str:
    return f"{config.competition}-{config.arch}"


def best_params_path(slug: str, arch: str) -> Path:
    return settings.tuning_dir() / f"best-{slug}-{arch}.json"


def suggest(trial: optuna.Trial, epochs_range: tuple[int, int]) -> dict:
    """The search space: optimizer, log-scale learning rate, number of epochs."""
    return {
        "optimizer": trial.suggest_categorical("optimizer", SEARCH_SPACE["optimizer"]),
        "learning_rate": trial.suggest_float("learning_rate", *SEARCH_SPACE["learning_rate"], log=True),
        "epochs": trial.suggest_int("epochs", *epochs_range),
    }


def tune(config: TrainConfig, n_trials: int = 10, storage: str | None = None,
         epochs_range: tuple[int, int] = SEARCH_SPACE["epochs"], timeout: float | None = None) -> optuna.Study:
    """Run ``n_trials`` more trials of the study for this competition and arch; write the best parameters."""
    competition = load_competition(config.competition)
    dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)  # once, not per trial
    study = optuna.create_study(
        study_name=study_name(config),
        storage=storage or default_storage(),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    )
    trials_dir = settings.runs_dir() / f"tune-{study.study_name}"

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, epochs_range)
        keras.backend.clear_session()
        result = train(
            config.update(**params),
            dataset=dataset,
            callbacks=[KerasPruningCallback(trial, "val_accuracy")],
            run_dir=trials_dir / f"trial-{trial.number:04d}",
        )
        trial.set_user_attr("run_dir", str(result.run_dir))
        trial.set_user_attr("val_macro_f1", result.metrics["val_macro_f1"])
        return result.metrics["val_accuracy"]

    study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True)
    write_best_params(study, competition.slug, config.arch)
    return study


def write_best_params(study: optuna.Study, slug: str, arch: str) -> Path | None:
    """Write the best trial's parameters atomically; ``make train`` reads them by default."""
    try:
        best = study.best_trial
    except ValueError:
        return None
    return write_json(best_params_path(slug, arch), {
        "study": study.study_name,
        "trial": best.number,
        "val_accuracy": best.value,
        "params": best.params,
    })


def load_best_params(slug: str, arch: str) -> dict | None:
    """The tuned parameters for this competition and arch, if a study wrote them."""
    path = best_params_path(slug, arch)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise PipelineError(f"{path}: not valid JSON; delete it or rerun `make tune`") from None
