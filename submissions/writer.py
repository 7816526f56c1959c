"""Write a submission CSV in the order and header of the competition's sample submission."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from competition import settings
from competition.config import Competition
from competition.errors import PipelineError
from competition.fileio import atomic_path, write_json, write_text


def expected_ids(competition: Competition) -> list[str]:
    """Ids in the order Kaggle expects: the sample submission's, else ``test.csv``'s."""
    sample = competition.raw_dir / competition.sample_submission if competition.sample_submission else None
    source = sample if sample is not None and sample.exists() else competition.split_csv("test")
    if not source.exists():
        raise PipelineError(f"{source}: missing; run `make data COMPETITION={competition.slug}` first")
    frame = pd.read_csv(source, dtype={competition.image_column: str})
    if competition.image_column not in frame.columns:
        raise PipelineError(f"{source}: no column {competition.image_column}")
    return frame[competition.image_column].tolist()


def write_submission(competition: Competition, ids: list[str], labels: list, path: Path,
                     details: dict | None = None) -> Path:
    """Write ``Image,Class`` rows for every expected id, atomically, with a JSON sidecar of ``details``."""
    predicted = dict(zip(ids, labels))
    order = expected_ids(competition)
    missing = [i for i in order if i not in predicted]
    if missing:
        raise PipelineError(f"no prediction for image '{missing[0]}' (and {len(missing) - 1} more) expected by the sample submission")
    frame = pd.DataFrame({competition.image_column: order,
                          competition.label_column: [predicted[i] for i in order]})
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    write_json(path.with_suffix(".json"), {"competition": competition.slug, "file": path.name, **(details or {})})
    write_text(latest_submission_file(competition.slug), f"{path}\n")
    return path


def submission_path(run_name: str) -> Path:
    return settings.submissions_dir() / f"{run_name}.csv"


def latest_submission_file(slug: str) -> Path:
    return settings.submissions_dir() / f"latest-{slug}.txt"


def newest_submission(slug: str) -> Path:
    """The submission most recently written for ``slug``."""
    pointer = latest_submission_file(slug)
    path = Path(pointer.read_text().strip()) if pointer.exists() else None
    if path is None or not path.exists():
        raise PipelineError(f"no submission for {slug} in {settings.submissions_dir()}; run `make predict` first")
    return path


def score_submission(competition: Competition, path: Path) -> dict:
    """Accuracy and macro F1 of a submission against known test labels (the demo has them)."""
    from sklearn.metrics import accuracy_score, f1_score

    if not competition.test_labels:
        raise PipelineError(f"{competition.slug}: test labels are not known locally; Kaggle scores this one")
    truth = pd.read_csv(competition.raw_dir / competition.test_labels, dtype={competition.image_column: str})
    sub = pd.read_csv(path, dtype={competition.image_column: str})
    merged = truth.merge(sub, on=competition.image_column, suffixes=("_true", "_pred"), how="left")
    y_true = merged[f"{competition.label_column}_true"].astype(str)
    y_pred = merged[f"{competition.label_column}_pred"].astype(str)
    return {"test_accuracy": float(accuracy_score(y_true, y_pred)),
            "test_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
