"""The embedded demo competition, built offline from scikit-learn's handwritten digits.

It is written in exactly the reference competition's layout so that every stage runs
on it as it would on a real competition. The test labels go to a separate file that
only the final scoring reads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from skimage import io, transform
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from competition.config import Competition
from competition.fileio import atomic_dir

DEMO_SEED = 0  # fixed on purpose: the demo files are the same on every machine


def build_digits_demo(competition: Competition) -> Path:
    """Write the digits demo to ``competition.raw_dir``; deterministic, atomic. Returns the folder."""
    digits = load_digits()
    size = competition.image_size or (32, 32)
    images = np.stack([_upscale(img, size) for img in digits.images])
    labels = digits.target.astype(int)
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=0.2, stratify=labels, random_state=DEMO_SEED)
    train, val = train_test_split(
        rest, test_size=0.15, stratify=labels[rest], random_state=DEMO_SEED
    )
    with atomic_dir(competition.raw_dir) as out:
        for split, members in (("train", train), ("val", val), ("test", test)):
            folder = out / competition.splits[split].images
            folder.mkdir(parents=True)
            names = [f"{split}_{i:04d}.png" for i in sorted(members)]
            for name, i in zip(names, sorted(members)):
                rgb = np.repeat(images[i][..., None], competition.channels, axis=-1)
                io.imsave(folder / name, rgb, check_contrast=False)
            frame = pd.DataFrame({competition.image_column: names,
                                  competition.label_column: labels[sorted(members)]})
            if split == "test":
                frame[[competition.image_column]].to_csv(out / competition.splits[split].csv, index=False)
                frame.to_csv(out / competition.test_labels, index=False)
                sample = frame.assign(**{competition.label_column: 0})
                sample.to_csv(out / competition.sample_submission, index=False)
            else:
                frame.to_csv(out / competition.splits[split].csv, index=False)
    return competition.raw_dir


def _upscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    scaled = transform.resize(image / 16.0, size, order=1, anti_aliasing=False)
    return np.clip(np.round(scaled * 255), 0, 255).astype(np.uint8)
