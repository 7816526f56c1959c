"""The input pipeline: augmentation with Keras preprocessing layers and uint8 arrays -> ``tf.data`` batches."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from pipelines.config import TrainConfig
from pipelines.normalize import Standardizer


def flip_and_shift(images, flip: str, shift: float, seed_generator):
    """Random mirror images and whole-pixel shifts (up to ``shift`` of the size, edges reflected) of a uint8 batch.

    Hand-written because Keras's RandomFlip and RandomTranslation work on float32 and translate by projective
    transforms with interpolation for every pixel: on a 2-core CPU that augmentation took about 15% of a training
    step. Whole-pixel shifts are two gathers on the uint8 batch."""
    batch = tf.shape(images)[0]
    if flip != "none":
        for axis, name in ((2, "horizontal"), (1, "vertical")):
            if name in flip:
                mirror = keras.random.uniform([batch], seed=seed_generator) < 0.5
                images = tf.where(mirror[:, None, None, None], tf.reverse(images, [axis]), images)
    if shift:
        height, width = images.shape[1], images.shape[2]
        pad_h, pad_w = max(1, round(shift * height)), max(1, round(shift * width))
        padded = tf.pad(images, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]], mode="REFLECT")
        top = keras.random.randint([batch], 0, 2 * pad_h + 1, seed=seed_generator)
        left = keras.random.randint([batch], 0, 2 * pad_w + 1, seed=seed_generator)
        rows = top[:, None] + tf.range(height)[None, :]
        cols = left[:, None] + tf.range(width)[None, :]
        images = tf.gather(tf.gather(padded, rows, axis=1, batch_dims=1), cols, axis=2, batch_dims=1)
    return images


def make_augmenter(config: TrainConfig, seed: int = 0):
    """The augmentation of a training batch: uint8 images (and one-hot labels) in, float32 images in 0..255 out;
    None when there is none. Mirror and shifts on the uint8 batch (``flip_and_shift``), then Keras's preprocessing
    layers for rotation, zoom and brightness, then MixUp or CutMix."""
    aug = config.augmentation()
    pipeline = []
    if aug["rotation"]:
        pipeline.append(keras.layers.RandomRotation(aug["rotation"] / 360.0, fill_mode="reflect", seed=seed + 1,
                                                    dtype="float32"))
    if aug["zoom"]:
        pipeline.append(keras.layers.RandomZoom(aug["zoom"], fill_mode="reflect", seed=seed + 2, dtype="float32"))
    if aug["brightness"]:
        pipeline.append(keras.layers.RandomBrightness(aug["brightness"], value_range=(0, 255), seed=seed + 4,
                                                      dtype="float32"))
    mixers = []
    if aug["mixup"]:
        mixers.append(keras.layers.MixUp(alpha=aug["mixup"], seed=seed + 5, dtype="float32"))
    if aug["cutmix"]:
        mixers.append(keras.layers.CutMix(factor=aug["cutmix"], seed=seed + 6, dtype="float32"))
    cheap = aug["flip"] != "none" or aug["translation"]
    if not pipeline and not mixers and not cheap:
        return None
    geometric = keras.Sequential(pipeline, name="augment") if pipeline else None
    seed_generator = keras.random.SeedGenerator(seed)

    def augment(images, labels):
        if cheap:
            images = flip_and_shift(images, aug["flip"], aug["translation"], seed_generator)
        images = tf.cast(images, tf.float32)
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
                    augment=None, resize=None):
    """uint8 arrays -> batched, (augmented,) standardized, prefetched ``tf.data.Dataset``.

    ``targets`` None gives images only, in order (prediction). With ``shuffle_seed`` the order is reshuffled every
    epoch and only whole batches are kept (training; a set smaller than one batch is one batch). Augmentation runs
    on whole batches in 0..255, before the standardization, in parallel with training; ``resize`` (progressive
    resizing, ``pipelines.resize.resize_batch``) after it, since the standardization is per pixel of the full size.
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
        x, y = augment(x, y) if augment is not None else (tf.cast(x, tf.float32), y)
        x = (tf.cast(x, tf.float32) - mean) / scale
        return resize(x, y) if resize is not None else (x, y)

    return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
