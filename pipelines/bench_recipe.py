"""``make bench-recipe``: does a change to the training recipe pay, on held-out images no choice has seen?

The default recipe (``make train``'s, with ``SET=``) and each variant (``VARIANTS="a=1;b=2 c=3"``: variants
separated by ``;``, each any training settings) are trained exactly as ``make train`` trains them, at the same
budget (``MINUTES=``), taking turns so that a busy spell of a shared machine falls on all, for ``SEEDS=`` seeds;
each run is scored, with the TTA it chose on validation, on a private hold-out (``pipelines.holdout``: the
competition's labelled test split, as in a dev copy like ``gic-dev``, else ``HOLDOUT=`` of train set aside).
It prints and writes ``reports/bench-recipe/<slug>-<arch>.{md,json}``: each recipe's private and validation
accuracy per seed, the mean, and each variant's difference from the default. Runs go to
``runs/bench-recipe-<slug>-<time>/`` (not what ``make predict`` uses).

    KIP_HOME=/work/exp make bench-recipe COMPETITION=gic-dev MINUTES=20 VARIANTS="progressive=0.5"
    KIP_HOME=/work/exp make bench-recipe COMPETITION=mnist MINUTES=5 SET="flip=none" VARIANTS="progressive=0.5" SEEDS=2
"""
from __future__ import annotations

import argparse
import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from competition import settings  # noqa: E402
from competition.errors import PipelineError, run_main  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402
from competition.registry import load_competition  # noqa: E402
from pipelines.config import parse_settings  # noqa: E402
from pipelines.holdout import private_accuracy, private_holdout  # noqa: E402


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="gic-dev")
    parser.add_argument("--arch", default=settings.DEFAULT_ARCH)
    parser.add_argument("--minutes", type=float, default=None, help="each run's budget, as make train MINUTES=")
    parser.add_argument("--variant", action="append", default=[], help="a variant: settings separated by spaces")
    parser.add_argument("--seeds", type=int, default=1, help="runs of each recipe, seeds 42, 43, ...")
    parser.add_argument("--holdout", type=float, default=None,
                        help="private share of train (default: the labelled test split, else 0.15)")
    parser.add_argument("--set", action="append", default=None, help="settings of every recipe, as make train SET=")
    return parser.parse_args(argv)


def recipes(competition: str, args: argparse.Namespace) -> dict:
    """The default recipe and each variant by name, every setting checked before anything trains."""
    from pipelines.tuned import make_config

    base, _ = make_config(competition, args.arch, args.set, tuned="0", minutes=args.minutes)
    out = {"default": base.validate()}
    for variant in args.variant:
        changes = parse_settings(variant.split())
        if not changes:
            raise PipelineError(f"VARIANTS: an empty variant in {args.variant}; give settings like progressive=0.5")
        out[" ".join(variant.split())] = base.update(**changes).validate()
    if args.seeds < 1:
        raise PipelineError(f"SEEDS={args.seeds}: give 1 or more")
    return out


def summarize(rows: dict[str, list[dict]]) -> dict[str, dict]:
    """Per recipe: mean private and validation accuracy, and the difference from the default in points."""
    means = {name: float(np.mean([r["private"] for r in runs])) for name, runs in rows.items()}
    return {name: {"private_mean": means[name],
                   "val_mean": float(np.mean([r["val"] for r in runs])),
                   "points_vs_default": round(100 * (means[name] - means["default"]), 2)}
            for name, runs in rows.items()}


def report(result: dict) -> str:
    lines = [f"# bench-recipe: {result['competition']}, {result['arch']}", "",
             f"Each recipe as make train trains it at {result['minutes']:g} minutes, {result['seeds']} seed(s), taking "
             f"turns; private accuracy on {result['private_images']} held-out images no run or TTA choice saw; "
             f"{os.cpu_count()} CPUs.", "",
             "| recipe | private accuracy per seed | mean | validation (mean) | epochs | vs default |",
             "|---|---|---|---|---|---|"]
    for name, runs in result["runs"].items():
        s = result["summary"][name]
        private = " / ".join(f"{r['private']:.4f}" for r in runs)
        epochs = " / ".join(str(r["epochs"]) for r in runs)
        lines.append(f"| {name} | {private} | {s['private_mean']:.4f} | {s['val_mean']:.4f} | {epochs} | "
                     f"{s['points_vs_default']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    from pipelines.quiet import import_tensorflow

    import_tensorflow()  # without TensorFlow's start-up noise
    from pipelines.data import load_dataset
    from pipelines.train import train

    competition = private_holdout(load_competition(args.competition), args.holdout, 2026)
    configs = recipes(competition.slug, args)
    base = configs["default"]
    dataset = load_dataset(competition, seed=base.seed, progress=base.verbose > 0)
    out = settings.runs_dir() / f"bench-recipe-{competition.slug}-{settings.stamp()}"
    rows: dict[str, list[dict]] = {name: [] for name in configs}
    for k in range(args.seeds):
        for name, config in configs.items():
            seed = base.seed + k
            folder = out / f"{re.sub(r'[^A-Za-z0-9.]+', '_', name)}-seed{seed}"
            print(f"bench-recipe: {name}, seed {seed} -> {folder}", flush=True)
            run = train(config.update(seed=seed), dataset=dataset, run_dir=folder, slug=competition.slug)
            rows[name].append({"seed": seed, "private": private_accuracy(run.run_dir, competition),
                               "val": run.metrics.get("val_accuracy"), "epochs": run.metrics["epochs_run"],
                               "train_seconds": run.metrics["train_seconds"], "tta": run.metrics.get("tta"),
                               "run": str(run.run_dir)})
    result = {"competition": competition.slug, "arch": base.arch, "minutes": base.minutes, "seeds": args.seeds,
              "private_images": len(dataset.test) if dataset.test is not None else 0,
              "runs": rows, "summary": summarize(rows)}
    where = settings.home() / "reports" / "bench-recipe"
    text = report(result)
    write_text(where / f"{competition.slug}-{base.arch}.md", text)
    write_json(where / f"{competition.slug}-{base.arch}.json", result)
    print("\n" + text + f"\nbench-recipe: {where / f'{competition.slug}-{base.arch}.json'}")
    return 0


if __name__ == "__main__":
    run_main(main)
