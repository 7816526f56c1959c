import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from competition.errors import PipelineError
from pipelines.normalize import Standardizer, fit_standardizer


def test_pixel_statistics_match_a_plain_standard_scaler_in_chunks():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 8, 8, 3), dtype=np.uint8)
    std = fit_standardizer(images, mode="pixel", chunk_size=7)
    ref = StandardScaler().fit(images.reshape(50, -1).astype(np.float64))
    np.testing.assert_allclose(std.mean.ravel(), ref.mean_, rtol=1e-5)
    np.testing.assert_allclose(std.scale.ravel(), ref.scale_, rtol=1e-5)
    out = std.apply(images)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(50, -1).mean(axis=0), 0, atol=1e-4)


def test_channel_mode_and_npz_roundtrip_without_pickle(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, size=(10, 4, 4, 3), dtype=np.uint8)
    std = fit_standardizer(images, mode="channel")
    assert std.mean.shape == (1, 1, 3)
    path = std.save(tmp_path / "norm.npz")
    back = Standardizer.load(path)
    assert back.mode == "channel"
    np.testing.assert_array_equal(back.mean, std.mean)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"mean", "scale", "mode"}


def test_constant_pixels_do_not_divide_by_zero():
    images = np.zeros((5, 2, 2, 1), np.uint8)
    assert np.isfinite(fit_standardizer(images).apply(images)).all()


def test_unknown_mode_is_refused():
    with pytest.raises(PipelineError, match="unknown"):
        fit_standardizer(np.zeros((2, 2, 2, 1), np.uint8), mode="global")


def test_memory_mapped_images_are_fitted_in_bounded_chunks(tmp_path, monkeypatch):
    images = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.uint8, shape=(40, 6, 6, 3))
    images[:] = np.random.default_rng(2).integers(0, 256, size=images.shape, dtype=np.uint8)
    images.flush()
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")
    import pipelines.normalize as normalize

    monkeypatch.setattr(normalize, "CHUNK_BYTES", 6 * 6 * 3 * 8 * 7)  # 7 images per chunk
    seen = []
    real = StandardScaler.partial_fit
    monkeypatch.setattr(StandardScaler, "partial_fit", lambda self, X, *a, **k: (seen.append(len(X)), real(self, X))[1])
    std = fit_standardizer(mapped, mode="channel")
    assert max(seen) == 7 * 36 and len(seen) == 6
    ref = StandardScaler().fit(np.asarray(mapped, np.float64).reshape(-1, 3))
    np.testing.assert_allclose(std.mean.ravel(), ref.mean_, rtol=1e-6)
    np.testing.assert_allclose(std.scale.ravel(), ref.scale_, rtol=1e-6)
