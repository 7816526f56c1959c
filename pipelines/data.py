"""Load a competition's images with skimage into uint8 arrays, with labels mapped to class ids."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import color, io, transform
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from competition.config import Competition
from competition.errors import PipelineError, first_line


@dataclass
class SplitData:
    """One split: image ids as the CSV names them, uint8 images (N, H, W, C), class ids or None."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Dataset:
    """Train, validation and (unlabelled) test splits, and the label values in class-id order."""

    train: SplitData
    val: SplitData
    test: SplitData | None
    classes: list = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def read_split_csv(competition: Competition, split: str, labelled: bool) -> pd.DataFrame:
    """Read ``<split>.csv``, checking its columns and ids; one clear error per problem."""
    path = competition.split_csv(split)
    if not path.exists():
        raise PipelineError(f"{path}: missing; run `make data COMPETITION={competition.slug}` first")
    try:
        frame = pd.read_csv(path, dtype={competition.image_column: str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot be read as CSV ({first_line(err)})") from None
    needed = [competition.image_column] + ([competition.label_column] if labelled else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"{path}: no column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))}); "
            f"set image_column/label_column in the competition's config"
        )
    if frame.empty:
        raise PipelineError(f"{path}: no rows; the {split} split is empty")
    dup = frame[competition.image_column].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise PipelineError(f"{path}: row {row + 2}: image id '{frame[competition.image_column][row]}' appears twice")
    if labelled and frame[competition.label_column].isna().any():
        row = int(np.flatnonzero(frame[competition.label_column].isna())[0])
        raise PipelineError(f"{path}: row {row + 2}: empty label")
    return frame


def image_path(folder: Path, name: str, csv: Path, row: int) -> Path:
    """The file for ``name`` inside ``folder``; refuses names that escape it."""
    if os.path.isabs(name) or ".." in Path(name).parts:
        raise PipelineError(f"{csv}: row {row + 2}: image path '{name}' leaves {folder}; use a relative name")
    return folder / name


def read_image(path: Path, competition: Competition) -> np.ndarray:
    """Read one image as uint8 (H, W, C) with the competition's channels and size."""
    try:
        image = io.imread(path)
    except FileNotFoundError:
        raise PipelineError(f"{path}: image file missing") from None
    except Exception as err:  # skimage/PIL raise many types for a bad file
        raise PipelineError(f"{path}: unreadable image ({first_line(err)}); replace or remove it") from None
    return conform(image, competition, path)


def conform(image: np.ndarray, competition: Competition, path: Path | str = "image") -> np.ndarray:
    """Convert to the configured channels, size and uint8."""
    if image.ndim == 3 and image.shape[-1] == 4:
        image = color.rgba2rgb(image)
    if image.ndim == 3 and image.shape[-1] == 2:  # grey + alpha
        image = image[..., 0]
    if competition.channels == 1 and image.ndim == 3:
        image = color.rgb2gray(image)
    if competition.channels == 3 and image.ndim == 2:
        image = color.gray2rgb(image)
    if image.dtype != np.uint8:
        image = _to_uint8(image)
    if image.ndim == 2:
        image = image[..., None]
    if competition.image_size is not None and tuple(image.shape[:2]) != tuple(competition.image_size):
        resized = transform.resize(image, competition.image_size, order=1, preserve_range=True, anti_aliasing=True)
        image = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return image


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def load_split(competition: Competition, split: str, labelled: bool = True, progress: bool = True) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """Read a split's ids, images and raw label values."""
    frame = read_split_csv(competition, split, labelled)
    csv = competition.split_csv(split)
    folder = competition.split_images(split)
    ids = frame[competition.image_column].tolist()
    paths = [image_path(folder, name, csv, row) for row, name in enumerate(ids)]
    images = [read_image(p, competition) for p in tqdm(paths, desc=f"load {split}", unit="img", disable=not progress, leave=False)]
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        first = images[0].shape
        odd_path, odd = next((p, im) for p, im in zip(paths, images) if im.shape != first)
        raise PipelineError(
            f"{odd_path}: size {odd.shape} differs from {first}; set image_size in the competition's config to resize"
        )
    labels = frame[competition.label_column].to_numpy() if labelled else None
    return ids, np.stack(images), labels


def load_dataset(competition: Competition, seed: int, progress: bool = True) -> Dataset:
    """Load train, val (or a stratified hold-out from train) and test, with class ids."""
    ids, images, raw_labels = load_split(competition, "train", progress=progress)
    classes = np.unique(raw_labels).tolist()
    labels = encode(raw_labels, classes, competition.split_csv("train"))
    train = SplitData(ids, images, labels)
    if competition.has_split("val"):
        v_ids, v_images, v_raw = load_split(competition, "val", progress=progress)
        val = SplitData(v_ids, v_images, encode(v_raw, classes, competition.split_csv("val")))
    else:
        train, val = holdout(train, competition.validation_fraction, seed)
    test = None
    if competition.has_split("test"):
        t_ids, t_images, _ = load_split(competition, "test", labelled=False, progress=progress)
        test = SplitData(t_ids, t_images)
    return Dataset(train=train, val=val, test=test, classes=classes)


def encode(raw_labels: np.ndarray, classes: list, csv: Path) -> np.ndarray:
    """Map label values to class ids; a value not among ``classes`` is an error naming its row."""
    lookup = {value: i for i, value in enumerate(classes)}
    ids = np.empty(len(raw_labels), dtype=np.int64)
    for row, value in enumerate(raw_labels.tolist()):
        if value not in lookup:
            raise PipelineError(f"{csv}: row {row + 2}: label {value!r} never appears in train; fix the label or the split")
        ids[row] = lookup[value]
    return ids


def holdout(split: SplitData, fraction: float, seed: int) -> tuple[SplitData, SplitData]:
    """A stratified, seeded train/validation split of a labelled split."""
    index = np.arange(len(split))
    counts = np.bincount(split.labels)
    stratify = split.labels if counts[counts > 0].min() >= 2 else None
    train_idx, val_idx = train_test_split(index, test_size=fraction, stratify=stratify, random_state=seed)
    pick = lambda idx: SplitData([split.ids[i] for i in idx], split.images[idx], split.labels[idx])  # noqa: E731
    return pick(np.sort(train_idx)), pick(np.sort(val_idx))
