"""Detect a competition's layout from its raw files: CSV + image folder, or class folders.

Used when a competition has no ``[splits]`` in its config, or no config at all. What it finds
can be written into ``competition.toml`` to override it (``kip data`` prints it).
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from competition.config import Competition, Split
from competition.errors import PipelineError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
LABEL_COLUMNS = ("label", "labels", "class", "category", "target", "y")
IMAGE_COLUMNS = ("image", "image_id", "id", "filename", "file", "filepath", "path", "img")
IGNORED = ("__MACOSX",)


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def subfolders(folder: Path) -> list[Path]:
    with os.scandir(folder) as entries:
        return sorted(Path(e.path) for e in entries
                      if e.is_dir() and not e.name.startswith(".") and e.name not in IGNORED)


def has_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(e.is_file() and is_image(e.name) for e in entries)


def detect(slug: str, root: Path) -> Competition:
    """A Competition for a raw folder with no config: splits, columns and channels from its files."""
    if not root.is_dir():
        raise PipelineError(f"{root}: no such folder")
    found = detect_splits(root, "auto")
    from competition import settings

    in_place = None if Path(root) == settings.raw_dir(slug) else str(root)
    competition = Competition(slug=slug, title=f"{slug} (detected)", source="local",
                              data_dir=in_place, sample_submission=None, **found)
    return competition.replace(channels=_guess_channels(competition))


def detect_splits(root: Path, layout: str = "auto") -> dict:
    """``splits`` (and for CSVs ``image_column``/``label_column``) found under ``root``."""
    prefix = ""
    # an archive often unpacks into one folder of its own: look inside it
    while not _split_candidates(root / prefix) and len(subs := subfolders(root / prefix)) == 1:
        prefix = str(Path(prefix) / subs[0].name)
    base = root / prefix
    if layout in ("auto", "folders"):
        splits = _class_folder_splits(base, prefix)
        if splits or layout == "folders":
            if "train" not in splits:
                raise PipelineError(f"{base}: no train/<class>/ folders with images; check layout in the config")
            return {"splits": splits, "layout": "folders"}
    found = _csv_splits(base, prefix)
    if found is None:
        raise PipelineError(
            f"{base}: cannot tell the layout: expected train.csv with an image folder, or train/<class>/*.png; "
            f"write a competition.toml with [splits] (see README)")
    return {**found, "layout": "csv"}


def _split_candidates(base: Path) -> bool:
    names = [n for names in SPLIT_NAMES.values() for n in names]
    return any((base / n).is_dir() or (base / f"{n}.csv").is_file() for n in names)


def _class_folder_splits(base: Path, prefix: str) -> dict[str, Split]:
    splits = {}
    for split, names in SPLIT_NAMES.items():
        for name in names:
            folder = base / name
            if not folder.is_dir():
                continue
            if split == "train":
                found = len([c for c in subfolders(folder) if has_images(c)]) >= 2
            else:  # present, even if empty: loading then says it is empty instead of silently holding out
                found = bool(subfolders(folder)) or has_images(folder)
            if found:
                splits[split] = Split(images=str(Path(prefix) / name))
                break
    return splits if "train" in splits else {}


def _csv_splits(base: Path, prefix: str) -> dict | None:
    train_csv = next((base / f"{n}.csv" for n in SPLIT_NAMES["train"] if (base / f"{n}.csv").is_file()), None)
    if train_csv is None:
        return None
    header, row = _head(train_csv)
    image_column = _pick_image_column(header, row)
    others = [c for c in header if c != image_column]
    label_column = next((c for c in others if c.lower() in LABEL_COLUMNS), others[0] if len(others) == 1 else None)
    if image_column is None or label_column is None:
        raise PipelineError(f"{train_csv}: cannot tell the image and label columns among {', '.join(header)}; "
                            f"set image_column and label_column in a competition.toml")
    splits, extension = {}, ""
    for split, names in SPLIT_NAMES.items():
        for name in names:
            path = base / f"{name}.csv"
            if not path.is_file():
                continue
            header, row = _head(path)
            first = row[header.index(image_column)] if image_column in header and row else None
            found = _image_folder(base, name, first)
            if found is not None:
                folder, ext = found
                extension = extension or ext
                splits[split] = Split(csv=str(Path(prefix) / path.name), images=str(Path(prefix) / folder))
                break
    if "train" not in splits:
        return None
    return {"splits": splits, "image_column": image_column, "label_column": label_column,
            "image_extension": extension}


def _head(path: Path) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        row = next(reader, [])
    return header, row


def _pick_image_column(header: list[str], row: list[str]) -> str | None:
    for column, value in zip(header, row):
        if is_image(value):
            return column
    return next((c for c in header if c.lower() in IMAGE_COLUMNS), None)


def _image_folder(base: Path, split_name: str, first: str | None) -> tuple[str, str] | None:
    """The folder holding the split's images, and the extension its CSV names lack ("" if none)."""
    for folder in (f"{split_name}_images", split_name, "images", ""):
        if not (base / folder).is_dir():
            continue
        if first is None:
            return folder, ""
        extensions = [""] if is_image(first) else [ext for e in IMAGE_EXTENSIONS for ext in (e, e.upper())]
        for ext in extensions:
            if (base / folder / (first + ext)).is_file():
                return folder, ext
    return None


def _guess_channels(competition: Competition, sample: int = 16) -> int:
    """1 when every sampled train image is greyscale, else 3."""
    from skimage import io

    folder = competition.split_images("train")
    paths = []
    for dirpath, _dirs, files in os.walk(folder):
        paths += [Path(dirpath) / f for f in sorted(files) if is_image(f)][:4]
        if len(paths) >= sample:
            break
    try:
        shapes = [io.imread(str(p)).shape for p in paths[:sample]]
    except Exception:  # an unreadable file is reported, with its name, when the split is loaded
        return 3
    return 1 if shapes and all(len(s) == 2 or s[-1] in (1, 2) for s in shapes) else 3


def describe(competition: Competition) -> str:
    """The TOML lines a user can put in ``competition.toml`` to pin what was detected."""
    lines = [f'slug = "{competition.slug}"', f'layout = "{competition.layout}"', f"channels = {competition.channels}"]
    if competition.layout == "csv":
        lines += [f'image_column = "{competition.image_column}"', f'label_column = "{competition.label_column}"']
        if competition.image_extension:
            lines.append(f'image_extension = "{competition.image_extension}"')
    for name, spec in competition.splits.items():
        lines.append(f"[splits.{name}]")
        if spec.csv:
            lines.append(f'csv = "{spec.csv}"')
        lines.append(f'images = "{spec.images}"')
    return "\n".join(lines)
