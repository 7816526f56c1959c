import json

import keras
import numpy as np
import pytest

from competition.errors import PipelineError
from pipelines.config import TrainConfig
from pipelines.models import build_cnn, build_mobilenetv2, build_resnet10
from pipelines.normalize import fit_standardizer
from pipelines.train import train
from pipelines.whitening import EPSILON, first_conv, patch_whitening, whiten_first_conv


def smooth_images(count=64, size=16, channels=3, seed=0):
    """uint8 images whose neighbouring pixels and channels are correlated, as in photographs."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(count, size + 2, size + 2, 1)) + 0.3 * rng.normal(size=(count, size + 2, size + 2,
                                                                                      channels))
    blurred = sum(noise[:, i:i + size, j:j + size] for i in range(3) for j in range(3))
    return np.clip(128 + 20 * blurred, 0, 255).astype(np.uint8)


def test_the_filters_whiten_the_training_patches():
    images = smooth_images()
    standardizer = fit_standardizer(images)
    eigenvalues, filters = patch_whitening(images, standardizer, (3, 3), seed=1)
    assert filters.shape == (3, 3, 3, 27) and np.all(np.diff(eigenvalues) <= 0)  # largest variance first
    # the same patches again, all of them: through the filters, unit variance and no correlation
    x = standardizer.apply(images)
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # (n, h, w, c, 3, 3)
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 27)
    out = (patches - patches.mean(axis=0)) @ filters.reshape(27, 27)
    covariance = np.cov(out, rowvar=False)
    strong = eigenvalues > 100 * EPSILON
    assert strong.sum() >= 10
    np.testing.assert_allclose(np.diag(covariance)[strong], 1.0, atol=0.1)
    off = covariance[np.ix_(strong, strong)] - np.diag(np.diag(covariance)[strong])
    assert np.abs(off).max() < 0.1


def test_the_first_convolution_gets_whitening_pairs_and_keeps_its_other_filters():
    images = smooth_images()
    model = build_cnn((16, 16, 3), num_classes=4)
    before = keras.ops.convert_to_numpy(model.get_layer("block1_conv").kernel.value).copy()
    assert first_conv(model).name == "block1_conv"
    assert whiten_first_conv(model, images, fit_standardizer(images)) == 54  # 27 directions and their negations
    after = keras.ops.convert_to_numpy(model.get_layer("block1_conv").kernel.value)
    np.testing.assert_allclose(after[..., 27:54], -after[..., :27])
    np.testing.assert_array_equal(after[..., 54:], before[..., 54:])
    assert not np.allclose(after[..., :54], before[..., :54])


def test_a_narrow_first_convolution_keeps_the_largest_directions():
    images = smooth_images()
    model = build_resnet10((16, 16, 3), num_classes=4, width_multiplier=0.125)  # an 8-filter stem
    standardizer = fit_standardizer(images)
    assert first_conv(model).name == "stem_conv"
    assert whiten_first_conv(model, images, standardizer) == 8
    _, filters = patch_whitening(images, standardizer, (3, 3))
    kernel = keras.ops.convert_to_numpy(model.get_layer("stem_conv").kernel.value)
    np.testing.assert_allclose(kernel[..., :4], filters[..., :4], rtol=1e-5)


def test_a_model_without_a_first_convolution_is_refused():
    model = build_mobilenetv2((32, 32, 3), num_classes=3)
    with pytest.raises(PipelineError, match="whiten=true"):
        first_conv(model)
    assert any(p.startswith("whiten=") for p in TrainConfig(arch="mobilenetv2", whiten=True).problems())


def test_a_run_with_whitening_trains_and_records_it(tiny):
    result = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, verbose=0, whiten=True))
    assert json.loads((result.run_dir / "config.json").read_text())["whiten"] is True
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0
