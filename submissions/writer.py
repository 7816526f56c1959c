"""Write a submission CSV in exactly the competition's format: the sample submission's header, ids and order."""
from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from competition import settings
from competition.config import Competition
from competition.errors import PipelineError, first_line
from competition.fileio import atomic_path, write_json, write_text


@dataclass(frozen=True)
class SubmissionFormat:
    """What Kaggle expects: the header, the id column, and the ids in order, read from ``source``."""

    header: list[str]
    id_column: str
    label_column: str
    ids: list[str]
    source: Path


def expected_format(competition: Competition) -> SubmissionFormat:
    """The sample submission's header and ids (in its order), else ``test.csv``'s ids with ``Image,Class``."""
    sample = competition.raw_dir / competition.sample_submission if competition.sample_submission else None
    if sample is not None and sample.exists():
        header, rows = _read_rows(sample)
        if len(header) != 2:
            raise PipelineError(
                f"{sample}: {len(header)} columns ({','.join(header)}); only id,label submissions are supported")
        id_index = _id_index(header, competition)
        ids = [row[id_index] for _, row in rows if row]
        return SubmissionFormat(header, header[id_index], header[1 - id_index], ids, sample)
    source = competition.split_csv("test")
    if not source.exists():
        raise PipelineError(f"{source}: missing; run `make data COMPETITION={competition.slug}` first")
    header, rows = _read_rows(source)
    if competition.image_column not in header:
        raise PipelineError(f"{source}: no column {competition.image_column}; set image_column in the config")
    index = header.index(competition.image_column)
    ids = [row[index] for _, row in rows if row]
    return SubmissionFormat([competition.image_column, competition.label_column], competition.image_column,
                            competition.label_column, ids, source)


ID_NAMES = ("id", "image_id", "imageid", "image", "img", "filename", "file_name", "file", "name")


def _id_index(header: list[str], competition: Competition) -> int:
    """Which of the sample's two columns holds the ids: the config's image column, else the one that is not the
    label column, else one named like an id, else the first."""
    if competition.image_column in header:
        return header.index(competition.image_column)
    if competition.label_column in header:
        return 1 - header.index(competition.label_column)
    named = [i for i, column in enumerate(header) if column.strip().lower() in ID_NAMES]
    return named[0] if named else 0


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows of a CSV, as raw text (no type guessing: ids stay '007')."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error) as err:
        raise PipelineError(f"{path}: cannot be read as UTF-8 CSV ({first_line(err)})") from None
    if header is None:
        raise PipelineError(f"{path}: empty file")
    return header, rows


def allowed_labels(competition: Competition, classes: list | None = None) -> set[str] | None:
    """The competition's label values as text: train (and val) CSV labels, else ``classes`` (folder layouts).

    None when neither is known, so the labels cannot be checked.
    """
    found: set[str] = set()
    for split in ("train", "val"):
        if not competition.has_split(split):
            continue
        header, rows = _read_rows(competition.split_csv(split))
        if competition.label_column in header:
            index = header.index(competition.label_column)
            found.update(row[index] for _, row in rows if len(row) > index and row[index] != "")
    if found:
        return found
    return {_as_text(c) for c in classes} if classes else None


def _as_text(label) -> str:
    """A label as pandas writes it into the CSV (1 -> '1', 'cat' -> 'cat')."""
    return pd.Series([label]).to_csv(index=False, header=False).strip().strip('"')


def submission_name(run_name: str, val_score: float | None = None) -> str:
    """``cnn-20261122-101500-val0.712``: the run (or ensemble) and its validation score, 3 decimals."""
    return f"{run_name}-val{val_score:.3f}" if val_score is not None else run_name


def submission_path(run_name: str, val_score: float | None = None) -> Path:
    """``submissions/<run>-val<score>.csv``."""
    return settings.submissions_dir() / f"{submission_name(run_name, val_score)}.csv"


def write_submission(competition: Competition, ids: list[str], labels: list, path: Path,
                     details: dict | None = None) -> Path:
    """Write one row per expected id in the sample's header and order, atomically, checked, with a JSON sidecar.

    ``labels`` are the competition's own label values (a run's ``classes``), in the order of ``ids``. ``details``
    go into the sidecar; when it names ``runs``, their model, settings and scores are recorded too.
    """
    from submissions.checker import check_submission

    fmt = expected_format(competition)
    predicted = _match_ids(fmt, [str(i) for i in ids], list(labels))
    classes = _run_classes(details)
    frame = pd.DataFrame({fmt.id_column: fmt.ids, fmt.label_column: [predicted[i] for i in fmt.ids]})
    frame = frame[fmt.header]
    path = Path(path)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
        report = check_submission(competition, tmp, classes=classes, name=path)  # never leave a file Kaggle refuses
    write_json(path.with_suffix(".json"), sidecar(competition, path, details, report))
    write_text(latest_submission_file(competition.slug), f"{path}\n")
    return path


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


def _run_classes(details: dict | None) -> list | None:
    for run in (details or {}).get("runs", []):
        config = Path(run) / "config.json"
        if config.exists():
            return json.loads(config.read_text()).get("classes")
    return None


def sidecar(competition: Competition, path: Path, details: dict | None, report=None) -> dict:
    """The sidecar JSON: file, competition, time, runs with their model, settings and validation scores."""
    details = dict(details or {})
    runs = []
    for run in details.get("runs", []):
        run = Path(run)
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
        metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
        runs.append({"run": run.name, "path": str(run), "model": config.get("arch"),
                     "settings": {k: v for k, v in config.items() if k not in ("classes",)},
                     "scores": {k: v for k, v in metrics.items() if k.startswith("val_")}})
    scores = {}
    if runs:
        for key in sorted({k for r in runs for k in r["scores"]}):
            values = [r["scores"][key] for r in runs if isinstance(r["scores"].get(key), (int, float))]
            if values:
                scores[key] = sum(values) / len(values)
    if details.get("val_accuracy") is not None:
        scores["val_accuracy"] = details["val_accuracy"]
    return {**details, "competition": competition.slug, "file": path.name,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": "+".join(sorted({str(r["model"]) for r in runs})) if runs else details.get("model"),
            "run": runs[0]["run"] if len(runs) == 1 else details.get("run", path.stem),
            "run_details": runs, "scores": scores,
            "rows": getattr(report, "rows", None)}


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
