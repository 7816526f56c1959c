"""``make blend``: weights for several runs, CVs or blends, chosen on their out-of-fold (or shared validation)
predictions by greedy ensemble selection with replacement (Caruana et al., 2004), never on the test set.

``runs/blend-<time>/`` holds ``config.json`` (kind ``blend``, the members), ``metrics.json`` (the weights, each
member's score and the blend's) and the blended ``oof_predictions.npz`` and ``test_predictions.npz``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition.errors import PipelineError
from competition.fileio import write_json
from pipelines.members import Member, check_members, read_member, test_probabilities, validation_probabilities
from pipelines.metrics import scores
from pipelines.probabilities import Probabilities, write_probabilities
from pipelines.runs import new_folder

CHOICE = "blend"  # the one "TTA choice" of a blend's predictions: each member's own TTA went into it


@dataclass
class BlendResult:
    blend_dir: Path
    metrics: dict


def greedy_selection(probabilities: list[np.ndarray], labels: np.ndarray, rounds: int = 25) -> np.ndarray:
    """How many times each member is picked: each round adds (with replacement) the member that makes the running
    average most accurate (ties: the lower log loss); the best round's picks are kept."""
    counts, total = np.zeros(len(probabilities), dtype=np.int64), np.zeros_like(probabilities[0])
    best_counts, best_key = counts.copy(), (-1.0, 0.0)
    for _ in range(rounds):
        keys = []
        for candidate in probabilities:
            mean = (total + candidate) / (counts.sum() + 1)
            accuracy = float(np.mean(mean.argmax(axis=1) == labels))
            loss = float(-np.mean(np.log(np.clip(mean[np.arange(len(labels)), labels], 1e-7, 1))))
            keys.append((accuracy, -loss))
        pick = int(max(range(len(keys)), key=keys.__getitem__))
        counts[pick] += 1
        total = total + probabilities[pick]
        if keys[pick] > best_key:
            best_key, best_counts = keys[pick], counts.copy()
    return best_counts


def aligned(members: list[Member]) -> tuple[list[str], np.ndarray, list[np.ndarray]]:
    """The members' validation probabilities on the same ids, in the first member's order."""
    first = validation_probabilities(members[0])
    out = [first.get(members[0].tta)]
    for member in members[1:]:
        found = validation_probabilities(member)
        if set(found.ids) != set(first.ids):
            raise PipelineError(f"{member.path} was scored on other images than {members[0].path}; blend members "
                                f"of one CV's folds (FOLDS_FROM=) or of one validation split")
        position = {image_id: i for i, image_id in enumerate(found.ids)}
        out.append(found.get(member.tta)[[position[i] for i in first.ids]])
    return first.ids, first.labels, out


def blend(paths: list, rounds: int = 25) -> BlendResult:
    """Blend the members at ``paths``; write the blend folder; return its scores."""
    if len(paths) < 2:
        raise PipelineError(f"blend: {len(paths)} member given; give RUNS=\"a b ...\" with two or more")
    members = [read_member(p) for p in paths]
    check_members(members)
    ids, labels, probabilities = aligned(members)
    weights = greedy_selection(probabilities, labels, rounds) / 1.0
    weights /= weights.sum()
    oof = sum(w * p for w, p in zip(weights, probabilities))
    found = scores(labels, oof, members[0].classes)
    member_scores = {m.name: float(np.mean(p.argmax(axis=1) == labels)) for m, p in zip(members, probabilities)}
    tests = [(w, test_probabilities(m)) for w, m in zip(weights, members) if w > 0]
    if any(set(t.ids) != set(tests[0][1].ids) for _, t in tests):
        raise PipelineError("blend: the members predicted other test images; predict them on the current test split")
    order = tests[0][1].ids

    def rows(found: Probabilities) -> np.ndarray:
        position = {image_id: i for i, image_id in enumerate(found.ids)}
        return next(iter(found.by_tta.values()))[[position[i] for i in order]]

    test = sum(w * rows(t) for w, t in tests)
    blend_dir = new_folder("blend")
    write_probabilities(blend_dir / "oof_predictions.npz", Probabilities(ids, {CHOICE: oof}, labels))
    write_probabilities(blend_dir / "test_predictions.npz", Probabilities(order, {CHOICE: test}))
    write_json(blend_dir / "config.json", {"kind": "blend", "competition": members[0].competition,
                                           "slug": members[0].slug, "classes": members[0].classes,
                                           "members": [str(m.path) for m in members]})
    metrics = {"oof_accuracy": found["accuracy"], "oof_macro_f1": found["macro_f1"], "oof_log_loss": found["log_loss"],
               "tta": CHOICE, "weights": {m.name: float(w) for m, w in zip(members, weights)},
               "member_accuracy": member_scores, "scored_on": len(ids)}
    write_json(blend_dir / "metrics.json", metrics)
    return BlendResult(blend_dir, metrics)
