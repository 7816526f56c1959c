"""``make bench-scale``: folds per hour of one CV on local Dask workers, side by side in one run.

A ``--folds``-fold CV of the cnn for a fixed number of epochs (so every setting does the same work) on a GIC-sized
pool: the real GIC (``data/raw/gic-unibuc-dl-2023``, cached by ``make data``) when it is here, else generated
GIC-like images (100 classes, 64x64, 15000 labelled and 5000 test images). It runs on three local clusters in turn:
1 worker of 1 thread, 2 workers of 1 thread each, 1 worker of 2 threads. Each is timed from sending the arrays to
the last fold written (a worker loads TensorFlow when it joins, before the clock starts). Then a projection
for N machines, each one worker: a CV of F folds takes ``N x send + ceil(F / N) x fold`` seconds, with ``send`` the
measured time to send the arrays to one worker and ``fold`` the measured wall time per fold (sending excluded) of
the last setting (by default the worker that has all of this machine's cores). Figures go to stdout and
``reports/bench-scale/``. A reduced run (to try it, not to measure): fewer, smaller images and settings.

    python -m pipelines.bench_scale [--folds 4] [--epochs 2] [--settings 1x1,2x1,1x2] [--labelled N] [--generated]
                                    [--classes 100 --per-class 150 --test 5000 --size 64]
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from competition import settings  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402
from pipelines import runs  # noqa: E402
from pipelines.data import SplitData  # noqa: E402
from pipelines.folds import Pool, assign_folds, labelled_pool  # noqa: E402

GIC = "gic-unibuc-dl-2023"
SETTINGS = ("1x1", "2x1", "1x2")  # workers x threads
MACHINES = (1, 2, 4, 8, 16)


def generated_pool(classes: int, per_class: int, test: int, size: int, seed: int) -> Pool:
    """GIC-like images: each class a smooth random colour texture, each image a shifted, rescaled, noisy crop."""
    from skimage import transform

    rng = np.random.default_rng(seed)
    templates = [transform.resize(rng.uniform(0, 255, (4, 4, 3)), (2 * size, 2 * size, 3), order=3)
                 for _ in range(classes)]

    def images(labels: np.ndarray) -> np.ndarray:
        out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
        for i, label in enumerate(labels):
            dy, dx = rng.integers(0, size, size=2)
            crop = templates[label][dy:dy + size, dx:dx + size] * rng.uniform(0.6, 1.2)
            out[i] = np.clip(crop + rng.normal(0, 40, (size, size, 3)), 0, 255)
        return out

    labels = np.repeat(np.arange(classes), per_class)
    test_labels = rng.integers(0, classes, test)
    return Pool(ids=[f"{i:05d}.png" for i in range(len(labels))], images=images(labels), labels=labels,
                splits=["train"] * len(labels), classes=list(range(classes)),
                test=SplitData([f"test-{i:05d}.png" for i in range(test)], images(test_labels)))


def subset(pool: Pool, n: int, seed: int) -> Pool:
    """A random ``n`` of the pool's labelled images (the test split kept)."""
    keep = np.sort(np.random.default_rng(seed).permutation(len(pool))[:n])
    return Pool(ids=[pool.ids[i] for i in keep], images=pool.images[keep], labels=pool.labels[keep],
                splits=[pool.splits[i] for i in keep], classes=pool.classes, test=pool.test)


def gic_pool(seed: int) -> Pool | None:
    if not (settings.raw_dir(GIC) / "train.csv").exists():
        return None
    from competition.registry import load_competition
    from pipelines.data import load_dataset

    return labelled_pool(load_dataset(load_competition(GIC), seed=seed, progress=False))


def measure(name: str, pool: Pool, fold_of: np.ndarray, config, slug: str) -> dict:
    """One setting's CV, on a local cluster made for it (not timed) and closed after."""
    from pipelines.cluster import close_client, open_client
    from pipelines.cv import run_remote_folds

    workers, threads = (int(n) for n in name.split("x"))
    client = open_client(None, workers, threads=threads, local=True)
    try:
        client.wait_for_workers(workers)
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            started = time.perf_counter()
            sent = run_remote_folds(client, config, slug, pool, fold_of, list(range(int(fold_of.max()) + 1)),
                                    Path(tmp) / "cv", say=lambda line: print(f"  {name}: {line}", flush=True))
            wall = time.perf_counter() - started
            folds = [runs.read_metrics(path) for path in sorted((Path(tmp) / "cv").glob("fold-*"))]
    finally:
        close_client(client)
    return {"setting": name, "workers": workers, "threads": threads, "folds": len(folds),
            "wall_seconds": round(wall, 1), "folds_per_hour": round(len(folds) / wall * 3600, 2),
            "send_seconds": round(sent["seconds"], 2), "sent_bytes": sent["bytes"],
            "fold_train_seconds": [m["train_seconds"] for m in folds],
            "val_accuracy_mean": round(float(np.mean([m["val_accuracy"] for m in folds])), 4)}


def projection(one_machine: dict, folds: int) -> list[dict]:
    """Folds per hour on N machines like this one (one worker each, all its cores) from its measured costs."""
    send = one_machine["send_seconds"]
    fold = (one_machine["wall_seconds"] - send) / one_machine["folds"]
    rows = []
    for n in MACHINES:
        row = {"machines": n}
        for f in (folds, 4 * folds):
            seconds = n * send + math.ceil(f / n) * fold
            row[f"folds_per_hour_{f}"] = round(f / seconds * 3600, 1)
        rows.append(row)
    return rows


def report(results: list[dict], projected: list[dict], source: str, args) -> str:
    base = results[0]["folds_per_hour"]
    mb = results[0]["sent_bytes"] / 1e6
    lines = [f"# bench-scale: {source}", "",
             f"{args.folds}-fold CV of the cnn, {args.epochs} epoch(s) per fold, {os.cpu_count()} CPUs here; "
             f"{mb:.0f} MB of arrays sent to the workers", "",
             "| workers x threads | wall s | folds/hour | vs 1x1 | send s | fold train s | val_accuracy |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['setting']} | {r['wall_seconds']} | {r['folds_per_hour']} | "
                     f"{r['folds_per_hour'] / base:.2f}x | {r['send_seconds']} | "
                     f"{', '.join(f'{s:.0f}' for s in r['fold_train_seconds'])} | {r['val_accuracy_mean']} |")
    f1, f4 = args.folds, 4 * args.folds
    lines += ["", f"Projection for N machines like this one (one worker of all its cores each): "
              f"N x send + ceil(F / N) x fold seconds, from the {results[-1]['setting']} row "
              f"(at 1 Gbit/s the arrays would take {mb / 125:.1f} s per worker)", "",
              f"| machines | folds/hour, CV of {f1} folds | folds/hour, {f4} folds queued |", "|---|---|---|"]
    lines += [f"| {p['machines']} | {p[f'folds_per_hour_{f1}']} | {p[f'folds_per_hour_{f4}']} |" for p in projected]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per fold (a fixed amount of work)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=150, help="generated labelled images per class")
    parser.add_argument("--test", type=int, default=5000, help="generated test images")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--labelled", type=int, default=None, help="a random subset of this many labelled images")
    parser.add_argument("--generated", action="store_true", help="generated images even when GIC is here")
    parser.add_argument("--settings", default=",".join(SETTINGS), help="workers x threads, comma-separated")
    args = parser.parse_args(argv)

    from pipelines.config import TrainConfig

    pool = None if args.generated else gic_pool(settings.SEED)
    source = f"GIC, {len(pool)} labelled images" if pool else (
        f"generated GIC-like images, {args.classes} classes x {args.per_class}, {args.test} test, "
        f"{args.size}x{args.size}")
    pool = pool or generated_pool(args.classes, args.per_class, args.test, args.size, settings.SEED)
    if args.labelled and args.labelled < len(pool):
        pool = subset(pool, args.labelled, settings.SEED)
        source += f", a random {args.labelled} of them"
    fold_of = assign_folds(pool, args.folds, settings.SEED)
    config = TrainConfig(competition="bench-scale", arch="cnn", epochs=args.epochs, minutes=0, verbose=0)
    names = [name.strip() for name in args.settings.split(",") if name.strip()]
    print(f"bench-scale: {source}; {args.folds} folds x {args.epochs} epoch(s); settings {', '.join(names)} "
          f"(workers x threads)", flush=True)
    results = [measure(name, pool, fold_of, config, "bench-scale") for name in names]
    projected = projection(results[-1], args.folds)
    text = report(results, projected, source, args)
    print("\n" + text)
    out = settings.home() / "reports" / "bench-scale"
    write_text(out / "bench-scale.md", text)
    write_json(out / "bench-scale.json", {"source": source, "folds": args.folds, "epochs": args.epochs,
                                          "results": results, "projection": projected})
    print(f"bench-scale: {out / 'bench-scale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
