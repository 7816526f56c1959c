"""Check a submission file against the competition before anything is uploaded: one line per refusal."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from competition.config import Competition
from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines import runs as run_folders
from submissions.format import allowed_labels, expected_format, read_rows, sample_path
from submissions.sidecar import run_classes, try_read_sidecar


@dataclass
class CheckReport:
    """A file that passed: its rows, and whether its labels could be checked against the competition's set."""

    path: Path
    rows: int
    labels_checked: bool
    distinct_labels: int

    def summary(self) -> str:
        labels = (f"{self.distinct_labels} distinct labels, all the competition's" if self.labels_checked
                  else f"{self.distinct_labels} distinct labels (not checked: no train labels or run classes known)")
        return f"{self.path}: OK, {self.rows} rows, {labels}"


def competition_of(path: Path, default: str) -> Competition:
    """The competition a submission file belongs to: its sidecar's, else ``default``; without a sample submission,
    with the header the file was written with (``--submission-header``)."""
    info = try_read_sidecar(path)
    competition = load_competition(info.get("competition", default))
    header = info.get("submission_header")
    if header and sample_path(competition) is None:
        competition = competition.replace(submission_header=header)
    return competition


def check_submission(competition: Competition, path: Path, classes: list | None = None,
                     name: Path | None = None) -> CheckReport:
    """Refuse (PipelineError naming the row) a wrong header, missing/extra/duplicated ids, unknown labels, no rows.

    ``path`` may be a CSV, a ``.csv.gz`` or a ``.zip`` holding one CSV (Kaggle takes all three).
    ``classes`` (a run's label values) is used for the label set when the competition's CSVs have no labels (folder
    layouts); by default they are read from the file's sidecar JSON or the competition's newest run. ``name`` is the
    path to show in messages (the writer checks a temporary file).
    """
    path = Path(path)
    shown = name or path
    if not path.is_file():
        raise PipelineError(f"{shown}: no such submission file")
    if path.stat().st_size == 0:
        raise PipelineError(f"{shown}: empty file (0 bytes); write it again with `make predict`")
    fmt = expected_format(competition)
    header, rows = read_rows(path)
    header_text = ",".join(header)
    if header != fmt.header:
        origin = (f"as in {fmt.source.name}" if fmt.source == sample_path(competition)
                  else "no sample submission; submission_header in the config sets another")
        raise PipelineError(f"{shown}: row 1: header is '{header_text}', expected '{','.join(fmt.header)}' ({origin})")
    rows = [(line, row) for line, row in rows if row]  # csv gives [] for a blank line; Kaggle ignores those
    if not rows:
        raise PipelineError(f"{shown}: no rows after the header; {fmt.source.name} lists {len(fmt.ids)} ids")
    id_index, label_index = header.index(fmt.id_column), header.index(fmt.label_column)
    labels = allowed_labels(competition, classes if classes is not None else _known_classes(competition, path))
    expected = set(fmt.ids)
    seen: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise PipelineError(f"{shown}: row {line}: {len(row)} fields, expected {len(header)} ({header_text})")
        ident, label = row[id_index], row[label_index]
        if ident == "":
            raise PipelineError(f"{shown}: row {line}: empty id")
        if ident in seen:
            raise PipelineError(f"{shown}: row {line}: id '{ident}' appears twice (first on row {seen[ident]})")
        seen[ident] = line
        if ident not in expected:
            raise PipelineError(f"{shown}: row {line}: id '{ident}' is not in the test set ({fmt.source.name})")
        if label == "":
            raise PipelineError(f"{shown}: row {line}: empty label for id '{ident}'")
        if labels is not None and label not in labels:
            raise PipelineError(f"{shown}: row {line}: label '{label}' is not one of the competition's "
                                f"{len(labels)} labels ({_examples(labels)})")
    missing = [i for i in fmt.ids if i not in seen]
    if missing:
        raise PipelineError(f"{shown}: id '{missing[0]}' (and {len(missing) - 1} more) from {fmt.source.name} is "
                            f"missing: {len(rows)} rows, {len(fmt.ids)} expected")
    distinct = len({row[label_index] for _, row in rows})
    return CheckReport(path=shown, rows=len(rows), labels_checked=labels is not None, distinct_labels=distinct)


def _examples(labels: set[str], count: int = 5) -> str:
    def key(value: str):
        try:
            return (0, float(value), value)
        except ValueError:
            return (1, 0.0, value)

    shown = sorted(labels, key=key)[:count]
    return "e.g. " + ", ".join(f"'{v}'" for v in shown) + (", ..." if len(labels) > count else "")


def _known_classes(competition: Competition, path: Path) -> list | None:
    """A run's classes for this file: from its sidecar's runs, else the competition's newest run."""
    found = run_classes(path)
    if found is not None:
        return found
    try:
        return run_folders.read_config(run_folders.latest_run(competition.slug)).get("classes")
    except PipelineError:
        return None
