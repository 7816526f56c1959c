"""``make bench-load``: how fast images load, ours against a plain skimage loop, on a reference-sized set.

Generates once (outside git, in ``data/bench/``) 20000 RGB 64x64 PNGs in the CSV layout, then in one run:
images/s of a plain sequential ``skimage.io.imread`` loop, of our cold load (decode + cache write,
cache removed first), and the time of our cached reload. Targets on 2 cores: cold >= 1.8x the plain
loop; cached reload of 20000 images <= 1 s. Prints the figures and writes them to
``reports/bench-load.json``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from competition import settings
from competition.config import Competition, Split
from competition.fileio import atomic_dir, write_json

COLD_TARGET = 1.8
RELOAD_TARGET_S = 1.0


def bench_set(count: int = 20000, size: int = 64, classes: int = 100, seed: int = 0) -> Competition:
    """The benchmark competition under ``data/bench/load-<count>/``, generated on first use."""
    from skimage import io

    folder = settings.home() / "data" / "bench" / f"load-{count}-{size}"
    competition = Competition(slug=f"bench-load-{count}-{size}", source="local", data_dir=str(folder),
                              sample_submission=None, layout="csv",
                              splits={"train": Split(csv="train.csv", images="train_images")})
    if (folder / "train.csv").exists():
        return competition
    rng = np.random.default_rng(seed)
    with atomic_dir(folder) as tmp:
        (tmp / "train_images").mkdir()
        rows = []
        for i in tqdm(range(count), desc="generate bench PNGs", unit="img"):
            # smooth colour fields plus noise: files of about the size of real generated 64x64 images
            coarse = rng.random((8, 8, 3)) * 200
            image = np.kron(coarse, np.ones((size // 8, size // 8, 1))) + rng.normal(0, 12, (size, size, 3))
            name = f"{i:05d}.png"
            io.imsave(tmp / "train_images" / name, np.clip(image, 0, 255).astype(np.uint8), check_contrast=False)
            rows.append((name, i % classes))
        pd.DataFrame(rows, columns=["Image", "Class"]).to_csv(tmp / "train.csv", index=False)
    return competition


def run(count: int = 20000, workers: int | None = None) -> dict:
    """Measure the three figures on the benchmark set; return them."""
    from skimage import io

    from pipelines.cache import available_cores
    from pipelines.data import cache_root, list_split, load_split_cached

    competition = bench_set(count)
    paths = list_split(competition, "train").paths
    figures = {"images": len(paths), "cores": available_cores(), "workers": workers or available_cores(),
               "load_average_before": os.getloadavg()}

    started = time.perf_counter()
    for path in tqdm(paths, desc="plain skimage.io.imread loop", unit="img", leave=False):
        io.imread(path)
    plain = time.perf_counter() - started
    figures["plain_loop_images_per_s"] = len(paths) / plain

    shutil.rmtree(cache_root(competition), ignore_errors=True)
    started = time.perf_counter()
    cold = load_split_cached(competition, "train", workers=workers)
    cold_s = time.perf_counter() - started
    assert cold.decoded and cold.images.shape[0] == len(paths)
    figures["cold_load_images_per_s"] = len(paths) / cold_s
    figures["cold_vs_plain"] = figures["cold_load_images_per_s"] / figures["plain_loop_images_per_s"]

    started = time.perf_counter()
    warm = load_split_cached(competition, "train", workers=workers)
    figures["cached_reload_s"] = time.perf_counter() - started
    assert not warm.decoded
    started = time.perf_counter()
    checksum = int(np.asarray(warm.images).sum(dtype=np.uint64))  # touch every page of the memory map
    figures["cached_read_all_pixels_s"] = time.perf_counter() - started
    figures["pixels_match"] = bool(np.array_equal(warm.images[-1], io.imread(paths[-1]))) and checksum > 0
    figures["load_average_after"] = os.getloadavg()
    figures["cold_target_met"] = figures["cold_vs_plain"] >= COLD_TARGET
    figures["reload_target_met"] = figures["cached_reload_s"] <= RELOAD_TARGET_S
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_load", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes (default: available cores)")
    args = parser.parse_args(argv)
    f = run(args.count, args.workers)
    print(f"bench-load: {f['images']} RGB 64x64 PNGs, {f['cores']} cores, {f['workers']} workers, "
          f"load average before {f['load_average_before'][0]:.2f} after {f['load_average_after'][0]:.2f}")
    print(f"  plain skimage.io.imread loop: {f['plain_loop_images_per_s']:8.0f} images/s")
    print(f"  our cold load (decode+cache): {f['cold_load_images_per_s']:8.0f} images/s = {f['cold_vs_plain']:.2f}x "
          f"the plain loop (target >= {COLD_TARGET}x: {'met' if f['cold_target_met'] else 'MISSED'})")
    print(f"  our cached reload:            {f['cached_reload_s']:8.3f} s (target <= {RELOAD_TARGET_S} s: "
          f"{'met' if f['reload_target_met'] else 'MISSED'}); reading every pixel of it: "
          f"{f['cached_read_all_pixels_s']:.3f} s")
    path = write_json(settings.home() / "reports" / f"bench-load-{f['images']}.json", f)
    print(f"  figures: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
