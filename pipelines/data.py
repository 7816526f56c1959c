"""Load a competition's images with skimage into uint8 arrays, with labels mapped to class ids.

The boundary between a ``Competition`` and the stages: it is resolved here, once, into plain values (each split's
``SplitSource``, the ``ImageSpec``, the cache folder); a split is then listed (``pipelines.split_files``), decoded once
into the cache (``pipelines.cache``) and reloaded from there while its files and the loading settings stay the same.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from competition import settings
from competition.config import Competition, SplitSource
from competition.errors import PipelineError
from competition.registry import missing_data_message
from pipelines import decode
from pipelines.cache import CachedSplit, cached_split
from pipelines.split_files import SplitFiles, list_files


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
    holdout: bool = False  # val is a stratified hold-out of the train files

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


def split_source(competition: Competition, split: str) -> SplitSource:
    """The split as plain values; one line saying what to do when the competition has no such split."""
    if not competition.splits and not competition.raw_dir.exists():
        raise PipelineError(missing_data_message(competition.slug))
    if not competition.has_split(split):
        where = competition.split_path(split) if split in competition.splits else competition.raw_dir
        raise PipelineError(f"{competition.slug}: no {split} split ({where} not found); "
                            f"add the competition's {split} files to {competition.raw_dir}")
    return competition.split_source(split)


def list_split(competition: Competition, split: str, labelled: bool = True) -> SplitFiles:
    """The files of ``split`` in its layout, checked (ids, columns, escaping paths, emptiness)."""
    return list_files(split_source(competition, split), labelled)


def cache_root(competition: Competition) -> Path:
    return settings.cache_dir(competition.slug)


def load_split_cached(competition: Competition, split: str, labelled: bool = True, progress: bool = True,
                      workers: int | None = None, files: SplitFiles | None = None) -> CachedSplit:
    """Decode a split once into ``data/cache/<slug>/<split>-<key>/`` and reload it from there after."""
    files = files or list_split(competition, split, labelled)
    return cached_split(files, competition.image_spec, cache_root(competition), labelled, progress, workers)


def read_image(path: Path, competition: Competition) -> np.ndarray:
    """Read one image as uint8 (H, W, C) with the competition's channels and size."""
    return decode.read_image(str(path), competition.channels, competition.image_size)[0]


def conform(image: np.ndarray, competition: Competition, path: Path | str = "image") -> np.ndarray:
    """Convert to the configured channels, size and uint8."""
    return decode.conform_array(image, competition.channels, competition.image_size)


def load_split(competition: Competition, split: str, labelled: bool = True, progress: bool = True,
               workers: int | None = None, files: SplitFiles | None = None
               ) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """A split's ids, uint8 images (memory-mapped from the cache) and raw label values."""
    cached = load_split_cached(competition, split, labelled, progress, workers, files)
    return cached.ids, cached.images, cached.labels


def load_dataset(competition: Competition, seed: int, progress: bool = True, workers: int | None = None) -> Dataset:
    """Load train, val (or a stratified hold-out from train) and test, with class ids.

    Images come memory-mapped from the cache (copy-on-write); a hold-out split is an in-memory copy.
    A competition without a test split loads with ``test=None``.
    """
    # resolved once: plain values from here on; every split is listed and its labels checked before any decoding
    sources = {n: split_source(competition, n) for n in ("train", "val", "test") if n == "train" or
               competition.has_split(n)}
    image, root = competition.image_spec, cache_root(competition)
    files = {n: list_files(source, labelled=n != "test") for n, source in sources.items()}
    classes = np.unique(files["train"].labels).tolist()
    if "val" in files:
        encode(files["val"].labels, classes, files["val"].source)

    def load(name: str) -> SplitData:
        cached = cached_split(files[name], image, root, name != "test", progress, workers)
        labels = None if name == "test" else encode(cached.labels, classes, files[name].source)
        return SplitData(cached.ids, cached.images, labels)

    train = load("train")
    is_holdout = "val" not in files
    val = holdout(train, competition.validation_fraction, seed) if is_holdout else None
    if is_holdout:
        train, val = val
    else:
        val = load("val")
    test = load("test") if "test" in files else None
    return Dataset(train=train, val=val, test=test, classes=classes, holdout=is_holdout)


def encode(raw_labels: np.ndarray, classes: list, csv: Path) -> np.ndarray:
    """Map label values to class ids; a value not among ``classes`` is an error naming its row."""
    lookup = {value: i for i, value in enumerate(classes)}
    ids = np.empty(len(raw_labels), dtype=np.int64)
    for row, value in enumerate(raw_labels.tolist()):
        if value not in lookup:
            where = f"row {row + 2}" if Path(csv).suffix == ".csv" else f"folder {value}/"
            raise PipelineError(f"{csv}: {where}: label {value!r} never appears in train; fix the label or the split")
        ids[row] = lookup[value]
    return ids


def holdout(split: SplitData, fraction: float, seed: int) -> tuple[SplitData, SplitData]:
    """A stratified, seeded train/validation split of a labelled split."""
    from sklearn.model_selection import train_test_split  # here: the submission commands import this module, not it

    index = np.arange(len(split))
    counts = np.bincount(split.labels)
    stratify = split.labels if counts[counts > 0].min() >= 2 else None
    train_idx, val_idx = train_test_split(index, test_size=fraction, stratify=stratify, random_state=seed)
    pick = lambda idx: SplitData([split.ids[i] for i in idx], split.images[idx], split.labels[idx])  # noqa: E731
    return pick(np.sort(train_idx)), pick(np.sort(val_idx))
