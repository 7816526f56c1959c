"""Pseudo-labels: test images a finished run, CV or blend predicts confidently, added to a new run's training set
with the predicted labels. Only test images are ever added, so no validation or out-of-fold image is labelled by a
model that saw it."""
from __future__ import annotations

import numpy as np

from competition.errors import PipelineError
from pipelines.data import Dataset, SplitData
from pipelines.members import read_member, test_probabilities


def with_pseudo_labels(dataset: Dataset, source: str, threshold: float) -> tuple[Dataset, dict]:
    """``dataset`` with the test images whose top probability under ``source`` is at least ``threshold`` added to
    its train split; and what was added (count per class)."""
    member = read_member(source)
    if member.classes != dataset.classes:
        raise PipelineError(f"{source}: its classes differ from this competition's; pseudo-label with a run of the "
                            f"same competition")
    if dataset.test is None:
        raise PipelineError(f"{source}: the competition has no test split to pseudo-label")
    found = test_probabilities(member, progress=False)
    probabilities = found.get(member.tta)
    position = {image_id: i for i, image_id in enumerate(found.ids)}
    missing = [i for i in dataset.test.ids if i not in position]
    if missing:
        raise PipelineError(f"{source}: no test prediction for '{missing[0]}' (and {len(missing) - 1} more); "
                            f"pseudo-label with a run of the current test split")
    rows = probabilities[[position[i] for i in dataset.test.ids]]
    chosen = np.flatnonzero(rows.max(axis=1) >= threshold)
    labels = rows[chosen].argmax(axis=1)
    train = SplitData(dataset.train.ids + [dataset.test.ids[i] for i in chosen],
                      np.concatenate([dataset.train.images, dataset.test.images[chosen]]),
                      np.concatenate([dataset.train.labels, labels]))
    counts = np.bincount(labels, minlength=len(dataset.classes))
    added = {"source": str(source), "threshold": threshold, "added": int(len(chosen)),
             "per_class": {str(c): int(n) for c, n in zip(dataset.classes, counts)}}
    return Dataset(train, dataset.val, dataset.test, dataset.classes, dataset.holdout), added
