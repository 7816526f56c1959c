"""Prediction: class probabilities for a split from one run or an average over several."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from competition.config import load_competition
from competition.errors import PipelineError
from competition.fileio import atomic_path
from pipelines.data import load_split
from pipelines.normalize import Standardizer
from pipelines.train import load_config, predict_probabilities


@dataclass
class Prediction:
    """Probabilities (N, num_classes) for ``ids``; ``classes`` maps a column to the competition's label."""

    ids: list[str]
    probabilities: np.ndarray
    classes: list
    runs: list[Path]
    competition: str

    @property
    def labels(self) -> list:
        return [self.classes[i] for i in self.probabilities.argmax(axis=1)]


def predict(runs: list[Path], split: str = "test", progress: bool = True) -> Prediction:
    """Average the probabilities of ``runs`` (all of one competition and class list) on ``split``."""
    if not runs:
        raise PipelineError("no run to predict with; train one first")
    configs = [load_config(run) for run in runs]
    slugs = {c["competition"] for c in configs}
    if len(slugs) > 1 or any(c["classes"] != configs[0]["classes"] for c in configs):
        raise PipelineError(f"runs {', '.join(map(str, runs))} are not of one competition and class list")
    competition = load_competition(configs[0]["competition"])
    ids, images, _ = load_split(competition, split, labelled=False, progress=progress)
    total = None
    for run in runs:
        model_path = Path(run) / "model.keras"
        if not model_path.exists():
            raise PipelineError(f"{model_path}: missing; the run did not finish an epoch")
        model = keras.models.load_model(model_path)
        probs = predict_probabilities(model, images, Standardizer.load(Path(run) / "normalization.npz"))
        total = probs if total is None else total + probs
        keras.backend.clear_session()
    return Prediction(ids=ids, probabilities=total / len(runs), classes=configs[0]["classes"],
                      runs=[Path(r) for r in runs], competition=competition.slug)


def save_probabilities(prediction: Prediction, path: Path) -> Path:
    """Store probabilities and ids as ``.npz`` (no pickle)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, probabilities=prediction.probabilities.astype(np.float32),
                     ids=np.array(prediction.ids, dtype=str))
    return path
