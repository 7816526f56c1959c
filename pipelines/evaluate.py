"""A trained model on a labelled split: probabilities under each TTA choice, the choice that validates best, and
its scores."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.inference import TTA_CHOICES, view_probabilities, views_of
from pipelines.metrics import scores
from pipelines.normalize import Standardizer

# after a time-budgeted run, choosing the TTA may take this share of the budget on top of it
EVALUATION_SHARE = 0.1


@dataclass
class Evaluation:
    tta: str  # the choice used for the scores
    accuracy_by_tta: dict[str, float]
    probabilities_by_tta: dict[str, np.ndarray]
    scores: dict  # accuracy, macro F1, log loss, per class, under ``tta``


def tta_probabilities(model, images, standardizer: Standardizer, choices,
                      views: dict[str, tuple] = TTA_CHOICES) -> dict[str, np.ndarray]:
    """Each choice's probabilities (the mean over its ``views``), every view predicted once."""
    by_view = view_probabilities(model, images, standardizer, sorted(views_of(choices, views)))
    return {c: np.mean([by_view[v] for v in views[c]], axis=0) for c in choices}


def best_tta(probabilities_by_tta: dict[str, np.ndarray], labels: np.ndarray,
             views: dict[str, tuple] = TTA_CHOICES) -> tuple[str, dict[str, float]]:
    """The choice with the best accuracy (ties go to the one with fewer ``views``), and every choice's accuracy."""
    accuracy = {c: float(np.mean(p.argmax(axis=1) == labels)) for c, p in probabilities_by_tta.items()}
    return max(accuracy, key=lambda c: (accuracy[c], -len(views[c]))), accuracy


def affordable(choices, view_seconds: float, seconds: float,
               views: dict[str, tuple] = TTA_CHOICES) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(tried, skipped)``: the ``choices`` whose views together take at most ``seconds`` at ``view_seconds`` a
    view, taken cheapest (fewest views) first, the cheapest always; and the others."""
    tried = []
    for choice in sorted(choices, key=lambda c: len(views[c])):
        if not tried or len(views_of((*tried, choice), views)) * view_seconds <= seconds:
            tried.append(choice)
    return tuple(tried), tuple(c for c in choices if c not in tried)


def tta_within_budget(choices, view_seconds: float | None, budget_seconds: float | None) -> tuple[tuple, str]:
    """The ``choices`` whose views fit in ``EVALUATION_SHARE`` of a time budget at ``view_seconds`` a view (all of
    them without a budget or a measured view), and why the others were not tried ('' when all were)."""
    if not budget_seconds or view_seconds is None:
        return tuple(choices), ""
    allowed = EVALUATION_SHARE * budget_seconds
    tried, skipped = affordable(choices, view_seconds, allowed)
    if not skipped:
        return tried, ""
    return tried, (f"TTA {', '.join(skipped)} not tried: its views take more than the {allowed:.0f} s "
                   f"({EVALUATION_SHARE:.0%} of the budget) at {view_seconds:.1f} s a view")


def evaluate(model, images, labels: np.ndarray, standardizer: Standardizer, classes: list,
             choices=tuple(TTA_CHOICES)) -> Evaluation:
    """Score ``model`` on a labelled split under each TTA choice of ``choices`` and keep the one that scores best."""
    probabilities = tta_probabilities(model, images, standardizer, tuple(choices))
    chosen, accuracy = best_tta(probabilities, labels)
    return Evaluation(chosen, accuracy, probabilities, scores(labels, probabilities[chosen], classes))
