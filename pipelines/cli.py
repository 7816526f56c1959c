"""``kip data``, ``kip report`` and ``kip train``: the pipelines package's subcommands, and the arguments every
package's subcommands share. The ``kip`` command (``kip.py``) assembles them with tuning's and submissions'.

Modules that load TensorFlow, matplotlib or the kaggle client are imported inside the command that needs them, so
``kip --help`` and the light commands start at once.
"""
from __future__ import annotations

import argparse
import sys

from competition import settings
from competition.registry import load_competition
from pipelines.config import TrainConfig
from pipelines.runs import resolve_run, run_summary
from pipelines.tuned import make_config


def add_stage(sub, name: str, func, help_text: str, tensorflow: bool = False) -> argparse.ArgumentParser:
    """A subcommand that takes ``--competition`` and runs ``func(args)``; ``tensorflow`` if it needs TensorFlow."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument("--competition", default=settings.DEFAULT_COMPETITION,
                        help="slug, folder or path to a config TOML")
    parser.set_defaults(func=func, tensorflow=tensorflow)
    return parser


def add_training_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--arch``, ``--set NAME=VALUE`` and ``--tuned``: what chooses a training config."""
    parser.add_argument("--arch", default=settings.DEFAULT_ARCH, help="model name (cnn, resnet10, mobilenetv2)")
    parser.add_argument("--set", action="append", metavar="NAME=VALUE", help="any training setting, e.g. epochs=20")
    parser.add_argument("--tuned", default="auto", choices=["auto", "1", "0"],
                        help="tuned parameters: use them when they beat the default recipe (auto), always (1), "
                             "never (0)")
    return parser


def add_cluster_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--scheduler`` and ``--workers``: where the folds run (``pipelines.cluster``)."""
    parser.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                        help="a Dask scheduler whose workers run the folds or trials (default: "
                             "$DASK_SCHEDULER_ADDRESS, else none)")
    parser.add_argument("--workers", type=int, default=1,
                        help="without a scheduler: 1 trains in this process, N > 1 on a local Dask cluster of N "
                             "worker processes")
    return parser


def cmd_data(args) -> None:
    """Raw files present (downloaded or built), then checked, decoded and cached as arrays."""
    from pipelines.prepare import prepare_data  # the kaggle client, skimage

    prepared = prepare_data(args.competition, force=args.force)
    print("\n".join(prepared.summary()))
    if prepared.notice:
        print(prepared.notice, file=sys.stderr)


def cmd_report(args) -> None:
    from pipelines.data_report import data_report  # matplotlib

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


def training_config(args, minutes: float | None = None) -> TrainConfig:
    """The training config the arguments ask for (with the budget ``minutes`` when given), saying which parameters
    it uses."""
    config, said = make_config(args.competition, args.arch, args.set, getattr(args, "tuned", "auto"), minutes)
    if said:
        print(said)
    return config


def cmd_train(args) -> None:
    from pipelines.train import train  # TensorFlow

    result = train(training_config(args))
    m = result.metrics
    print(f"train: {result.run_dir}  val_accuracy={m['val_accuracy']:.4f}  val_macro_f1={m['val_macro_f1']:.4f}  "
          f"({run_summary(m)})")


def cmd_cv(args) -> None:
    from pipelines.cluster import cluster_session
    from pipelines.cv import run_cv  # TensorFlow

    config = training_config(args, args.budget / args.folds if args.budget else None)
    with cluster_session(args.scheduler, args.workers) as client:
        print(f"cv: {args.folds} folds over every labelled image (train, and val when the competition labels one); "
              f"{config.minutes:g} minutes per fold")
        result = run_cv(config, folds=args.folds, folds_from=resolve_run(args.folds_from) if args.folds_from else None,
                        client=client)
    m = result.metrics
    print(f"cv: {result.cv_dir}  oof_accuracy={m['oof_accuracy']:.4f}  oof_macro_f1={m['oof_macro_f1']:.4f}  "
          f"oof_log_loss={m['oof_log_loss']:.4f}  folds {m['fold_accuracy_mean']:.4f} +- {m['fold_accuracy_std']:.4f}"
          f"  tta={m['tta']}")
    print(f"cv: submission from the folds' average: make predict RUNS={result.cv_dir}")


def register(sub) -> None:
    """Add this package's subcommands to the ``kip`` parser."""
    add_stage(sub, "data", cmd_data, "get the competition's raw files (download, build or detect), check and cache "
              "them").add_argument("--force", action="store_true", help="fetch again even if present")
    add_stage(sub, "report", cmd_report, "data report: counts, sizes, blank and duplicate images -> reports/<slug>/")
    add_training_arguments(add_stage(sub, "train", cmd_train, "train a model; writes runs/<arch>-<time>/",
                                     tensorflow=True))
    cv = add_training_arguments(add_stage(sub, "cv", cmd_cv, "stratified k-fold CV over every labelled image; "
                                          "writes runs/cv-<arch>-<time>/", tensorflow=True))
    cv.add_argument("--folds", type=int, default=5, help="number of folds (at least 2)")
    cv.add_argument("--budget", type=float, default=None,
                    help="minutes for the whole CV (wins over minutes=, the budget of each fold)")
    cv.add_argument("--folds-from", default=None, help="a CV folder whose fold assignment to reuse")
    add_cluster_arguments(cv)
