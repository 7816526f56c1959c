"""From finished runs to a checked submission file, and the demo chain: the functions ``kip predict`` and ``kip
demo`` wrap."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from competition.registry import load_competition
from pipelines.config import TrainConfig
from pipelines.members import read_member
from pipelines.predict import predict, save_probabilities
from pipelines.prepare import PreparedData, prepare_data
from pipelines.runs import run_summary
from pipelines.train import RunResult, train
from submissions.format import expected_format, parse_header
from submissions.writer import prediction_name, score_submission, submission_path, write_submission

SCORED_BY = {"run": "validation split", "cv": "out-of-fold (CV)", "blend": "out-of-fold (blend)",
             "refit": "source's score (estimate)"}


@dataclass
class Submission:
    """A written submission: the CSV, the probabilities beside it, its rows, the runs' mean validation accuracy."""

    path: Path
    probabilities: Path
    rows: int
    val_accuracy: float | None


def submission_from_runs(runs: list[Path], tta: str | None = None, header: str | list | None = None) -> Submission:
    """Predict the test split with ``runs`` (their probabilities averaged, each with the TTA it chose on validation
    unless ``tta`` names one) and write the submission in the competition's format, named after what made it."""
    header = parse_header(header, "--submission-header")
    members = [read_member(run) for run in runs]
    competition = load_competition(members[0].competition)
    if header:
        competition = competition.replace(submission_header=header)
    expected_format(competition)  # a header at odds with the sample, or no test split, fails before the models run
    prediction = predict(runs, tta=tta)
    known = [m.score for m in members if m.score is not None]
    val = sum(known) / len(known) if known else None
    details = {"runs": [str(r) for r in runs], "val_accuracy": val,
               "scored_by": sorted({SCORED_BY[m.kind] for m in members}),
               "tta": {m.name: tta or m.tta for m in members}}
    if any(m.kind == "refit" for m in members):
        details["note"] = "a refit has no validation score of its own; val_accuracy is its source's, as an estimate"
    path = write_submission(competition, prediction.ids, prediction.labels,
                            submission_path(prediction_name(runs, tta), val), details=details)
    probabilities = save_probabilities(prediction, path.with_suffix(".npz"))
    return Submission(path, probabilities, len(prediction.ids), val)


def has_test_split(member_path: Path) -> bool:
    return load_competition(read_member(member_path).competition).has_split("test")


def refit_submission(source: Path) -> tuple[RunResult, Submission | None]:
    """Refit ``source`` on every labelled image, then write its submission (named ``-refit``) when there is a test
    split; the sidecar's score is the source's, as an estimate."""
    from pipelines.refit import refit  # TensorFlow

    result = refit(source)
    return result, submission_from_runs([result.run_dir]) if has_test_split(result.run_dir) else None


def blend_submission(paths: list[Path]):
    """Blend the members by their out-of-fold (or shared validation) predictions, then write the submission."""
    from pipelines.blend import blend  # TensorFlow

    result = blend(paths)
    return result, submission_from_runs([result.blend_dir]) if has_test_split(result.blend_dir) else None


@dataclass
class DemoResult:
    prepared: PreparedData
    run: RunResult
    submission: Submission
    test_scores: dict


def run_demo(config: TrainConfig, force: bool = False, on_stage=lambda line: None) -> DemoResult:
    """Data -> train -> predict -> score on the embedded demo (its test labels are known locally); ``on_stage``
    gets a line after each stage."""
    prepared = prepare_data(config.competition, force=force)
    for line in prepared.summary():
        on_stage(line)
    result = train(config)
    on_stage(f"train: {result.run_dir}  val_accuracy={result.metrics['val_accuracy']:.4f}  "
             f"({run_summary(result.metrics)})")
    submission = submission_from_runs([result.run_dir])
    on_stage(f"predict: {submission.rows} rows -> {submission.path}")
    return DemoResult(prepared, result, submission, score_submission(prepared.competition, submission.path))
