"""List a split's image files: CSV rows (ids, labels) or class folders, checked before anything is decoded."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from competition.config import SplitSource
from competition.errors import PipelineError, first_line
from competition.layout import is_image, subfolders


@dataclass
class SplitFiles:
    """A split's files before decoding: ids, absolute paths, raw label values, and where each came from."""

    split: str
    ids: list[str]
    paths: list[str]
    labels: np.ndarray | None
    source: Path  # the CSV or the folder, for messages
    digest: str = ""  # of the CSV's bytes: labels can change while the images do not

    def where(self, index: int) -> str:
        if self.source.suffix == ".csv":
            return f"{self.source}: row {index + 2}"
        return str(self.source)


def read_split_csv(source: SplitSource, labelled: bool) -> pd.DataFrame:
    """Read a split's CSV, checking its columns and ids; one clear error per problem."""
    path, image_column, label_column, split = source.csv, source.image_column, source.label_column, source.name
    if not path.exists():
        raise PipelineError(f"{path}: missing; run `make data` first")
    try:
        # utf-8-sig: Excel starts a CSV with a byte-order mark; only an empty cell is missing (a class may be "NA")
        frame = pd.read_csv(path, dtype={image_column: str}, encoding="utf-8-sig",
                            keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PipelineError(f"{path}: cannot be read as CSV ({first_line(err)})") from None
    needed = [image_column] + ([label_column] if labelled else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise PipelineError(
            f"{path}: no column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))}); "
            f"set image_column/label_column in the competition's config"
        )
    if frame.empty:
        raise PipelineError(f"{path}: no rows; the {split} split is empty")
    blank = frame[image_column].isna() | (frame[image_column].str.strip() == "")
    if blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise PipelineError(f"{path}: row {row + 2}: empty image name")
    dup = frame[image_column].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup)[0])
        raise PipelineError(f"{path}: row {row + 2}: image id '{frame[image_column][row]}' appears twice")
    if labelled and frame[label_column].isna().any():
        row = int(np.flatnonzero(frame[label_column].isna())[0])
        raise PipelineError(f"{path}: row {row + 2}: empty label")
    return frame


def image_path(folder: Path, name: str, csv: Path, row: int) -> Path:
    """The file for ``name`` inside ``folder``; refuses names that escape it."""
    if os.path.isabs(name) or ".." in Path(name.replace("\\", "/")).parts or re.match(r"^[A-Za-z]:", name):
        raise PipelineError(f"{csv}: row {row + 2}: image path '{name}' leaves {folder}; use a relative name")
    return folder / name


def list_files(source: SplitSource, labelled: bool = True) -> SplitFiles:
    """The files of a split in its layout, checked (ids, columns, escaping paths, emptiness)."""
    if source.csv is None:
        return _list_class_folders(source.images, source.name, labelled)
    frame = read_split_csv(source, labelled)
    ids = frame[source.image_column].tolist()
    ext = source.extension
    names = [name.strip() for name in ids]  # "a.png " is a.png; the id stays as written, for the submission
    paths = [str(image_path(source.images, name + ext if ext and not name.endswith(ext) else name, source.csv, row))
             for row, name in enumerate(names)]
    labels = _label_array(frame[source.label_column]) if labelled else None
    return SplitFiles(source.name, ids, paths, labels, source.csv, hashlib.sha256(source.csv.read_bytes()).hexdigest())


def _label_array(column: pd.Series) -> np.ndarray:
    values = column.to_numpy()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        return np.asarray([str(v) for v in values])
    return values


def _list_class_folders(folder: Path, split: str, labelled: bool) -> SplitFiles:
    """``<folder>/<class>/*.png``: ids are ``<class>/<file>``, labels the class names (ints if all are)."""
    classes = [c for c in subfolders(folder)]
    ids, labels = [], []
    if not classes and not labelled:
        ids = sorted(e.name for e in os.scandir(folder) if e.is_file() and is_image(e.name))
    for cls in classes:
        names = sorted(e.name for e in os.scandir(cls) if e.is_file() and is_image(e.name))
        ids += [f"{cls.name}/{n}" for n in names]
        labels += [cls.name] * len(names)
    if labelled and not classes:
        raise PipelineError(f"{folder}: no class folders; the {split} split needs {folder}/<class>/*.png")
    if not ids:
        raise PipelineError(f"{folder}: no images; the {split} split is empty")
    label_array = None
    if labelled:
        label_array = np.asarray(labels)
        if all(re.fullmatch(r"-?\d+", c.name) for c in classes):
            label_array = label_array.astype(np.int64)
    return SplitFiles(split, ids, [str(folder / i) for i in ids], label_array, folder)
