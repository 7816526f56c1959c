"""Command line: ``kip <stage>``, a thin wrapper over the stage functions. The Makefile calls it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from competition import settings
from competition.errors import PipelineError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
    """Defaults < tuned parameters (when a study wrote them) < command-line settings."""
    from pipelines.train import TrainConfig
    from tuning.search import best_params_path, load_best_params

    config = TrainConfig(competition=args.competition, arch=args.arch)
    tuned = None if args.no_tuned else load_best_params(config.competition, config.arch)
    if tuned:
        config = config.update(**tuned["params"])
        print(f"train: using tuned parameters from {best_params_path(config.competition, config.arch)}: {tuned['params']}")
    return config.update(**parse_settings(args.set))


def parse_settings(pairs: list[str]) -> dict:
    """``["epochs=3", "optimizer=sgd"]`` -> ``{"epochs": 3, "optimizer": "sgd"}``, typed by TrainConfig."""
    from dataclasses import fields

    from pipelines.train import TrainConfig

    types = {f.name: f.type for f in fields(TrainConfig)}
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or key not in types:
            raise PipelineError(f"bad setting '{pair}': use NAME=VALUE with NAME one of {', '.join(sorted(types))}")
        kind = {"int": int, "float": float}.get(types[key], str)
        try:
            out[key] = kind(value)
        except ValueError:
            raise PipelineError(f"bad setting '{pair}': {key} needs a {types[key]}") from None
    return out


def cmd_train(args) -> None:
    from pipelines.train import train

    result = train(training_config(args))
    m = result.metrics
    print(f"train: {result.run_dir}  val_accuracy={m['val_accuracy']:.4f}  val_macro_f1={m['val_macro_f1']:.4f}  "
          f"({m['epochs_run']} epochs, {m['train_seconds']:.0f} s)")


def cmd_tune(args) -> None:
    from tuning.search import best_params_path, tune

    config = training_config(argparse.Namespace(**{**vars(args), "no_tuned": True}))
    study = tune(config, n_trials=args.trials, storage=args.storage,
                 timeout=args.minutes * 60 if args.minutes else None)
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    print(f"tune: study {study.study_name}: {len(study.trials)} trials ({len(done)} complete)")
    if done:
        print(f"tune: best val_accuracy={study.best_value:.4f} with {study.best_params} -> "
              f"{best_params_path(config.competition, config.arch)}")


def resolve_runs(args) -> list[Path]:
    from pipelines.train import latest_run

    if args.runs:
        return [Path(r) if Path(r).exists() else settings.runs_dir() / r for r in args.runs]
    return [latest_run(args.competition)]


def cmd_predict(args) -> Path:
    import json

    from competition.config import load_competition
    from pipelines.predict import predict, save_probabilities
    from submissions.writer import submission_path, write_submission

    runs = resolve_runs(args)
    prediction = predict(runs)
    competition = load_competition(prediction.competition)
    name = runs[0].name if len(runs) == 1 else f"ensemble-{len(runs)}-{runs[0].name}"
    metrics = [json.loads((r / "metrics.json").read_text()) for r in runs if (r / "metrics.json").exists()]
    val = sum(m["val_accuracy"] for m in metrics) / len(metrics) if metrics else None
    save_probabilities(prediction, runs[0] / "test_probabilities.npz")
    path = write_submission(competition, prediction.ids, prediction.labels, submission_path(name),
                            details={"runs": [str(r) for r in runs], "val_accuracy": val})
    print(f"predict: {len(prediction.ids)} rows -> {path}")
    return path


def cmd_submit(args) -> None:
    import json

    from submissions.upload import submit
    from submissions.writer import newest_submission

    path = Path(args.file) if args.file else newest_submission(args.competition)
    details = {}
    if path.with_suffix(".json").exists():
        details = json.loads(path.with_suffix(".json").read_text())
    slug = details.get("competition", args.competition)
    val = details.get("val_accuracy")
    message = args.message or f"{path.stem}" + (f" val_accuracy={val:.4f}" if val is not None else "")
    print(f"submit: uploading {path} to {slug} ({message})")
    print(f"submit: {submit(path, message, slug)}")


def cmd_demo(args) -> None:
    """Data -> train -> predict -> score, on the embedded demo competition."""
    import json

    from competition.config import load_competition
    from submissions.writer import score_submission

    args.set = args.set or []
    cmd_data(args)
    cmd_train(args)
    path = cmd_predict(argparse.Namespace(**{**vars(args), "runs": None}))
    competition = load_competition(args.competition)
    from pipelines.train import latest_run

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
        p.add_argument("--arch", default=settings.DEFAULT_ARCH, help="model name (cnn, resnet10)")
        p.add_argument("--set", action="append", metavar="NAME=VALUE", help="any training setting, e.g. epochs=20")
        p.add_argument("--no-tuned", action="store_true", help="ignore tuned parameters")
        return p

    stage("data", cmd_data, "get the competition's raw files (download, build or detect), check and cache them"
          ).add_argument("--force", action="store_true", help="fetch again even if present")
    stage("report", cmd_report, "data report: counts, sizes, blank and duplicate images -> reports/<slug>/")
    trainable(stage("train", cmd_train, "train a model; writes runs/<arch>-<time>/"))
    t = trainable(stage("tune", cmd_tune, "Optuna search over optimizer, learning rate and epochs"))
    t.add_argument("--trials", type=int, default=10)
    t.add_argument("--minutes", type=float, default=None, help="stop starting trials after this long")
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under tuning/)")
    p = stage("predict", cmd_predict, "predict the test split and write submissions/<run>.csv")
    p.add_argument("--runs", nargs="*", help="run folders (default: the newest); several are averaged")
    s = stage("submit", cmd_submit, "upload a submission with the kaggle client")
    s.add_argument("--file", default=None, help="CSV to upload (default: the newest for the competition)")
    s.add_argument("--message", default=None)
    d = trainable(stage("demo", cmd_demo, "the whole chain on the embedded demo competition"))
    d.add_argument("--force", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
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
