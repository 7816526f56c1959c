"""Write a submission CSV in exactly the competition's format (``submissions.format``), named after what made it."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from competition import settings
from competition.config import Competition
from competition.errors import PipelineError
from competition.fileio import atomic_path, write_text
from pipelines import runs as run_folders
from submissions.checker import check_submission
from submissions.format import SubmissionFormat, expected_format, sample_path
from submissions.sidecar import is_uploaded, write_sidecar


def prediction_name(runs: list, tta: str | None = None) -> str:
    """What made a prediction: the run's name, or ``ensemble-<n>-<first run>-<hash of the sorted run names>`` (one
    name per member set), then ``-tta-<choice>`` when a TTA other than each run's own was asked for."""
    names = [Path(run).name for run in runs]
    name = names[0]
    if len(names) > 1:
        digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:6]
        name = f"ensemble-{len(names)}-{names[0]}-{digest}"
    return f"{name}-tta-{tta}" if tta else name


def submission_name(run_name: str, val_score: float | None = None) -> str:
    """``cnn-20261122-101500-val0.712``: the run (or ensemble) and its validation score, 3 decimals."""
    return f"{run_name}-val{val_score:.3f}" if val_score is not None else run_name


def submission_path(run_name: str, val_score: float | None = None) -> Path:
    """``submissions/<run>-val<score>.csv``."""
    return settings.submissions_dir() / f"{submission_name(run_name, val_score)}.csv"


def write_submission(competition: Competition, ids: list[str], labels: list, path: Path,
                     details: dict | None = None) -> Path:
    """Write one row per expected id in the expected header and order, atomically, checked, with a JSON sidecar;
    return the path written: ``path``, or ``<stem>-2.csv`` (``-3``, ...) when ``path`` was uploaded already.

    ``labels`` are the competition's own label values (a run's ``classes``), in the order of ``ids``. ``details``
    go into the sidecar; when it names ``runs``, their model, settings and scores are recorded too.
    """
    fmt = expected_format(competition)
    predicted = _match_ids(fmt, [str(i) for i in ids], list(labels))
    classes = _run_classes((details or {}).get("runs", []))
    frame = pd.DataFrame({fmt.id_column: fmt.ids, fmt.label_column: [predicted[i] for i in fmt.ids]})
    frame = frame[fmt.header]
    path = unuploaded_path(Path(path))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
        report = check_submission(competition, tmp, classes=classes, name=path)  # never leave a file Kaggle refuses
    if fmt.source != sample_path(competition):  # check-submission reads it back: nothing else knows this header
        details = {**(details or {}), "submission_header": fmt.header}
    write_sidecar(path, competition.slug, details, report.rows)
    write_text(settings.latest_submission_pointer(competition.slug), f"{path}\n")
    return path


def unuploaded_path(path: Path) -> Path:
    """``path``, else the first of ``<stem>-2<suffix>``, ``-3``, ... not recorded as uploaded: a file Kaggle scored
    is never overwritten (an unreadable sidecar counts as uploaded)."""
    candidate, number = path, 1
    while candidate.exists() and is_uploaded(candidate):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def _match_ids(fmt: SubmissionFormat, ids: list[str], labels: list) -> dict:
    """Prediction per expected id; ids may also match without their file extension ('12.png' -> '12')."""
    predicted = dict(zip(ids, labels))
    missing = [i for i in fmt.ids if i not in predicted]
    if missing:
        by_stem = {Path(i).stem: label for i, label in predicted.items()}
        if len(by_stem) == len(predicted) and all(i in by_stem for i in fmt.ids):
            return by_stem
        raise PipelineError(
            f"no prediction for id '{missing[0]}' (and {len(missing) - 1} more) listed in {fmt.source}; "
            f"predict the whole test split")
    return predicted


def _run_classes(runs: list) -> list | None:
    for run in runs:
        try:
            return run_folders.read_config(Path(run)).get("classes")
        except PipelineError:
            continue
    return None


def newest_submission(slug: str) -> Path:
    """The submission most recently written for ``slug``."""
    pointer = settings.latest_submission_pointer(slug)
    path = Path(pointer.read_text().strip()) if pointer.exists() else None
    if path is None or not path.exists():
        raise PipelineError(f"no submission for {slug} in {settings.submissions_dir()}; run `make predict` first")
    return path


def score_submission(competition: Competition, path: Path) -> dict:
    """Accuracy and macro F1 of a submission against known test labels (the demo has them)."""
    from sklearn.metrics import accuracy_score, f1_score  # here: checking and uploading need no scikit-learn

    if not competition.test_labels:
        raise PipelineError(f"{competition.slug}: test labels are not known locally; Kaggle scores this one")
    truth = pd.read_csv(competition.raw_dir / competition.test_labels, dtype={competition.image_column: str})
    sub = pd.read_csv(path, dtype={competition.image_column: str})
    merged = truth.merge(sub, on=competition.image_column, suffixes=("_true", "_pred"), how="left")
    y_true = merged[f"{competition.label_column}_true"].astype(str)
    y_pred = merged[f"{competition.label_column}_pred"].astype(str)
    return {"test_accuracy": float(accuracy_score(y_true, y_pred)),
            "test_macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))}
