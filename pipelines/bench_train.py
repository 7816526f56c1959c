"""Training throughput, side by side in one process: our training step against a plain Keras ``model.fit``.

The plain side is what a Keras user writes first: the same architecture in float32, standardized float
arrays in memory, batch 64, Adam. Our side is what ``train()`` runs with its defaults: uint8 arrays through
the tf.data pipeline (augmentation and standardization inside), the automatic precision, the default batch
size, AdamW with the warmup-cosine schedule. Both are timed over whole epochs after a warm-up epoch that
absorbs tracing; the rounds alternate so a busy machine hurts both alike.

    python -m pipelines.bench_train [--arch cnn] [--competition SLUG] [--images 3072] [--rounds 2]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

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


def ours(arch: str, x: np.ndarray, y: np.ndarray, num_classes: int, epochs: int = 2) -> tuple[float, str, int]:
    """Images/s of train()'s default training step (after one warm-up epoch)."""
    config = TrainConfig(arch=arch)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="cnn")
    parser.add_argument("--competition", default=None, help="use this competition's images (default: random 64x64)")
    parser.add_argument("--images", type=int, default=3072, help="images per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; the median is reported")
    args = parser.parse_args(argv)
    x, y, num_classes = bench_data(args.competition, args.images)
    print(f"bench-train: {args.arch}, {len(x)} images {x.shape[1:]} per epoch, {num_classes} classes, "
          f"{args.epochs} timed epochs x {args.rounds} rounds, {os.cpu_count()} CPUs")
    plain, fast = [], []
    for round_ in range(1, args.rounds + 1):
        plain.append(plain_keras(args.arch, x, y, num_classes, args.epochs))
        speed, precision, batch = ours(args.arch, x, y, num_classes, args.epochs)
        fast.append(speed)
        print(f"  round {round_}: plain Keras {plain[-1]:7.1f} img/s   ours {fast[-1]:7.1f} img/s")
    p, f = float(np.median(plain)), float(np.median(fast))
    print(f"plain Keras model.fit (float32, float arrays, batch 64, Adam): {p:7.1f} images/s")
    print(f"ours (train() defaults: {precision}, tf.data uint8 + augmentation, batch {batch}, AdamW): "
          f"{f:7.1f} images/s")
    print(f"ratio: {f / p:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
