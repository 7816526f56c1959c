"""From finished runs to a checked submission file, and the demo chain: the functions ``kip predict`` and ``kip
demo`` wrap."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from competition.registry import load_competition
from pipelines import runs as run_folders
from pipelines.config import TrainConfig
from pipelines.predict import check_runs, predict, run_tta, save_probabilities
from pipelines.prepare import PreparedData, prepare_data
from pipelines.train import RunResult, train
from submissions.format import expected_format, parse_header
from submissions.writer import prediction_name, score_submission, submission_path, write_submission


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
    competition = load_competition(check_runs(runs)[0]["competition"])
    if header:
        competition = competition.replace(submission_header=header)
    expected_format(competition)  # a header at odds with the sample, or no test split, fails before the models run
    prediction = predict(runs, tta=tta)
    scores = [m["val_accuracy"] for m in map(run_folders.read_metrics, runs) if m and "val_accuracy" in m]
    val = sum(scores) / len(scores) if scores else None
    path = write_submission(competition, prediction.ids, prediction.labels,
                            submission_path(prediction_name(runs, tta), val),
                            details={"runs": [str(r) for r in runs], "val_accuracy": val,
                                     "tta": {Path(r).name: run_tta(r, tta) for r in runs}})
    probabilities = save_probabilities(prediction, path.with_suffix(".npz"))
    return Submission(path, probabilities, len(prediction.ids), val)


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
    on_stage(f"train: {result.run_dir}  val_accuracy={result.metrics['val_accuracy']:.4f}")
    submission = submission_from_runs([result.run_dir])
    on_stage(f"predict: {submission.rows} rows -> {submission.path}")
    return DemoResult(prepared, result, submission, score_submission(prepared.competition, submission.path))
