"""Training throughput, side by side in one process, for each architecture:

- plain Keras: what a Keras user writes first: float32, standardized float arrays in memory, batch 64, Adam;
- ours: what ``train()`` runs with its defaults: uint8 arrays through the tf.data pipeline (augmentation and
  standardization inside), the automatic precision, batch 128, AdamW with the warmup-cosine schedule;
- ours, no augmentation: the same step without augmentation (what the PyTorch column does);
- PyTorch bf16: the same network in PyTorch with bf16 autocast and channels-last (``pipelines.bench_torch``), the
  peer a timm or fastai user gets; left out when PyTorch is not installed (``pip install -e '.[bench]'``).

Each is timed over whole epochs after a warm-up epoch that absorbs tracing; the rounds alternate so a busy machine
hurts all alike. An epoch is 9216 images (72 steps of 128, about a GIC epoch), the epoch a real run pays for, its
start and the pipeline's ramp-up included. The medians go to stdout and ``reports/bench-train.md``/``.json``.

    python -m pipelines.bench_train [--arch cnn resnet10] [--competition SLUG] [--images 9216] [--epochs 1] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import time

from pipelines.quiet import import_tensorflow

import_tensorflow()
import keras  # noqa: E402
import numpy as np  # noqa: E402

from competition import settings  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402
from pipelines import bench_torch  # noqa: E402
from pipelines.config import TrainConfig  # noqa: E402
from pipelines.inputs import label_targets, make_augmenter, make_tf_dataset  # noqa: E402
from pipelines.models import build_model  # noqa: E402
from pipelines.normalize import fit_standardizer  # noqa: E402
from pipelines.recipe import build_for_training, resolve_precision  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    """Wall time of each epoch."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)


def bench_data(competition: str | None, images: int, seed: int = 0):
    """``images`` training images: the competition's, or random 64x64 RGB ones with 100 classes."""
    if competition:
        from competition.registry import load_competition
        from pipelines.data import load_dataset

        data = load_dataset(load_competition(competition), seed=seed).train
        n = min(images, len(data))
        return data.images[:n], data.labels[:n], int(data.labels.max()) + 1
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (images, 64, 64, 3), dtype=np.uint8),
            rng.integers(0, 100, images), 100)


def plain_keras(arch: str, x: np.ndarray, y: np.ndarray, num_classes: int, epochs: int = 2) -> float:
    """Images/s of float32 ``model.fit`` on standardized arrays, batch 64, Adam 1e-3 (after one warm-up epoch)."""
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(0)
    model = build_model(arch, x.shape[1:], num_classes, fused_batchnorm=False)  # Keras's own layers
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    floats = fit_standardizer(x).apply(x)
    timer = EpochTimer()
    model.fit(floats, y, batch_size=64, epochs=epochs + 1, verbose=0, callbacks=[timer])
    keras.backend.clear_session()
    return len(x) // 64 * 64 * epochs / sum(timer.seconds[1:])


def ours(arch: str, x: np.ndarray, y: np.ndarray, num_classes: int, epochs: int = 2,
         augment: bool = True) -> tuple[float, str, int]:
    """Images/s of train()'s default training step (after one warm-up epoch); ``augment=False`` leaves it out."""
    config = TrainConfig(arch=arch, augment="standard" if augment else "none")
    precision = resolve_precision(config.precision)
    steps = len(x) // config.batch_size
    keras.utils.set_random_seed(0)
    model, _ = build_for_training(config, x.shape[1:], num_classes, steps, precision)
    ds = make_tf_dataset(x, label_targets(y, num_classes), fit_standardizer(x), config.batch_size, shuffle_seed=0,
                         augment=make_augmenter(config))
    timer = EpochTimer()
    model.fit(ds, epochs=epochs + 1, verbose=0, shuffle=False, callbacks=[timer])
    keras.backend.clear_session()
    return steps * config.batch_size * epochs / sum(timer.seconds[1:]), precision, config.batch_size


COLUMNS = ("plain Keras fp32", "ours", "ours, no augmentation", "PyTorch bf16")


def measure(arch: str, x, y, num_classes: int, epochs: int, rounds: int) -> dict[str, float]:
    """Median images/s of each column for ``arch``, the rounds alternating."""
    runs = {name: [] for name in COLUMNS if name != "PyTorch bf16" or bench_torch.available()}
    for round_ in range(1, rounds + 1):
        runs["plain Keras fp32"].append(plain_keras(arch, x, y, num_classes, epochs))
        runs["ours"].append(ours(arch, x, y, num_classes, epochs)[0])
        runs["ours, no augmentation"].append(ours(arch, x, y, num_classes, epochs, augment=False)[0])
        if "PyTorch bf16" in runs:
            runs["PyTorch bf16"].append(bench_torch.images_per_second(arch, x, y, num_classes, epochs))
        print(f"  {arch} round {round_}: " + "   ".join(f"{k} {v[-1]:.1f}" for k, v in runs.items()), flush=True)
    return {name: float(np.median(values)) for name, values in runs.items()}


def table(results: dict[str, dict[str, float]]) -> list[str]:
    """A markdown table: images/s per column and the ratios that matter."""
    lines = ["| arch | " + " | ".join(COLUMNS) + " | ours / plain | ours / PyTorch | step / PyTorch |",
             "|---" * (len(COLUMNS) + 4) + "|"]
    for arch, r in results.items():
        torch = r.get("PyTorch bf16")
        cells = [f"{r[c]:.1f}" if c in r else "-" for c in COLUMNS]
        ratios = [f"{r['ours'] / r['plain Keras fp32']:.2f}x",
                  f"{r['ours'] / torch:.2f}x" if torch else "-",
                  f"{r['ours, no augmentation'] / torch:.2f}x" if torch else "-"]
        lines.append(f"| {arch} | " + " | ".join(cells + ratios) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=["cnn", "resnet10"])
    parser.add_argument("--competition", default=None, help="use this competition's images (default: random 64x64)")
    parser.add_argument("--images", type=int, default=9216, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=1, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported")
    args = parser.parse_args(argv)
    x, y, num_classes = bench_data(args.competition, args.images)
    print(f"bench-train: {', '.join(args.arch)}; {len(x)} images {x.shape[1:]} per epoch, {num_classes} classes, "
          f"{args.epochs} timed epochs x {args.rounds} rounds, {os.cpu_count()} CPUs, precision "
          f"{resolve_precision('auto')}", flush=True)
    results = {arch: measure(arch, x, y, num_classes, args.epochs, args.rounds) for arch in args.arch}
    lines = table(results)
    print("\n".join(["", "training images/s (medians):", *lines]))
    out = settings.home() / "reports"
    write_json(out / "bench-train.json", {"images": len(x), "shape": list(x.shape[1:]), "classes": num_classes,
                                          "epochs": args.epochs, "rounds": args.rounds, "images_per_second": results})
    write_text(out / "bench-train.md", "# bench-train\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
