"""``make bench-tune``: trials per hour and best validation accuracy with and without pruning, in one run.

Each mode (no pruning, successive halving, median) searches ``make tune``'s own default space for the cnn at its
default fidelity (``--fidelity``, as ``make tune FIDELITY=``) with the same seeded sampler for the same wall-clock
budget, taking turns trial by trial, on a GIC-like subset: ``--classes`` classes of the GIC train split at ``--size``
pixels when ``data/raw/gic-unibuc-dl-2023`` is present, else generated images of the same kind. The subset is small so
that each mode finishes several full-length trials.
Figures go to stdout and ``reports/bench-tune/``.
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from skimage import io, transform  # noqa: E402

from competition import settings  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402

GIC = "gic-unibuc-dl-2023"
CONFIG = """slug = "bench-tune"
image_column = "Image"
label_column = "Class"
image_size = [{size}, {size}]
channels = 3
num_classes = {classes}
[splits.train]
csv = "train.csv"
images = "train_images"
[splits.val]
csv = "val.csv"
images = "val_images"
[splits.test]
csv = "test.csv"
images = "val_images"
"""


def gic_images(classes: int, size: int, rng) -> tuple[list[np.ndarray], list[int], str] | None:
    """The first ``classes`` classes of the GIC train split, resized to ``size``; None when it is not here."""
    raw = settings.raw_dir(GIC)
    if not (raw / "train.csv").exists():
        return None
    frame = pd.read_csv(raw / "train.csv")
    frame = frame[frame["Class"].isin(sorted(frame["Class"].unique())[:classes])]
    images = [transform.resize(io.imread(raw / "train_images" / name)[..., :3], (size, size), anti_aliasing=True,
                               preserve_range=True).astype(np.uint8) for name in frame["Image"]]
    return images, frame["Class"].tolist(), f"GIC train split, {classes} classes, resized to {size}x{size}"


def generated_images(classes: int, per_class: int, size: int, rng) -> tuple[list[np.ndarray], list[int], str]:
    """GIC-like images: each class a smooth random colour texture, each image shifted, rescaled and noisy."""
    images, labels = [], []
    for label in range(classes):
        coarse = rng.uniform(0, 255, size=(4, 4, 3))
        template = transform.resize(coarse, (size * 2, size * 2, 3), order=3)
        for _ in range(per_class):
            dy, dx = rng.integers(0, size, size=2)
            img = template[dy:dy + size, dx:dx + size] * rng.uniform(0.6, 1.2) + rng.normal(0, 40, (size, size, 3))
            images.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(label)
    return images, labels, f"generated GIC-like images, {classes} classes x {per_class}, {size}x{size}"


def write_subset(home: Path, images, labels, classes: int, size: int, seed: int) -> str:
    """Write the subset as a competition (80/20 stratified train/val) under ``home/data/raw/bench-tune``."""
    from sklearn.model_selection import train_test_split

    raw = home / "data" / "raw" / "bench-tune"
    index = np.arange(len(images))
    train_idx, val_idx = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    for split, idx in (("train", train_idx), ("val", val_idx)):
        (raw / f"{split}_images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in idx:
            name = f"{i:05d}.png"
            io.imsave(raw / f"{split}_images" / name, images[i], check_contrast=False)
            rows.append((name, labels[i]))
        pd.DataFrame(rows, columns=["Image", "Class"]).to_csv(raw / f"{split}.csv", index=False)
    pd.read_csv(raw / "val.csv")[["Image"]].to_csv(raw / "test.csv", index=False)  # unused, but configs need one
    (raw / "competition.toml").write_text(CONFIG.format(size=size, classes=classes))
    return "bench-tune"


def run_interleaved(config, dataset, space, pruners: list[str], minutes: float, fidelity) -> list[dict]:
    """One study per pruner, run one trial at a time in turn until each has used ``minutes`` of wall-clock time.

    Taking turns spreads the load of a shared machine evenly over the modes, where running them one after the other
    would let a busy spell fall on one mode only.
    """

    from tuning.search import Search, TuneOptions, run_trials
    from tuning.storage import count_states, load_study

    wall = {p: 0.0 for p in pruners}
    cpu = {p: 0.0 for p in pruners}
    budget = minutes * 60
    while any(wall[p] < budget for p in pruners):
        for pruner in pruners:
            if wall[pruner] >= budget:
                continue
            cpu0, wall0 = time.process_time(), time.perf_counter()
            search = Search(config, space, f"bench-{pruner}", TuneOptions(pruner=pruner), fidelity, None)
            run_trials(search, 1, dataset=dataset)
            wall[pruner] += time.perf_counter() - wall0
            cpu[pruner] += time.process_time() - cpu0
    results = []
    for pruner in pruners:
        study = load_study(f"bench-{pruner}")
        states = count_states(study)
        finished = states.get("complete", 0) + states.get("pruned", 0)
        results.append({
            "pruner": pruner, "wall_seconds": round(wall[pruner], 1), "cpu_seconds": round(cpu[pruner], 1),
            "trials_finished": finished, "complete": states.get("complete", 0), "pruned": states.get("pruned", 0),
            "failed": states.get("fail", 0), "epochs_trained": sum(len(t.intermediate_values) for t in study.trials),
            "trials_per_hour": round(finished / wall[pruner] * 3600, 1),
            "trials_per_cpu_hour": round(finished / cpu[pruner] * 3600, 1),
            "best_val_accuracy": round(study.best_value, 4) if states.get("complete") else None,
            "best_params": study.best_params if states.get("complete") else None,
        })
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="wall-clock budget per mode")
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=130, help="generated images per class")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--fidelity", default="", help="a trial's fidelity, as make tune FIDELITY= (default its own)")
    parser.add_argument("--pruners", nargs="+", default=["sha", "median"],
                        help="the pruners to compare with no pruning")
    parser.add_argument("--space", action="append", default=None,
                        help="search-space overrides, as for make tune SPACE= (default: none)")
    args = parser.parse_args(argv)

    from competition.registry import load_competition
    from pipelines.config import TrainConfig
    from pipelines.data import load_dataset
    from tuning.fidelity import Fidelity, parse_options
    from tuning.space import build_space

    report_dir = settings.home() / "reports" / "bench-tune"
    rng = np.random.default_rng(settings.SEED)
    found = gic_images(args.classes, args.size, rng)
    images, labels, source = found or generated_images(args.classes, args.per_class, args.size, rng)
    previous_home = os.environ.get("KIP_HOME")
    with tempfile.TemporaryDirectory(prefix="bench-tune-") as tmp:
        os.environ["KIP_HOME"] = tmp  # studies, trial runs and best-parameter files stay out of the project
        slug = write_subset(Path(tmp), images, labels, args.classes, args.size, settings.SEED)
        dataset = load_dataset(load_competition(slug), seed=settings.SEED, progress=False)
        print(f"bench-tune: {source}: {len(dataset.train)} train / {len(dataset.val)} val images; "
              f"{args.minutes:g} min per mode, {os.cpu_count()} CPUs", flush=True)
        config = TrainConfig(competition=slug, arch="cnn", verbose=0)
        space = build_space("cnn", args.space or [])
        fidelity = parse_options(args.fidelity, Fidelity, "FIDELITY").resolve(config.minutes)
        results = run_interleaved(config, dataset, space, ["none", *args.pruners], args.minutes, fidelity)
    if previous_home is None:
        os.environ.pop("KIP_HOME")
    else:
        os.environ["KIP_HOME"] = previous_home

    base = results[0]
    for r in results:
        r["speedup"] = round(r["trials_per_hour"] / base["trials_per_hour"], 2) if base["trials_per_hour"] else None
    lines = [f"# bench-tune: {source}", "",
             f"{len(dataset.train)} train / {len(dataset.val)} val images, {args.minutes:g} minutes per mode, "
             f"taking turns trial by trial, cnn, fidelity {fidelity.describe()}, space overrides "
             f"{args.space or 'none'}, peak RSS "
             f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB", "",
             "| pruner | trials/hour | vs none | trials/CPU-hour | finished (complete + pruned) | failed "
             "| epochs trained | best val_accuracy | wall s | CPU s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['pruner']} | {r['trials_per_hour']} | {r['speedup']}x | {r['trials_per_cpu_hour']} "
                     f"| {r['trials_finished']} "
                     f"({r['complete']} + {r['pruned']}) | {r['failed']} | {r['epochs_trained']} | "
                     f"{r['best_val_accuracy']} | {r['wall_seconds']} | {r['cpu_seconds']} |")
    lines.append("")
    for r in results[1:]:
        better = (r["best_val_accuracy"] or 0) >= (base["best_val_accuracy"] or 0)
        lines.append(f"- {r['pruner']}: {r['speedup']}x the trials per hour of no pruning (target >= 2x: "
                     f"{'met' if (r['speedup'] or 0) >= 2 else 'MISSED'}); best score "
                     f"{'equal or better' if better else 'WORSE'} ({r['best_val_accuracy']} vs "
                     f"{base['best_val_accuracy']})")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    write_text(report_dir / "bench-tune.md", text)
    write_json(report_dir / "bench-tune.json", {"source": source, "minutes_per_mode": args.minutes,
                                                "results": results})
    print(f"bench-tune: {report_dir / 'bench-tune.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
