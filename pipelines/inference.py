"""Class probabilities of a model for uint8 images, in batches through the same input pipeline as training."""
from __future__ import annotations

import numpy as np

from pipelines.inputs import make_tf_dataset
from pipelines.normalize import Standardizer


def predict_probabilities(model, images, standardizer: Standardizer, batch_size: int = 256,
                          tta: bool = False) -> np.ndarray:
    """Class probabilities (N, num_classes), also for a one-unit sigmoid model; ``tta`` averages in the
    horizontally flipped images."""
    def run(batch_images):
        ds = make_tf_dataset(batch_images, None, standardizer, batch_size)
        return np.asarray(model.predict(ds, verbose=0), dtype=np.float64)

    probs = run(images)
    if tta:
        probs = (probs + run(np.ascontiguousarray(images[:, :, ::-1]))) / 2
    if probs.shape[-1] == 1:
        probs = np.concatenate([1.0 - probs, probs], axis=1)
    return probs
