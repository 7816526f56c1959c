"""``kip tune`` and ``kip tune-report``: the tuning package's subcommands."""
from __future__ import annotations

from competition import settings
from competition.registry import load_competition
from pipelines.cli import add_cluster_arguments, add_stage, add_training_arguments
from pipelines.config import parse_settings
from pipelines.tuned import make_config
from tuning.fidelity import CheckOptions, Fidelity, describe, parse_options
from tuning.space import build_space
from tuning.storage import PRUNERS, count_states


def cmd_tune(args) -> None:
    from pipelines.cluster import cluster_session
    from tuning.search import TuneOptions, best_params_path, tune  # TensorFlow

    config, _ = make_config(args.competition, args.arch, args.set, tuned="0")  # the search starts from the default
    space = build_space(config.arch, args.space, fixed=parse_settings(args.set))
    options = TuneOptions(trials=args.trials or None, minutes=args.minutes, storage=args.storage, study=args.study,
                          pruner=args.pruner, heartbeat=args.heartbeat, workers=args.workers, scheduler=args.scheduler,
                          fidelity=parse_options(args.fidelity, Fidelity, "FIDELITY"),
                          check=parse_options(args.check, CheckOptions, "CHECK"))
    with cluster_session(args.scheduler, args.workers):  # the trials' cluster, if any, reached before any work
        study = tune(config, space, options)
    states = count_states(study)
    print(f"tune: study {study.study_name}: {sum(states.values())} trials ("
          + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")")
    for trial in study.trials[-20:]:
        if trial.state.name == "FAIL":
            reason = trial.user_attrs.get("fail_reason", "process died (heartbeat)")
            print(f"tune: trial {trial.number} failed: {reason}")
    record = study.user_attrs.get("check", {})
    if states.get("complete"):
        print(f"tune: best trial in the search: {study.best_trial.number} val_accuracy={study.best_value:.4f} "
              f"at fidelity {describe(study.user_attrs.get('fidelity', {}))}")
    path = best_params_path(load_competition(config.competition).slug, config.arch)
    if record.get("beats_default"):
        print(f"tune: make train will use trial {record['trial']}'s parameters {record['params']} -> {path}")
    else:
        print(f"tune: make train keeps its default recipe ({path}); TUNED=1 uses the best candidate anyway")


def cmd_tune_report(args) -> None:
    from tuning.tune_report import write_report  # matplotlib

    for path in write_report(args.competition, args.arch, storage=args.storage, study=args.study):
        print(f"tune-report: {path}")


def register(sub) -> None:
    """Add this package's subcommands to the ``kip`` parser."""
    t = add_training_arguments(add_stage(sub, "tune", cmd_tune, "Optuna search over optimizer, learning rate, "
                                         "epochs, batch size, ...", tensorflow=True))
    t.add_argument("--trials", type=int, default=10, help="more trials to run, over all workers (0: no limit)")
    t.add_argument("--minutes", type=float, default=None,
                   help="the whole search in minutes, the final check included: no trial starts after its share")
    t.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite under tuning/)")
    t.add_argument("--study", default=None, help="study name (default: <slug>-<arch>)")
    t.add_argument("--space", action="append", metavar="NAME=SPEC|FILE",
                   help="narrow or fix the search: lr=1e-4:1e-2, optimizer=adamw,sgd, epochs=10, or a TOML/JSON file")
    t.add_argument("--pruner", default="sha", choices=PRUNERS,
                   help="sha (default): successive halving, a trial goes on at 12%% and 36%% of its run only in the "
                        "top third; median: below the median of earlier trials at the same point, after 4 trials; "
                        "hyperband: successive halving in several brackets; none")
    t.add_argument("--fidelity", default="", metavar="'minutes=M subset=F scale=F'",
                   help="how a trial is a smaller copy of the final run: its minutes (default: the final run's / 6), "
                        "a class-stratified subset of train, a factor on the image size")
    t.add_argument("--check", default="", metavar="'top=N budget=F margin=A'",
                   help="final check: retrain the top N (1) candidates and the default at F (1.0) x the final "
                        "budget; the tuned parameters win only by at least A (0.005) accuracy")
    t.add_argument("--heartbeat", type=int, default=30, help="seconds between trial heartbeats (RDB storages)")
    add_cluster_arguments(t)
    r = add_stage(sub, "tune-report", cmd_tune_report, "plots and a top-trials table of a study -> reports/<slug>/")
    r.add_argument("--arch", default=settings.DEFAULT_ARCH)
    r.add_argument("--storage", default=None)
    r.add_argument("--study", default=None)
