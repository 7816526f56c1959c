"""``kip predict``, ``check-submission``, ``submit``, ``submissions`` and ``demo``: the submissions package's
subcommands. Those that predict import TensorFlow only when they run (``submissions.make``), so checking, listing
and uploading start at once."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines.cli import add_cluster_arguments, add_stage, add_training_arguments, training_config
from pipelines.config import TTA_CHOICES as CONFIG_TTA
from pipelines.runs import find_runs, resolve_run
from submissions import upload
from submissions.checker import CheckReport, check_submission, competition_of
from submissions.listing import format_listing, list_submissions
from submissions.sidecar import record_upload, upload_message
from submissions.writer import newest_submission

TTA_CHOICES = [c for c in CONFIG_TTA if c != "auto"]


def tta_choice(text: str) -> str:
    """``--tta`` values: a choice of ``pipelines.inference.TTA_CHOICES``; ``1`` is ``flip`` (as TTA=1 always was)."""
    text = {"1": "flip", "0": "none"}.get(text, text)
    if text not in TTA_CHOICES:
        raise argparse.ArgumentTypeError(f"use one of {', '.join(TTA_CHOICES)}")
    return text


def resolve_runs(args) -> list[Path]:
    return find_runs(args.runs, load_competition(args.competition).slug)


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


def cmd_check_submission(args) -> CheckReport:
    path = Path(args.file) if args.file else newest_submission(args.competition)
    report = check_submission(competition_of(path, args.competition), path)
    print(f"check: {report.summary()}")
    return report


def cmd_submit(args) -> None:
    """Check the file, upload it with the kaggle client, then list the competition's recent submissions."""
    path = Path(args.file) if args.file else newest_submission(args.competition)
    competition = competition_of(path, args.competition)
    cmd_check_submission(argparse.Namespace(file=str(path), competition=competition.slug))
    message = args.message or upload_message(path)
    print(f"submit: uploading {path} to {competition.slug} ({message})")
    done = upload.submit(path, message, competition.slug)
    record_upload(path, competition.slug, message, done)
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
    for line in format_listing(list_submissions(args.competition)):
        print(line)


def cmd_refit(args) -> None:
    from submissions.make import refit_submission

    result, made = refit_submission(resolve_run(args.run))
    m = result.metrics
    print(f"refit: {result.run_dir}  {m['epochs_run']} epochs on every labelled image, {m['train_seconds']:.0f} s; "
          f"no validation score of its own (estimate from {m['estimate_of']}: {m['estimate']:.4f})")
    if made:
        print(f"refit: {made.rows} rows -> {made.path}")


def cmd_blend(args) -> None:
    from submissions.make import blend_submission

    result, made = blend_submission([resolve_run(r) for r in args.runs])
    m = result.metrics
    for name, weight in m["weights"].items():
        print(f"blend: {name}  weight {weight:.3f}  accuracy {m['member_accuracy'][name]:.4f}")
    print(f"blend: {result.blend_dir}  oof_accuracy={m['oof_accuracy']:.4f}  oof_macro_f1={m['oof_macro_f1']:.4f} "
          f"on {m['scored_on']} images")
    if made:
        print(f"blend: {made.rows} rows -> {made.path}")


def cmd_compete(args) -> None:
    from pipelines.cluster import cluster_session
    from submissions.compete import compete

    with cluster_session(args.scheduler, args.workers) as client:
        result = compete(args.competition, args.minutes, args.set, client=client, refit=args.refit)
    print(f"compete: {result.submission.rows} rows -> {result.submission.path}")
    if result.estimate_of == "out-of-fold":
        caveat = ("on the low side: each image was scored by one fold's model, the submission averages them all")
    else:
        caveat = "on the high side: the TTA and the blend weights were chosen on the same validation images"
    if result.refit:
        caveat += "; it is the refits' sources' score (a refit has none of its own)"
    print(f"compete: estimated score ({result.estimate_of} accuracy of the final model) {result.estimate:.4f}, "
          f"{caveat}; {result.spent_minutes:.1f} of {args.minutes:g} minutes")


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
    p.add_argument("--tta", default=None, type=tta_choice, metavar="|".join(TTA_CHOICES),
                   help="test-time augmentation (default: each run's own choice, made on its validation split; "
                        "1 = flip)")
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
    refit = add_stage(sub, "refit", cmd_refit, "train a finished run's or CV's settings on every labelled image "
                      "and write its submission", tensorflow=True)
    refit.add_argument("--run", required=True, help="the run or CV folder to refit")
    blend = add_stage(sub, "blend", cmd_blend, "blend runs/CVs by their out-of-fold predictions (greedy selection) "
                      "and write the submission", tensorflow=True)
    blend.add_argument("--runs", nargs="+", required=True, help="two or more run, CV or blend folders")
    compete = add_stage(sub, "compete", cmd_compete, "turn a CPU budget into the best submission: plan, CVs, blend, "
                        "TTA, submission", tensorflow=True)
    compete.add_argument("--minutes", type=float, required=True, help="the whole budget")
    compete.add_argument("--refit", action="store_true", help="refit each run or CV on every labelled image and "
                         "blend the refits (their minutes come out of the runs')")
    compete.add_argument("--set", action="append", metavar="NAME=VALUE", help="any training setting for every model")
    add_cluster_arguments(compete)
    demo = add_training_arguments(add_stage(sub, "demo", cmd_demo, "the whole chain on the embedded demo competition",
                                            tensorflow=True))
    demo.add_argument("--force", action="store_true")
