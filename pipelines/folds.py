"""Every labelled image of a competition in one pool, and its stratified, seeded assignment to k folds.

The assignment is saved as ``folds.csv`` (id, split, label, fold) so that another CV can reuse it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from competition.errors import PipelineError
from competition.fileio import atomic_path
from pipelines.data import Dataset, SplitData


@dataclass
class Pool:
    """All labelled images (train, then val when the competition labels one), the class list and the test split."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray
    splits: list[str]  # where each image came from: train or val
    classes: list
    test: SplitData | None

    def __len__(self) -> int:
        return len(self.ids)

    def part(self, index: np.ndarray) -> SplitData:
        return SplitData([self.ids[i] for i in index], self.images[index], self.labels[index])


def labelled_pool(dataset: Dataset) -> Pool:
    """The dataset's train and validation images together (a hold-out of train is train again)."""
    parts = [(dataset.train, "train"), (dataset.val, "train" if dataset.holdout else "val")]
    return Pool(ids=[i for part, _ in parts for i in part.ids],
                images=np.concatenate([part.images for part, _ in parts]),
                labels=np.concatenate([part.labels for part, _ in parts]),
                splits=[name for part, name in parts for _ in part.ids],
                classes=dataset.classes, test=dataset.test)


def assign_folds(pool: Pool, folds: int, seed: int) -> np.ndarray:
    """The fold (0 .. folds-1) of each image, stratified by class and seeded."""
    if folds < 2:
        raise PipelineError(f"FOLDS={folds}: a cross-validation needs at least 2 folds")
    counts = Counter(pool.labels.tolist())
    fewest, smallest = min(counts.items(), key=lambda item: item[1])
    if smallest < folds:
        raise PipelineError(f"FOLDS={folds}: class {pool.classes[fewest]!r} has only {smallest} labelled image(s); "
                            f"use FOLDS={max(2, smallest)} or fewer")
    fold_of = np.empty(len(pool), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, held) in enumerate(splitter.split(np.zeros(len(pool)), pool.labels)):
        fold_of[held] = fold
    return fold_of


def write_folds(path: Path, pool: Pool, fold_of: np.ndarray) -> Path:
    frame = pd.DataFrame({"id": pool.ids, "split": pool.splits, "label": [pool.classes[i] for i in pool.labels],
                          "fold": fold_of})
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def read_folds(path: Path, pool: Pool) -> np.ndarray:
    """A saved assignment, checked to cover exactly the pool's images."""
    try:
        frame = pd.read_csv(path, dtype={"id": str})
    except FileNotFoundError:
        raise PipelineError(f"{path}: no fold assignment there; give a CV folder made by `make cv`") from None
    if set(frame.id) != set(pool.ids) or len(frame) != len(pool):
        raise PipelineError(f"{path}: its folds cover other images than this competition's {len(pool)} labelled "
                            f"ones; make new folds (leave FOLDS_FROM out)")
    return frame.set_index("id").fold.loc[pool.ids].to_numpy(dtype=np.int64)
