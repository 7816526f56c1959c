"""The cheap uint8 augmentation and the training batch pipeline."""
import keras
import numpy as np
import tensorflow as tf

from pipelines.config import TrainConfig
from pipelines.inputs import flip_and_shift, make_augmenter


def _batch(n=8, size=6, channels=3):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)


def test_flip_and_shift_keeps_the_batch_uint8_and_each_image_a_mirror_or_shift_of_itself():
    images = _batch()
    out = flip_and_shift(tf.constant(images), "horizontal", 0.2, keras.random.SeedGenerator(1)).numpy()
    assert out.dtype == np.uint8 and out.shape == images.shape
    size, pad = images.shape[1], 1  # round(0.2 * 6)
    for original, augmented in zip(images, out):
        padded = [np.pad(o, ((pad, pad), (pad, pad), (0, 0)), mode="reflect") for o in (original, original[:, ::-1])]
        crops = [p[t:t + size, s:s + size] for p in padded for t in range(2 * pad + 1) for s in range(2 * pad + 1)]
        assert any(np.array_equal(augmented, crop) for crop in crops)


def test_flip_and_shift_changes_some_images_and_none_leaves_them():
    images = _batch(n=32)
    seed = keras.random.SeedGenerator(2)
    assert not np.array_equal(flip_and_shift(tf.constant(images), "horizontal", 0.2, seed).numpy(), images)
    assert np.array_equal(flip_and_shift(tf.constant(images), "none", 0.0, seed).numpy(), images)


def test_vertical_flip_alone_mirrors_rows():
    images = _batch(n=64)
    out = flip_and_shift(tf.constant(images), "vertical", 0.0, keras.random.SeedGenerator(3)).numpy()
    same = [np.array_equal(a, b) for a, b in zip(out, images)]
    mirrored = [np.array_equal(a, b[::-1]) for a, b in zip(out, images)]
    assert all(s or m for s, m in zip(same, mirrored)) and any(mirrored) and any(same)


def test_augmenter_takes_uint8_and_returns_float32_in_pixel_range():
    config = TrainConfig(competition="x", arch="cnn")
    augment = make_augmenter(config, seed=0)
    assert augment is not None
    labels = tf.one_hot([0] * 8, 3)
    images, out_labels = augment(tf.constant(_batch()), labels)
    assert images.dtype == tf.float32 and out_labels.shape == labels.shape
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 255.0
