"""A trained model on a labelled split: probabilities under each TTA choice, the choice that validates best, and
its scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.inference import TTA_CHOICES, view_probabilities
from pipelines.metrics import scores
from pipelines.normalize import Standardizer


@dataclass
class Evaluation:
    tta: str  # the choice used for the scores
    accuracy_by_tta: dict[str, float]
    probabilities_by_tta: dict[str, np.ndarray]
    scores: dict  # accuracy, macro F1, log loss, per class, under ``tta``


def tta_probabilities(model, images, standardizer: Standardizer, choices,
                      views: dict[str, tuple] = TTA_CHOICES) -> dict[str, np.ndarray]:
    """Each choice's probabilities (the mean over its ``views``), every view predicted once."""
    by_view = view_probabilities(model, images, standardizer, sorted({v for c in choices for v in views[c]}))
    return {c: np.mean([by_view[v] for v in views[c]], axis=0) for c in choices}


def best_tta(probabilities_by_tta: dict[str, np.ndarray], labels: np.ndarray,
             views: dict[str, tuple] = TTA_CHOICES) -> tuple[str, dict[str, float]]:
    """The choice with the best accuracy (ties go to the one with fewer ``views``), and every choice's accuracy."""
    accuracy = {c: float(np.mean(p.argmax(axis=1) == labels)) for c, p in probabilities_by_tta.items()}
    return max(accuracy, key=lambda c: (accuracy[c], -len(views[c]))), accuracy


def evaluate(model, images, labels: np.ndarray, standardizer: Standardizer, classes: list,
             tta: str = "auto") -> Evaluation:
    """Score ``model`` on a labelled split; ``tta="auto"`` tries every choice and keeps the best."""
    choices = tuple(TTA_CHOICES) if tta == "auto" else (tta,)
    probabilities = tta_probabilities(model, images, standardizer, choices)
    chosen, accuracy = best_tta(probabilities, labels)
    return Evaluation(chosen, accuracy, probabilities, scores(labels, probabilities[chosen], classes))
