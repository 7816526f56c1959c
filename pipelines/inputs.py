"""The input pipeline: augmentation with Keras preprocessing layers and uint8 arrays -> ``tf.data`` batches."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from pipelines.config import TrainConfig
from pipelines.normalize import Standardizer


def make_augmenter(config: TrainConfig, seed: int = 0):
    """Keras preprocessing layers for a batch of float images in 0..255 (and one-hot labels), or None."""
    aug = config.augmentation()
    pipeline = []
    if aug["flip"] != "none":
        pipeline.append(keras.layers.RandomFlip(aug["flip"], seed=seed, dtype="float32"))
    if aug["rotation"]:
        pipeline.append(keras.layers.RandomRotation(aug["rotation"] / 360.0, fill_mode="reflect", seed=seed + 1,
                                                    dtype="float32"))
    if aug["zoom"]:
        pipeline.append(keras.layers.RandomZoom(aug["zoom"], fill_mode="reflect", seed=seed + 2, dtype="float32"))
    if aug["translation"]:
        pipeline.append(keras.layers.RandomTranslation(aug["translation"], aug["translation"], fill_mode="reflect",
                                                       seed=seed + 3, dtype="float32"))
    if aug["brightness"]:
        pipeline.append(keras.layers.RandomBrightness(aug["brightness"], value_range=(0, 255), seed=seed + 4,
                                                      dtype="float32"))
    mixers = []
    if aug["mixup"]:
        mixers.append(keras.layers.MixUp(alpha=aug["mixup"], seed=seed + 5, dtype="float32"))
    if aug["cutmix"]:
        mixers.append(keras.layers.CutMix(factor=aug["cutmix"], seed=seed + 6, dtype="float32"))
    if not pipeline and not mixers:
        return None
    geometric = keras.Sequential(pipeline, name="augment") if pipeline else None

    def augment(images, labels):
        if geometric is not None:
            images = geometric(images, training=True)
        if mixers:
            def mix(layer):
                out = layer({"images": images, "labels": labels}, training=True)
                return out["images"], out["labels"]
            if len(mixers) == 1:
                images, labels = mix(mixers[0])
            else:  # mixup or cutmix, one of them per batch
                images, labels = tf.cond(tf.random.uniform([], seed=seed) < 0.5,
                                         lambda: mix(mixers[0]), lambda: mix(mixers[1]))
        return images, labels

    return augment


def label_targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids -> training targets: one float column for two classes (the sigmoid unit), else one-hot (what label
    smoothing, mixup and cutmix need)."""
    if num_classes == 2:
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[labels]


def make_tf_dataset(images, targets, standardizer: Standardizer, batch_size: int, shuffle_seed: int | None = None,
                    augment=None):
    """uint8 arrays -> batched, (augmented,) standardized, prefetched ``tf.data.Dataset``.

    ``targets`` None gives images only, in order (prediction). With ``shuffle_seed`` the order is reshuffled every
    epoch and only whole batches are kept (training; a set smaller than one batch is one batch). Augmentation runs
    on whole batches in 0..255, before the standardization, in parallel with training.
    """
    mean = tf.constant(standardizer.mean, tf.float32)
    scale = tf.constant(standardizer.scale, tf.float32)
    if targets is None:
        normalize = lambda x: (tf.cast(x, tf.float32) - mean) / scale
        ds = tf.data.Dataset.from_tensor_slices(images)
        return ds.batch(batch_size).map(normalize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    if shuffle_seed is not None:
        ds = ds.shuffle(len(images), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=shuffle_seed is not None and len(images) >= batch_size)

    def prepare(x, y):
        x = tf.cast(x, tf.float32)
        if augment is not None:
            x, y = augment(x, y)
        return (x - mean) / scale, y

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
