"""Whitening initialisation of a network's first convolution (``SET="whiten=true"``; airbench, Jordan 2024).

The first convolution's filters start as the eigenvectors of the training images' patch covariance, each scaled by
one over the square root of its eigenvalue (so every filter's output has unit variance on the training images)
and paired with its negation (so a ReLU after it keeps both signs). The first layer then sees decorrelated patches
from the first step, instead of learning that transform out of a random start. The filters stay trainable.
"""
from __future__ import annotations

import keras
import numpy as np

from competition.errors import PipelineError
from pipelines.normalize import Standardizer

EPSILON = 5e-4  # added to the eigenvalues, as airbench does: the flattest directions are not blown up
MAX_IMAGES = 2048
PATCHES_PER_IMAGE = 64


def first_conv(model: keras.Model) -> keras.layers.Conv2D:
    """The convolution that reads the model's input images; an error when the input goes elsewhere first."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.input is model.inputs[0]:
            return layer
    raise PipelineError(f"whiten=true: {model.name} does not start with a convolution on the images; it works for "
                        f"cnn and resnet10 (leave whiten off for this architecture)")


def patch_whitening(images: np.ndarray, standardizer: Standardizer, kernel_size: tuple[int, int],
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (largest first) and whitening filters ``(kh, kw, channels, kh*kw*channels)`` of the standardized
    ``images``' patches, sampled at random positions of at most ``MAX_IMAGES`` images."""
    kh, kw = kernel_size
    rng = np.random.default_rng(seed)
    count = min(len(images), MAX_IMAGES)
    chosen = np.sort(rng.choice(len(images), size=count, replace=False))
    x = standardizer.apply(np.asarray(images[chosen]))
    n, h, w, c = x.shape
    if h < kh or w < kw:
        raise PipelineError(f"whiten=true: images of {h}x{w} are smaller than the first kernel ({kh}x{kw})")
    rows = rng.integers(0, h - kh + 1, size=(n, PATCHES_PER_IMAGE))
    cols = rng.integers(0, w - kw + 1, size=(n, PATCHES_PER_IMAGE))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # (n, h', w', c, kh, kw), a view
    # (n, patches, kh, kw, c): the order of a Keras kernel's first three axes
    patches = windows[np.arange(n)[:, None], rows, cols].transpose(0, 1, 3, 4, 2).reshape(-1, kh * kw * c)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(patches, rowvar=False, bias=True))
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]  # eigh gives them in ascending order
    filters = eigenvectors / np.sqrt(eigenvalues + EPSILON)
    return eigenvalues, filters.reshape(kh, kw, c, kh * kw * c)


def whiten_first_conv(model: keras.Model, images: np.ndarray, standardizer: Standardizer, seed: int = 0) -> int:
    """Set the first convolution's leading filters to whitening filters and their negations (the directions with
    the largest variance first, as many pairs as the layer has room for); returns how many filters were set."""
    layer = first_conv(model)
    kernel = layer.kernel
    kh, kw, _, out = kernel.shape
    _, filters = patch_whitening(images, standardizer, (kh, kw), seed=seed)
    pairs = min(filters.shape[-1], out // 2)
    if pairs == 0:
        raise PipelineError(f"whiten=true: {layer.name} has {out} filter(s); whitening needs at least 2")
    values = np.array(keras.ops.convert_to_numpy(kernel.value), dtype=np.float32)
    values[..., :pairs] = filters[..., :pairs]
    values[..., pairs:2 * pairs] = -filters[..., :pairs]
    kernel.assign(values)
    return 2 * pairs
