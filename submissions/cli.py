"""``kip predict``, ``check-submission``, ``submit``, ``submissions`` and ``demo``: the submissions package's
subcommands."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition import settings
from competition.errors import PipelineError
from pipelines.cli import add_stage, add_training_arguments, training_config


def resolve_runs(args) -> list[Path]:
    from competition.registry import load_competition
    from pipelines.runs import latest_run

    if args.runs:
        return [Path(r) if Path(r).exists() else settings.runs_dir() / r for r in args.runs]
    return [latest_run(load_competition(args.competition).slug)]


def cmd_predict(args) -> Path | None:
    from submissions.make import submission_from_runs

    runs = resolve_runs(args)
    if args.image:
        from pipelines.predict import top_classes

        print(f"predict: {args.image} with {', '.join(r.name for r in runs)}")
        for rank, (label, p) in enumerate(top_classes(runs, Path(args.image), k=5, tta=args.tta), start=1):
            print(f"  {rank}. {label}  {p:.4f}")
        return None
    made = submission_from_runs(runs, tta=args.tta, header=args.submission_header)
    print(f"predict: {made.rows} rows -> {made.path} (probabilities: {made.probabilities.name})")
    return made.path


def submission_competition(path: Path, default: str):
    """The competition a submission file belongs to: its sidecar's, else ``default``; without a sample submission,
    with the header the file was written with (``--submission-header``)."""
    import json

    from competition.registry import load_competition
    from submissions.format import sample_path, sidecar_path

    sidecar = sidecar_path(path)
    info = {}
    if sidecar.exists():
        try:
            info = json.loads(sidecar.read_text())
        except json.JSONDecodeError:
            pass
    competition = load_competition(info.get("competition", default) if isinstance(info, dict) else default)
    header = info.get("submission_header") if isinstance(info, dict) else None
    if header and sample_path(competition) is None:
        competition = competition.replace(submission_header=header)
    return competition


def cmd_check_submission(args):
    from submissions.checker import check_submission
    from submissions.writer import newest_submission

    path = Path(args.file) if args.file else newest_submission(args.competition)
    report = check_submission(submission_competition(path, args.competition), path)
    print(f"check: {report.summary()}")
    return report


def cmd_submit(args) -> None:
    """Check the file, upload it with the kaggle client, then list the competition's recent submissions."""
    import json

    from submissions import upload
    from submissions.format import sidecar_path
    from submissions.writer import newest_submission

    path = Path(args.file) if args.file else newest_submission(args.competition)
    competition = submission_competition(path, args.competition)
    cmd_check_submission(argparse.Namespace(file=str(path), competition=competition.slug))
    scores = {}
    if sidecar_path(path).exists():
        scores = json.loads(sidecar_path(path).read_text()).get("scores") or {}
    val = scores.get("val_accuracy")
    message = args.message or f"{sidecar_path(path).stem}" + (f" val_accuracy={val:.4f}" if val is not None else "")
    print(f"submit: uploading {path} to {competition.slug} ({message})")
    done = upload.submit(path, message, competition.slug)
    upload.record_upload(path, competition.slug, message, done)
    print(f"submit: Kaggle says: {done.message}" + (f" (ref {done.ref})" if done.ref else ""))
    try:
        left = upload.remaining_today(competition.slug)
        rows = upload.recent_submissions(competition.slug)
    except PipelineError as err:
        print(f"submit: uploaded, but the submission list failed: {err}", file=sys.stderr)
        return
    print(f"submit: recent submissions to {competition.slug}"
          + (f" ({left} more allowed today)" if left is not None else "") + ":")
    for line in upload.format_submissions(rows):
        print(f"  {line}")


def cmd_submissions(args) -> None:
    from submissions.listing import format_listing, list_submissions

    for line in format_listing(list_submissions(args.competition)):
        print(line)


def cmd_demo(args) -> None:
    """Data -> train -> predict -> score, on the embedded demo competition, with the default recipe."""
    from submissions.make import run_demo

    args = argparse.Namespace(**{**vars(args), "tuned": "0"})  # the demo shows the default recipe, never a study's
    result = run_demo(training_config(args), force=args.force, on_stage=print)
    print("\n== demo result ==")
    print(f"validation accuracy: {result.run.metrics['val_accuracy']:.4f}")
    print(f"validation macro F1: {result.run.metrics['val_macro_f1']:.4f}")
    print(f"test accuracy:       {result.test_scores['test_accuracy']:.4f}")
    print(f"submission:          {result.submission.path}")


def register(sub) -> None:
    """Add this package's subcommands to the ``kip`` parser."""
    p = add_stage(sub, "predict", cmd_predict, "predict the test split and write submissions/<run>.csv",
                  tensorflow=True)
    p.add_argument("--runs", nargs="*", help="run folders (default: the newest); several are averaged")
    p.add_argument("--tta", action="store_true", help="also predict the flipped images and average")
    p.add_argument("--image", default=None, help="one image: print its top 5 classes instead")
    p.add_argument("--submission-header", default=None, help="id,label columns when there is no sample submission")
    s = add_stage(sub, "submit", cmd_submit, "check a submission, upload it with the kaggle client, list recent ones")
    s.add_argument("--file", default=None, help="CSV to upload (default: the newest for the competition)")
    s.add_argument("--message", default=None)
    add_stage(sub, "check-submission", cmd_check_submission, "check a submission file against the competition"
              ).add_argument("--file", default=None, help="CSV to check (default: the newest for the competition)")
    listing = sub.add_parser("submissions", help="list local submission files with validation scores, newest first")
    listing.add_argument("--competition", default=None, help="only this competition's")
    listing.set_defaults(func=cmd_submissions, tensorflow=False)
    demo = add_training_arguments(add_stage(sub, "demo", cmd_demo, "the whole chain on the embedded demo competition",
                                            tensorflow=True))
    demo.add_argument("--force", action="store_true")
