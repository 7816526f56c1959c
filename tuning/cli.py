"""``kip tune`` and ``kip tune-report``: the tuning package's subcommands."""
from __future__ import annotations

import argparse

from competition import settings
from competition.registry import load_competition
from pipelines.cli import add_cluster_arguments, add_stage, add_training_arguments, training_config
from pipelines.config import parse_settings
from tuning.space import build_space
from tuning.storage import compare_with_default, count_states


def cmd_tune(args) -> None:
    from pipelines.cluster import cluster_session
    from tuning.search import TuneOptions, best_params_path, tune  # TensorFlow

    config = training_config(argparse.Namespace(**{**vars(args), "tuned": "0"}))
    space = build_space(config.arch, args.space, fixed=parse_settings(args.set))
    with cluster_session(args.scheduler, args.workers):  # the trials' cluster, if any, reached before any work
        study = tune(config, space, TuneOptions(trials=args.trials or None, minutes=args.minutes,
                                                storage=args.storage, study=args.study, pruner=args.pruner,
                                                heartbeat=args.heartbeat, workers=args.workers,
                                                scheduler=args.scheduler))
    states = count_states(study)
    print(f"tune: study {study.study_name}: {sum(states.values())} trials ("
          + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")")
    for trial in study.trials[-20:]:
        if trial.state.name == "FAIL":
            reason = trial.user_attrs.get("fail_reason", "process died (heartbeat)")
            print(f"tune: trial {trial.number} failed: {reason}")
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
    from tuning.tune_report import write_report  # matplotlib

    for path in write_report(args.competition, args.arch, storage=args.storage, study=args.study):
        print(f"tune-report: {path}")


def register(sub) -> None:
    """Add this package's subcommands to the ``kip`` parser."""
    t = add_training_arguments(add_stage(sub, "tune", cmd_tune, "Optuna search over optimizer, learning rate, "
                                         "epochs, batch size, ...", tensorflow=True))
    t.add_argument("--trials", type=int, default=10, help="more trials to run, over all workers (0: no limit)")
    t.add_argument("--minutes", type=float, default=None, help="stop starting trials after this long")
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under tuning/)")
    t.add_argument("--study", default=None, help="study name (default: <slug>-<arch>)")
    t.add_argument("--space", action="append", metavar="NAME=SPEC|FILE",
                   help="narrow or fix the search: lr=1e-4:1e-2, optimizer=adamw,sgd, epochs=10, or a TOML/JSON file")
    t.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"],
                   help="median (default): below the median of earlier trials at the same epoch, after 4 trials; "
                        "hyperband: successive halving at 1, 3, 9, ... epochs, from the second trial; none")
    t.add_argument("--heartbeat", type=int, default=30, help="seconds between trial heartbeats (RDB storages)")
    add_cluster_arguments(t)
    r = add_stage(sub, "tune-report", cmd_tune_report, "plots and a top-trials table of a study -> reports/<slug>/")
    r.add_argument("--arch", default=settings.DEFAULT_ARCH)
    r.add_argument("--storage", default=None)
    r.add_argument("--study", default=None)
