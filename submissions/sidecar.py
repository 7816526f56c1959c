"""The JSON sidecar beside each submission file: what made it, its validation scores, and every upload of it.

The one module that reads or writes sidecars; ``x.csv``, ``x.csv.gz`` and ``x.zip`` share ``x.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from competition.errors import PipelineError
from competition.fileio import write_json
from pipelines import runs as run_folders

COMPRESSED = (".gz", ".zip")  # Kaggle takes these; a sidecar belongs to the CSV inside


def sidecar_path(path: Path) -> Path:
    """The JSON beside a submission: ``x.json`` for ``x.csv``, and for ``x.csv.gz`` or ``x.zip`` made from it."""
    path = Path(path)
    if path.suffix.lower() in COMPRESSED:
        path = path.with_suffix("")
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict:
    """A submission's sidecar, ``{}`` when it has none; an unreadable one is a one-line error."""
    side = sidecar_path(path)
    if not side.exists():
        return {}
    try:
        info = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{side}: unreadable sidecar ({err}); delete it or write the submission again") from None
    if not isinstance(info, dict):
        raise PipelineError(f"{side}: not a submission sidecar; delete it or write the submission again")
    return info


def try_read_sidecar(path: Path) -> dict:
    """``read_sidecar``, with ``{}`` for an unreadable one (for listings and defaults that must not fail)."""
    try:
        return read_sidecar(path)
    except PipelineError:
        return {}


def is_uploaded(path: Path) -> bool:
    """Whether Kaggle has scored this file (an unreadable sidecar counts as uploaded: never overwrite it)."""
    try:
        return bool(read_sidecar(path).get("uploads"))
    except PipelineError:
        return True


def describe_runs(runs: list) -> list[dict]:
    """Each run's name, folder, model, settings and validation scores, for a sidecar."""
    out = []
    for run in map(Path, runs):
        try:
            config = run_folders.read_config(run)
        except PipelineError:
            config = {}
        metrics = run_folders.read_metrics(run) or {}
        out.append({"run": run.name, "path": str(run), "model": config.get("arch"),
                    "settings": {k: v for k, v in config.items() if k != "classes"},
                    "scores": {k: v for k, v in metrics.items() if k.startswith("val_")}})
    return out


def write_sidecar(path: Path, slug: str, details: dict | None, rows: int | None) -> Path:
    """Write the sidecar of a new submission: file, competition, time, runs with their model, settings and mean
    validation scores, and ``details`` (which may override the scores' ``val_accuracy``)."""
    details = dict(details or {})
    runs = describe_runs(details.get("runs", []))
    scores = {}
    for key in sorted({k for r in runs for k in r["scores"]}):
        values = [r["scores"][key] for r in runs if isinstance(r["scores"].get(key), (int, float))]
        if values:
            scores[key] = sum(values) / len(values)
    if details.get("val_accuracy") is not None:
        scores["val_accuracy"] = details["val_accuracy"]
    return write_json(sidecar_path(path), {
        **details, "competition": slug, "file": Path(path).name, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": "+".join(sorted({str(r["model"]) for r in runs})) if runs else details.get("model"),
        "run": runs[0]["run"] if len(runs) == 1 else details.get("run", Path(path).stem),
        "run_details": runs, "scores": scores, "rows": rows})


def upload_message(path: Path) -> str:
    """The default upload description: the file's name and the validation accuracy its sidecar records."""
    val = (try_read_sidecar(path).get("scores") or {}).get("val_accuracy")
    return sidecar_path(path).stem + (f" val_accuracy={val:.4f}" if val is not None else "")


def run_classes(path: Path) -> list | None:
    """The label values of the first of the file's runs that still has its config, or None."""
    for run in try_read_sidecar(path).get("runs", []):
        try:
            return run_folders.read_config(Path(run)).get("classes")
        except PipelineError:
            continue
    return None


def record_upload(path: Path, slug: str, message: str, submitted) -> None:
    """Note an accepted upload (Kaggle's ``submitted.message`` and ``.ref``) in the file's sidecar; the submission
    itself is never touched. A ``.csv.gz`` or ``.zip`` shares the sidecar of the CSV it was made from, so that CSV
    counts as uploaded too."""
    try:
        info = read_sidecar(path) or {"competition": slug, "file": Path(path).name}
    except PipelineError:
        return  # never overwrite what we cannot read
    info.setdefault("uploads", []).append({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "competition": slug,
                                           "file": Path(path).name, "message": message,
                                           "kaggle": submitted.message, "ref": submitted.ref})
    write_json(sidecar_path(path), info)
