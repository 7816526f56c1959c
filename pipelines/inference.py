"""Class probabilities of a model for uint8 images, with test-time augmentation (TTA) chosen on validation.

A TTA choice is a list of views whose probabilities are averaged. The views, in this order: the image itself,
its horizontal mirror, then shifts by about 3% of the size to the 8 neighbouring positions (right, left, down, up,
then the diagonals down-right, down-left, up-right, up-left; edges reflected).

    none        identity
    flip        identity, mirror
    shift       identity, 8 shifts
    flip+shift  identity, mirror, 8 shifts, 8 mirrored shifts
"""
from __future__ import annotations

import numpy as np

from pipelines.inputs import make_tf_dataset
from pipelines.normalize import Standardizer

SHIFTS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0),
          "down-right": (1, 1), "down-left": (1, -1), "up-right": (-1, 1), "up-left": (-1, -1)}  # (rows, columns)
TTA_CHOICES = {
    "none": ("identity",),
    "flip": ("identity", "mirror"),
    "shift": ("identity", *SHIFTS),
    "flip+shift": ("identity", "mirror", *SHIFTS, *(f"mirror-{name}" for name in SHIFTS)),
}
SHIFT_FRACTION = 0.03


def views_of(choices, views: dict[str, tuple] = TTA_CHOICES) -> set[str]:
    """Every view the TTA ``choices`` need, each once (``views``: each choice's views)."""
    return {v for choice in choices for v in views[choice]}


def view(images: np.ndarray, name: str) -> np.ndarray:
    """One TTA view of uint8 images (N, H, W, C): ``identity``, ``mirror``, a shift (``right`` ...) or both."""
    if name == "identity":
        return images
    if name.startswith("mirror"):
        images = np.ascontiguousarray(images[:, :, ::-1])
        name = name.removeprefix("mirror").lstrip("-") or "identity"
        return view(images, name)
    height, width = images.shape[1:3]
    dy, dx = SHIFTS[name]
    sy, sx = (max(1, round(SHIFT_FRACTION * side)) for side in (height, width))
    padded = np.pad(images, ((0, 0), (sy, sy), (sx, sx), (0, 0)), mode="reflect")
    top, left = sy - dy * sy, sx - dx * sx
    return np.ascontiguousarray(padded[:, top:top + height, left:left + width])


def view_probabilities(model, images, standardizer: Standardizer, views, batch_size: int = 256,
                       images_per_call: int = 8192) -> dict:
    """Probabilities (N, num_classes) of each view; a one-unit sigmoid model gets its two columns.

    Views go to the model together, as many as ``images_per_call`` images hold: each ``predict`` call has a fixed
    cost that dominates on small sets (18 views of a validation split of 20 images: 0.8 s one by one, 0.3 s in one).
    """
    views, out = list(views), {}
    per_call = max(1, images_per_call // max(1, len(images)))
    for start in range(0, len(views), per_call):
        names = views[start:start + per_call]
        stacked = np.concatenate([view(images, name) for name in names]) if len(names) > 1 else view(images, names[0])
        ds = make_tf_dataset(stacked, None, standardizer, batch_size)
        probs = np.asarray(model.predict(ds, verbose=0), dtype=np.float64)
        if probs.shape[-1] == 1:
            probs = np.concatenate([1.0 - probs, probs], axis=1)
        out.update(zip(names, np.split(probs, len(names))))
    return out


def predict_probabilities(model, images, standardizer: Standardizer, batch_size: int = 256,
                          tta: str = "none") -> np.ndarray:
    """Class probabilities (N, num_classes): the mean over the views of the TTA choice ``tta``."""
    views = view_probabilities(model, images, standardizer, TTA_CHOICES[tta], batch_size)
    return np.mean(list(views.values()), axis=0)
