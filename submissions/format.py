"""What a submission must look like (header, ids in order, label values), and reading submission files.

Shared by the writer and the checker. The sample submission, when its file exists, is the format for every layout;
without one: ``test.csv``'s ids under ``image_column,label_column`` (CSV layout) or the test folder's file names
under ``id,label`` (class folders), either header replaced by ``submission_header`` (config or ``kip predict
--submission-header``).
"""
from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from competition.config import Competition
from competition.errors import PipelineError, first_line
from competition.layout import subfolders
from pipelines.data import list_split

# Kaggle's usual generic header (dogs-vs-cats-redux, many playground image competitions); class folders name no column
FOLDER_HEADER = ["id", "label"]
ID_NAMES = ("id", "image_id", "imageid", "image", "img", "filename", "file_name", "file", "name")
READ_AS = {".gz": "gzip-compressed UTF-8 CSV", ".zip": "zip of one UTF-8 CSV"}  # Kaggle takes both


@dataclass(frozen=True)
class SubmissionFormat:
    """What Kaggle expects: the header, the id column, and the ids in order, read from ``source``."""

    header: list[str]
    id_column: str
    label_column: str
    ids: list[str]
    source: Path


def sample_path(competition: Competition) -> Path | None:
    """The competition's sample submission file, when it names one that exists."""
    if not competition.sample_submission:
        return None
    path = competition.raw_dir / competition.sample_submission
    return path if path.is_file() else None


def parse_header(text: str | list | None, where: str) -> list[str] | None:
    """``"id,label"`` or ``["id", "label"]`` -> ``["id", "label"]``: two distinct column names; None when unset."""
    if text is None or text == "" or text == []:
        return None
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else text
    if (not isinstance(names, list) or len(names) != 2 or not all(isinstance(n, str) and n for n in names)
            or names[0] == names[1]):
        raise PipelineError(f"{where}: submission header {text!r} is not two distinct column names, the id column "
                            f"then the label column; use for example id,label")
    return list(names)


def expected_format(competition: Competition) -> SubmissionFormat:
    """The sample submission's header and ids (in its order); without one, the test split's ids (see the module)."""
    header = parse_header(competition.submission_header, f"{competition.slug}: submission_header")
    sample = sample_path(competition)
    if sample is not None:
        return _sample_format(competition, sample, header)
    if "test" not in competition.splits or competition.splits["test"].csv is None:
        return _folder_format(competition, header or FOLDER_HEADER)
    source = competition.split_path("test")
    if not source.exists():
        raise PipelineError(f"{source}: missing; run `make data COMPETITION={competition.slug}` first")
    found, rows = read_rows(source)
    if competition.image_column not in found:
        raise PipelineError(f"{source}: no column {competition.image_column}; set image_column in the config")
    index = found.index(competition.image_column)
    header = header or [competition.image_column, competition.label_column]
    return SubmissionFormat(header, header[0], header[1], [row[index] for _, row in rows if row], source)


def _sample_format(competition: Competition, sample: Path, wanted: list[str] | None) -> SubmissionFormat:
    header, rows = read_rows(sample)
    if len(header) != 2:
        raise PipelineError(
            f"{sample}: {len(header)} columns ({','.join(header)}); only id,label submissions are supported")
    if wanted is not None and wanted != header:
        raise PipelineError(f"{sample}: header '{','.join(header)}' differs from the submission header "
                            f"'{','.join(wanted)}' asked for; the sample submission is the format: drop "
                            f"SUBMISSION_HEADER / submission_header")
    id_index = _id_index(header, competition)
    ids = [row[id_index] for _, row in rows if row]
    return SubmissionFormat(header, header[id_index], header[1 - id_index], ids, sample)


def _folder_format(competition: Competition, header: list[str]) -> SubmissionFormat:
    """Class-folder test split: its files as ``list_split`` lists them (``a.png``, or ``<class>/a.png``)."""
    files = list_split(competition, "test", labelled=False)
    return SubmissionFormat(header, header[0], header[1], [str(i) for i in files.ids], files.source)


def _id_index(header: list[str], competition: Competition) -> int:
    """Which of the sample's two columns holds the ids: the config's image column, else the one that is not the
    label column, else one named like an id, else the first."""
    if competition.image_column in header:
        return header.index(competition.image_column)
    if competition.label_column in header:
        return 1 - header.index(competition.label_column)
    named = [i for i, column in enumerate(header) if column.strip().lower() in ID_NAMES]
    return named[0] if named else 0


def read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` rows of a CSV, ``.csv.gz`` or ``.zip`` holding one CSV, as raw text
    (no type guessing: ids stay '007'). csv rather than pandas: line numbers and ragged rows are kept for messages."""
    path = Path(path)
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error, OSError, EOFError, zipfile.BadZipFile) as err:
        kind = READ_AS.get(path.suffix.lower(), "UTF-8 CSV")
        raise PipelineError(f"{path}: cannot be read as {kind} ({first_line(err)})") from None
    if header is None:
        raise PipelineError(f"{path}: empty file")
    return header, rows


def _open_text(path: Path):
    """A text handle on the CSV in ``path``, uncompressing ``.gz`` and ``.zip`` (Kaggle accepts both)."""
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if path.suffix.lower() == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/") and not m.startswith("__MACOSX/")]
            if len(members) != 1:
                raise PipelineError(f"{path}: holds {len(members)} files; a zipped submission holds exactly one CSV")
            return io.StringIO(archive.read(members[0]).decode("utf-8-sig"))  # a submission is a few MB at most
    return open(path, newline="", encoding="utf-8-sig")


def allowed_labels(competition: Competition, classes: list | None = None) -> set[str] | None:
    """The competition's label values as text: train (and val) CSV labels or class folder names, else ``classes``
    (a run's). None when neither is known, so the labels cannot be checked."""
    found: set[str] = set()
    for split in ("train", "val"):
        if not competition.has_split(split):
            continue
        if competition.splits[split].csv is None:
            found.update(_folder_labels(competition.split_source(split).images))
            continue
        header, rows = read_rows(competition.split_path(split))
        if competition.label_column in header:
            index = header.index(competition.label_column)
            found.update(row[index] for _, row in rows if len(row) > index and row[index] != "")
    if found:
        return found
    return {as_text(c) for c in classes} if classes else None


def _folder_labels(folder: Path) -> set[str]:
    """Class folder names as a run writes them: numbers when every name is one ('07' -> 7), as ``list_split``."""
    names = [p.name for p in subfolders(folder)]
    if names and all(re.fullmatch(r"-?\d+", n) for n in names):
        return {str(int(n)) for n in names}
    return set(names)


def as_text(label) -> str:
    """A label as pandas writes it into the CSV (1 -> '1', 'cat' -> 'cat')."""
    return pd.Series([label]).to_csv(index=False, header=False).strip().strip('"')
