"""``make bench-tune-transfer``: does what ``make tune`` finds beat the untuned ``make train`` at the same budget?

On a competition's train split, with a private stratified hold-out the search never sees (the competition's labelled
test split when it has one, like the dev copy ``gic-dev``, unless ``--holdout`` is given; otherwise ``--holdout`` of
the train split, 0.15 by default, set aside as ``data/raw/<slug>-private<percent>/``), it runs ``make tune MINUTES=``
(its own study, the user's tuned-settings file left alone), then trains the default recipe and the check's best
candidate at the final budget (``--final-minutes``, default make train's) exactly as ``make train`` does (with the
default ``CHECK`` the check has trained exactly those runs at the whole final budget: they are used), and prints
both private accuracies, that of what ``make train`` would use after the search ("tuned": the candidate only when
the check let it win, else the default) and the difference. Result: ``reports/bench-tune-transfer/<slug>-<arch>.json``
(and ``.md``).

    KIP_HOME=/work/exp make bench-tune-transfer COMPETITION=gic-dev                    # 60 minutes in all
    KIP_HOME=/work/exp make bench-tune-transfer COMPETITION=gic-dev MINUTES=20 FINAL_MINUTES=6 HOLDOUT=0.1
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from competition import settings  # noqa: E402
from competition.errors import run_main  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402
from competition.registry import load_competition  # noqa: E402
from pipelines.config import TrainConfig, parse_settings  # noqa: E402
from pipelines.holdout import private_accuracy, private_holdout  # noqa: E402
from tuning.fidelity import CheckOptions, Fidelity, describe, parse_options  # noqa: E402

TARGET_POINTS, TARGET_TRIALS = 1.5, 20
def check_runs(check: dict) -> dict[str, Path]:
    """The final check's own runs when it trained them at the whole final budget (``make train``'s runs, same
    settings, same split, kept whole): ``default`` and the winning ``candidate``, by folder; none otherwise."""
    figures = check.get("check") or {}
    if not figures.get("kept"):
        return {}
    found = {"default": figures["default"]["run_dir"]}
    found.update(("candidate", c["run_dir"]) for c in figures["candidates"] if c["trial"] == check["trial"])
    return {name: Path(run) for name, run in found.items() if (Path(run) / "model.keras").is_file()}


def summary(result: dict) -> str:
    """The benchmark's answer in one line: both private accuracies and the difference."""
    p = result["private"]
    used = f"trial {result['check']['trial']}'s parameters" if result["check"]["beats_default"] else \
        "the default: the final check kept it"
    return (f"bench-tune-transfer: private hold-out accuracy tuned {p['tuned']:.4f} ({used}), default "
            f"{p['default']:.4f}, difference {result['difference_points']:+.2f} points")


def report(result: dict) -> str:
    r, c = result, result["check"]
    lines = [f"# bench-tune-transfer: {r['competition']}, {r['arch']}", "",
             f"make tune MINUTES={r['minutes']:g} (fidelity {r['fidelity']}, pruner {r['pruner']}) on "
             f"{r['train_images']} train / {r['holdout_images']} hold-out images, then make train at "
             f"{r['final_minutes']:g} minutes with each recipe, scored on {r['private_images']} private images the "
             f"search never saw; {os.cpu_count()} CPUs.", "",
             f"- search: {r['finished']} trials finished ({r['states'].get('complete', 0)} complete + "
             f"{r['states'].get('pruned', 0)} pruned), {r['states'].get('fail', 0)} failed, in "
             f"{r['search_minutes']:.1f} minutes (target >= {TARGET_TRIALS}: "
             f"{'met' if r['finished'] >= TARGET_TRIALS else 'MISSED'})",
             f"- final check: {'tuned parameters win: ' if c['beats_default'] else ''}{c['why']}",
             *([f"- final runs: the check's own ({', '.join(r['reused_check_runs'])}): it trained them at the whole "
                f"final budget, as make train does"] if r.get("reused_check_runs") else []), "",
             "| recipe | private accuracy |", "|---|---|",
             f"| default | {r['private']['default']:.4f} |"]
    if r["private"].get("candidate") is not None:
        lines.append(f"| best candidate (trial {c['trial']}) | {r['private']['candidate']:.4f} |")
    points = r["difference_points"]
    lines += [f"| tuned: what make train uses after make tune ({'candidate' if c['beats_default'] else 'default'}) | "
              f"{r['private']['tuned']:.4f} |", "",
              f"- difference, tuned minus default: {points:+.2f} points (target >= +{TARGET_POINTS}: "
              f"{'met' if points >= TARGET_POINTS else 'MISSED'}; never loses: {'yes' if points >= 0 else 'NO'})"]
    return "\n".join(lines) + "\n"


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="gic-dev")
    parser.add_argument("--arch", default=settings.DEFAULT_ARCH)
    parser.add_argument("--minutes", type=float, default=60.0, help="make tune MINUTES=, the final check included")
    parser.add_argument("--final-minutes", type=float, default=None,
                        help="the final run's budget, as make train MINUTES= (default: make train's, 18)")
    parser.add_argument("--trials", type=int, default=None, help="also stop after this many trials")
    parser.add_argument("--fidelity", default="")
    parser.add_argument("--check", default="")
    parser.add_argument("--pruner", default="sha")
    parser.add_argument("--holdout", type=float, default=None,
                        help="private share of train (default: the labelled test split, else 0.15)")
    parser.add_argument("--set", action="append", default=None, help="training settings, as make train SET=")
    parser.add_argument("--space", action="append", default=None, help="search-space overrides, as make tune SPACE=")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, clock=time.time) -> int:
    args = arguments(argv)
    from pipelines.data import load_dataset
    from pipelines.train import train
    from pipelines.tuned import make_config
    from tuning.search import TuneOptions, tune
    from tuning.space import build_space
    from tuning.storage import count_states

    options = TuneOptions(trials=args.trials, minutes=args.minutes, pruner=args.pruner, record=False,
                          fidelity=parse_options(args.fidelity, Fidelity, "FIDELITY"),
                          check=parse_options(args.check, CheckOptions, "CHECK"))
    competition = private_holdout(load_competition(args.competition), args.holdout, 2026)
    config, _ = make_config(competition.slug, args.arch, args.set, tuned="0")
    if args.final_minutes is not None:
        config = config.update(minutes=args.final_minutes).validate()
    space = build_space(config.arch, args.space or [], fixed=parse_settings(args.set))
    stamp = settings.stamp()
    out = settings.runs_dir() / f"bench-transfer-{competition.slug}-{config.arch}-{stamp}"
    options.storage, options.study = f"sqlite:///{out / 'studies.db'}", f"transfer-{stamp}"
    dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    started = clock()
    study = tune(config, space, options, dataset=dataset, clock=clock)
    search_minutes = (clock() - started) / 60
    check, states = study.user_attrs["check"], count_states(study)
    reused = check_runs(check)

    def final_run(name: str, recipe: TrainConfig) -> float:
        run = reused.get(name) or train(recipe, dataset=dataset, run_dir=out / name, clock=clock).run_dir
        return private_accuracy(run, competition)

    private = {"default": final_run("default", config)}
    if check["params"]:
        private["candidate"] = final_run("candidate", config.update(**check["params"]))
    private["tuned"] = private["candidate"] if check["beats_default"] else private["default"]
    result = {"competition": competition.slug, "arch": config.arch, "minutes": args.minutes,
              "final_minutes": config.minutes, "fidelity": describe(study.user_attrs.get("fidelity") or {}),
              "pruner": args.pruner, "train_images": len(dataset.train), "holdout_images": len(dataset.val),
              "private_images": len(dataset.test) if dataset.test is not None else 0,
              "search_minutes": round(search_minutes, 2), "states": states, "reused_check_runs": sorted(reused),
              "finished": states.get("complete", 0) + states.get("pruned", 0), "check": check, "private": private,
              "difference_points": round(100 * (private["tuned"] - private["default"]), 2),
              "study": {"storage": options.storage, "name": options.study}}
    where = settings.home() / "reports" / "bench-tune-transfer"
    text = report(result)
    write_text(where / f"{competition.slug}-{config.arch}.md", text)
    write_json(where / f"{competition.slug}-{config.arch}.json", result)
    print("\n" + text + "\n" + summary(result))
    print(f"bench-tune-transfer: {where / f'{competition.slug}-{config.arch}.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
