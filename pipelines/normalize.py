"""StandardScaler statistics fitted on the training split, stored as .npz, applied in the input pipeline."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.preprocessing import StandardScaler

from competition.errors import PipelineError
from competition.fileio import atomic_path

MODES = ("pixel", "channel")


@dataclass
class Standardizer:
    """Per-feature mean and scale with the image's shape (``pixel``) or one per channel (``channel``)."""

    mean: np.ndarray
    scale: np.ndarray
    mode: str = "pixel"

    def apply(self, images: np.ndarray) -> np.ndarray:
        """Standardize a batch of images (N, H, W, C) to float32."""
        return ((images.astype(np.float32) - self.mean) / self.scale).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, mean=self.mean, scale=self.scale, mode=np.array(self.mode))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Standardizer:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(mean=data["mean"], scale=data["scale"], mode=str(data["mode"]))
        except FileNotFoundError:
            raise PipelineError(f"{path}: normalization statistics missing; retrain the run") from None


CHUNK_BYTES = 64 * 2**20  # float64 working memory per chunk


def fit_standardizer(images: np.ndarray, mode: str = "pixel", chunk_size: int | None = None) -> Standardizer:
    """Fit scikit-learn's StandardScaler on training images, chunk by chunk so memory stays bounded.

    ``images`` may be a memory-mapped uint8 array: only one chunk at a time becomes float64
    (``chunk_size`` images; by default as many as fit in 64 MiB).
    """
    if mode not in MODES:
        raise PipelineError(f"normalization '{mode}' unknown; use one of {', '.join(MODES)}")
    shape = images.shape[1:]
    if chunk_size is None:
        chunk_size = max(1, CHUNK_BYTES // (int(np.prod(shape)) * 8))
    scaler = StandardScaler()
    for start in range(0, len(images), chunk_size):
        chunk = images[start:start + chunk_size].astype(np.float64)
        scaler.partial_fit(chunk.reshape(-1, shape[-1]) if mode == "channel" else chunk.reshape(len(chunk), -1))
    stat_shape = (1, 1, shape[-1]) if mode == "channel" else shape
    mean = scaler.mean_.reshape(stat_shape).astype(np.float32)
    scale = scaler.scale_.reshape(stat_shape).astype(np.float32)
    return Standardizer(mean=mean, scale=scale, mode=mode)
