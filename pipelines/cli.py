"""Command line: ``kip <stage>``, a thin wrapper over the stage functions. The Makefile calls it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from competition import settings
from competition.errors import PipelineError



def cmd_data(args) -> None:
    """Raw files present (downloaded or built), then checked, decoded and cached as arrays."""
    from competition.config import load_competition
    from competition.download import prepare
    from competition.layout import describe
    from pipelines.data import cache_root, load_dataset

    competition = load_competition(args.competition)
    raw = prepare(competition, force=args.force)
    competition = load_competition(args.competition)  # a config without [splits] is laid out once files exist
    if competition.source == "local" or competition.title.endswith("(detected)"):
        print(f"data: no config for {competition.slug}; detected (pin it in competition.toml to override):\n"
              + "\n".join(f"    {line}" for line in describe(competition).splitlines()))
    data = load_dataset(competition, seed=settings.SEED)
    val = "stratified hold-out of train" if data.holdout else "val split"
    print(f"data: {competition.slug} ready in {raw}: {len(data.train)} train, {len(data.val)} val ({val}), "
          f"{len(data.test) if data.test is not None else 'no'} test images of {'x'.join(map(str, data.input_shape))}, "
          f"{data.num_classes} classes; arrays cached in {cache_root(competition)}")
    if data.test is None:
        print(f"notice: {competition.slug} has no test split in {raw}; training works, "
              f"`make predict` needs the competition's test files there", file=sys.stderr)


def cmd_report(args) -> None:
    from competition.config import load_competition
    from pipelines.report import data_report

    competition = load_competition(args.competition)
    report = data_report(competition)
    out = settings.reports_dir(competition.slug)
    dups = report["duplicates"]
    print(f"report: {out / 'data.md'}, {out / 'data.json'}, {report['sample_grid']}")
    print(f"report: {sum(s['images'] for s in report['splits'].values())} images, {len(report['classes'])} classes; "
          f"{len(report['blank_images'])} blank images; {len(dups)} duplicate groups "
          f"({sum(g['across_splits'] for g in dups)} across splits, "
          f"{sum(g['conflicting_labels'] for g in dups)} with conflicting labels); "
          f"val labels not in train: {report['val_labels_not_in_train'] or 'none'}")


def training_config(args):
    """Defaults < tuned parameters (when they won, or TUNED=1) < command-line settings; validated.

    The competition is resolved once here: a folder path becomes absolute (runs then find it from anywhere), and
    tuned parameters and the latest-run pointer are looked up by its slug.
    """
    from competition.config import load_competition
    from pipelines.config import TrainConfig, parse_settings, tuned_settings

    competition = load_competition(args.competition)
    name = str(Path(args.competition).resolve()) if Path(args.competition).is_dir() and competition.data_dir \
        else args.competition
    config = TrainConfig(competition=name, arch=args.arch)
    tuned, said = tuned_settings(competition.slug, config.arch, getattr(args, "tuned", "auto") or "auto")
    if said:
        print(said)
    return config.update(**tuned).update(**parse_settings(args.set))


def parse_settings(pairs: list[str]) -> dict:
    """``["epochs=3", "optimizer=sgd"]`` -> ``{"epochs": 3, "optimizer": "sgd"}``, typed by TrainConfig."""
    from pipelines.config import parse_settings as parse

    return parse(pairs)


def cmd_train(args) -> None:
    from pipelines.train import train

    result = train(training_config(args))
    m = result.metrics
    print(f"train: {result.run_dir}  val_accuracy={m['val_accuracy']:.4f}  val_macro_f1={m['val_macro_f1']:.4f}  "
          f"({m['epochs_run']} epochs, {m['train_seconds']:.0f} s)")


def cmd_tune(args) -> None:
    from competition.config import load_competition
    from tuning.search import best_params_path, compare_with_default, count_states, tune
    from tuning.space import build_space

    config = training_config(argparse.Namespace(**{**vars(args), "tuned": "0"}))
    space = build_space(config.arch, args.space, fixed=parse_settings(args.set))
    study = tune(config, n_trials=args.trials or None, storage=args.storage, space=space, workers=args.workers,
                 timeout=args.minutes * 60 if args.minutes else None, pruner=args.pruner,
                 study=args.study, heartbeat=args.heartbeat)
    states = count_states(study)
    print(f"tune: study {study.study_name}: {sum(states.values())} trials ("
          + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")")
    for trial in study.trials[-20:]:
        if trial.state.name == "FAIL":
            print(f"tune: trial {trial.number} failed: {trial.user_attrs.get('fail_reason', 'process died (heartbeat)')}")
    if states.get("complete"):
        slug = load_competition(config.competition).slug
        beats, why = compare_with_default(study)
        print(f"tune: best val_accuracy={study.best_value:.4f} (trial {study.best_trial.number}) "
              f"{study.best_trial.params} -> {best_params_path(slug, config.arch)}")
        print(f"tune: {'make train will use them' if beats else 'make train keeps its default recipe'}: {why}"
              + ("" if beats else " (TUNED=1 uses them anyway)"))
        if study.best_trial.user_attrs.get("run_dir"):
            print(f"tune: the best trial's model: make predict RUNS={study.best_trial.user_attrs['run_dir']}")


def cmd_tune_report(args) -> None:
    from tuning.report import write_report

    for path in write_report(args.competition, args.arch, storage=args.storage, study=args.study):
        print(f"tune-report: {path}")


def resolve_runs(args) -> list[Path]:
    from competition.config import load_competition
    from pipelines.runs import latest_run

    if args.runs:
        return [Path(r) if Path(r).exists() else settings.runs_dir() / r for r in args.runs]
    return [latest_run(load_competition(args.competition).slug)]


def cmd_predict(args) -> Path:
    import json

    from competition.config import load_competition
    from pipelines.predict import check_runs, predict, save_probabilities
    from submissions.format import expected_format, parse_header
    from submissions.writer import prediction_name, submission_path, write_submission

    runs = resolve_runs(args)
    image, tta = getattr(args, "image", None), getattr(args, "tta", False)
    if image:
        from pipelines.predict import top_classes

        print(f"predict: {image} with {', '.join(r.name for r in runs)}")
        for rank, (label, p) in enumerate(top_classes(runs, Path(image), k=5, tta=tta), start=1):
            print(f"  {rank}. {label}  {p:.4f}")
        return None
    header = parse_header(getattr(args, "submission_header", None), "--submission-header")
    competition = load_competition(check_runs(runs)[0]["competition"])
    if header:
        competition = competition.replace(submission_header=header)
    expected_format(competition)  # a header at odds with the sample, or no test split, fails before the models run
    prediction = predict(runs, tta=tta)
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs if (r / "metrics.json").exists()]
    val = sum(m["val_accuracy"] for m in metrics) / len(metrics) if metrics else None
    path = write_submission(competition, prediction.ids, prediction.labels,
                            submission_path(prediction_name(runs, tta), val),
                            details={"runs": [str(r) for r in runs], "val_accuracy": val, "tta": tta})
    probabilities = save_probabilities(prediction, path.with_suffix(".npz"))
    print(f"predict: {len(prediction.ids)} rows -> {path} (probabilities: {probabilities.name})")
    return path


def submission_competition(path: Path, default: str):
    """The competition a submission file belongs to: its sidecar's, else ``default``; without a sample submission,
    with the header the file was written with (``--submission-header``)."""
    import json

    from competition.config import load_competition
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
    """Data -> train -> predict -> score, on the embedded demo competition."""
    import json

    from competition.config import load_competition
    from pipelines.runs import latest_run
    from submissions.writer import score_submission

    args = argparse.Namespace(**{**vars(args), "tuned": "0"})  # the demo shows the default recipe, never a study's
    cmd_data(args)
    cmd_train(args)
    path = cmd_predict(argparse.Namespace(**{**vars(args), "runs": None}))
    competition = load_competition(args.competition)
    metrics = json.loads((latest_run(competition.slug) / "metrics.json").read_text())
    test = score_submission(competition, path)
    print("\n== demo result ==")
    print(f"validation accuracy: {metrics['val_accuracy']:.4f}")
    print(f"validation macro F1: {metrics['val_macro_f1']:.4f}")
    print(f"test accuracy:       {test['test_accuracy']:.4f}")
    print(f"submission:          {path}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kip", description="Kaggle image-classification pipeline")
    sub = parser.add_subparsers(dest="command", required=True)

    def stage(name, func, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--competition", default=settings.DEFAULT_COMPETITION, help="slug or path to a config TOML")
        p.set_defaults(func=func)
        return p

    def trainable(p):
        p.add_argument("--arch", default=settings.DEFAULT_ARCH, help="model name (cnn, resnet10, mobilenetv2)")
        p.add_argument("--set", action="append", metavar="NAME=VALUE", help="any training setting, e.g. epochs=20")
        p.add_argument("--tuned", default="auto", choices=["auto", "1", "0"],
                       help="tuned parameters: use them when they beat the default recipe (auto), always (1), never (0)")
        return p

    stage("data", cmd_data, "get the competition's raw files (download, build or detect), check and cache them"
          ).add_argument("--force", action="store_true", help="fetch again even if present")
    stage("report", cmd_report, "data report: counts, sizes, blank and duplicate images -> reports/<slug>/")
    trainable(stage("train", cmd_train, "train a model; writes runs/<arch>-<time>/"))
    t = trainable(stage("tune", cmd_tune, "Optuna search over optimizer, learning rate, epochs, batch size, ..."))
    t.add_argument("--trials", type=int, default=10, help="more trials to run, over all workers (0: no limit)")
    t.add_argument("--minutes", type=float, default=None, help="stop starting trials after this long")
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under tuning/)")
    t.add_argument("--study", default=None, help="study name (default: <slug>-<arch>)")
    t.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    t.add_argument("--space", action="append", metavar="NAME=SPEC|FILE",
                   help="narrow or fix the search: lr=1e-4:1e-2, optimizer=adam,sgd, epochs=10, or a TOML/JSON file")
    t.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"],
                   help="median (default): below the median of earlier trials at the same epoch, after 4 trials; "
                        "hyperband: successive halving at 1, 3, 9, ... epochs, from the second trial; none")
    t.add_argument("--heartbeat", type=int, default=30, help="seconds between trial heartbeats (RDB storages)")
    r = stage("tune-report", cmd_tune_report, "plots and a top-trials table of a study -> reports/<slug>/")
    r.add_argument("--arch", default=settings.DEFAULT_ARCH)
    r.add_argument("--storage", default=None)
    r.add_argument("--study", default=None)
    p = stage("predict", cmd_predict, "predict the test split and write submissions/<run>.csv")
    p.add_argument("--runs", nargs="*", help="run folders (default: the newest); several are averaged")
    p.add_argument("--tta", action="store_true", help="also predict the flipped images and average")
    p.add_argument("--image", default=None, help="one image: print its top 5 classes instead")
    p.add_argument("--submission-header", default=None, help="id,label columns when there is no sample submission")
    s = stage("submit", cmd_submit, "check a submission, upload it with the kaggle client, list recent ones")
    s.add_argument("--file", default=None, help="CSV to upload (default: the newest for the competition)")
    s.add_argument("--message", default=None)
    stage("check-submission", cmd_check_submission, "check a submission file against the competition").add_argument(
        "--file", default=None, help="CSV to check (default: the newest for the competition)")
    ls = sub.add_parser("submissions", help="list local submission files with validation scores, newest first")
    ls.add_argument("--competition", default=None, help="only this competition's")
    ls.set_defaults(func=cmd_submissions)
    d = trainable(stage("demo", cmd_demo, "the whole chain on the embedded demo competition"))
    d.add_argument("--force", action="store_true")
    return parser


TENSORFLOW_COMMANDS = ("train", "tune", "predict", "demo")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in TENSORFLOW_COMMANDS:
            from pipelines.quiet import import_tensorflow

            import_tensorflow()
        args.func(args)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
