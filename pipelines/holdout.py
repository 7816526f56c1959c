"""A private hold-out for benchmarks: a competition's labelled test split, or a stratified share of its train split
set aside once, and the accuracy of a run's submission on it. Benchmarks that compare recipes score on images that
no training, tuning or TTA choice has seen."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from competition import settings
from competition.config import Competition
from competition.errors import PipelineError
from competition.fileio import write_text
from competition.registry import load_competition

DEFAULT_HOLDOUT = 0.15


def private_holdout(competition: Competition, fraction: float | None, seed: int) -> Competition:
    """The competition itself when its test split is labelled and no ``fraction`` is asked for; else a copy of it
    whose test split is a stratified ``fraction`` (default 0.15) of its train split (the same image files; its val
    split, if any, kept), written once to ``data/raw/<slug>-private<percent>/``."""
    if fraction is None and competition.test_labels and (competition.raw_dir / competition.test_labels).is_file():
        return competition
    fraction = DEFAULT_HOLDOUT if fraction is None else fraction
    if not 0 < fraction < 1:
        raise PipelineError(f"HOLDOUT={fraction:g}: the private share of train must be between 0 and 1, e.g. 0.15")
    train = competition.split_source("train") if competition.splits else None
    if train is None or train.csv is None or not train.csv.is_file():
        raise PipelineError(f"{competition.slug}: no train CSV to hold images out of and no labelled test split; use a "
                            f"competition whose train split is a CSV, or give its test labels (test_labels = "
                            f"\"<csv>\" in data/raw/<slug>/competition.toml)")
    slug = f"{competition.slug}-private{round(100 * fraction)}"
    raw = settings.raw_dir(slug)
    if not (raw / "competition.toml").exists():
        frame = pd.read_csv(train.csv, dtype={competition.image_column: str})
        try:
            rest, held = train_test_split(frame, test_size=fraction, stratify=frame[competition.label_column],
                                          random_state=seed)
        except ValueError as err:
            raise PipelineError(f"HOLDOUT={fraction:g}: {err}; give another share") from None
        raw.mkdir(parents=True, exist_ok=True)
        rest.to_csv(raw / "train.csv", index=False)
        held[[competition.image_column]].to_csv(raw / "test.csv", index=False)
        held.to_csv(raw / "test_labels.csv", index=False)
        val = competition.split_source("val")
        write_text(raw / "competition.toml", "\n".join([
            f"slug = {json.dumps(slug)}", f"image_column = {json.dumps(competition.image_column)}",
            f"label_column = {json.dumps(competition.label_column)}", f"channels = {competition.channels}",
            *([f"image_size = {list(competition.image_size)}"] if competition.image_size else []),
            f"image_extension = {json.dumps(competition.image_extension)}",
            f"validation_fraction = {competition.validation_fraction}",
            'test_labels = "test_labels.csv"', 'sample_submission = ""',
            "[splits.train]", 'csv = "train.csv"', f"images = {json.dumps(str(train.images))}",
            *(["[splits.val]", f"csv = {json.dumps(str(val.csv))}", f"images = {json.dumps(str(val.images))}"]
              if val is not None and val.csv is not None and val.present else []),
            "[splits.test]", 'csv = "test.csv"', f"images = {json.dumps(str(train.images))}", ""]))
    return load_competition(slug)


def test_labels(competition: Competition, ids) -> np.ndarray:
    """The private labels (as written, strings) of the test images ``ids``, from the competition's test labels."""
    path = competition.raw_dir / competition.test_labels if competition.test_labels else None
    if path is None or not path.is_file():
        raise PipelineError(f"{competition.slug}: no labelled test split to score on; use a private hold-out "
                            f"(test_labels in its competition.toml, as make bench-recipe writes)")
    truth = pd.read_csv(path, dtype=str).set_index(competition.image_column)[competition.label_column]
    labels = truth.reindex([str(i) for i in ids])
    if labels.isna().any():
        raise PipelineError(f"{path}: no label for image {labels.index[labels.isna()][0]!r}; the labels must cover "
                            f"the test split")
    return labels.to_numpy()


def private_accuracy(run_dir: Path, competition: Competition) -> float:
    """Accuracy of a run (with the TTA it chose on validation) on the labelled test split."""
    from pipelines.predict import predict

    prediction = predict([run_dir], progress=False)
    labels = test_labels(competition, prediction.ids)
    return float(np.mean(labels == np.array([str(x) for x in prediction.labels])))
