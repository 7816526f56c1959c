"""Detect a competition's layout from its raw files: CSV + image folder, or class folders.

Used when a competition has no ``[splits]`` in its config, or no config at all. What it finds
can be written into ``competition.toml`` to override it (``kip data`` prints it).
"""
from __future__ import annotations

import csv
import fnmatch
import os
from pathlib import Path

from competition import settings
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
    in_place = None if Path(root) == settings.raw_dir(slug) else str(root)
    competition = Competition(slug=slug, title=f"{slug} (detected)", source="local", data_dir=in_place,
                              sample_submission=find_sample_submission(root), **found)
    return competition.replace(channels=_guess_channels(competition))


def find_sample_submission(root: Path) -> str | None:
    """The sample submission beside the splits, else in ``root`` (relative to it), by Kaggle's usual names, any case."""
    for prefix in dict.fromkeys((_prefix(root), "")):
        with os.scandir(root / prefix) as entries:
            names = sorted(e.name for e in entries if e.is_file())
        for pattern in ("sample_submission.csv", "samplesubmission.csv", "sample_submission*.csv"):
            found = [n for n in names if fnmatch.fnmatch(n.lower(), pattern)]
            if found:
                return str(Path(prefix) / found[0])
    return None


def _prefix(root: Path) -> str:
    """The folder under ``root`` holding the splits: an archive often unpacks into one folder of its own."""
    prefix = ""
    while not _split_candidates(root / prefix) and len(subs := subfolders(root / prefix)) == 1:
        prefix = str(Path(prefix) / subs[0].name)
    return prefix


def detect_splits(root: Path, layout: str = "auto") -> dict:
    """``splits`` (and for CSVs ``image_column``/``label_column``) found under ``root``."""
    prefix = _prefix(root)
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
    header, rows = _head(train_csv)
    image_column = _pick_image_column(header, rows[0] if rows else [])
    others = [c for c in header if c != image_column]
    label_column = next((c for c in others if c.lower() in LABEL_COLUMNS), others[0] if len(others) == 1 else None)
    if image_column is None or label_column is None:
        raise PipelineError(f"{train_csv}: cannot tell the image and label columns among {', '.join(header)}; "
                            f"set image_column and label_column in a competition.toml")
    splits, extension = {}, ""
    for split, names in SPLIT_NAMES.items():
        path = next((base / f"{n}.csv" for n in names if (base / f"{n}.csv").is_file()), None)
        if path is None:
            continue
        header, rows = _head(path)
        column = header.index(image_column) if image_column in header else None
        images = [row[column].strip() for row in rows if column is not None and len(row) > column]
        folder, ext = _image_folder(base, path, split, [name for name in images if name])
        extension = extension or ext
        splits[split] = Split(csv=str(Path(prefix) / path.name), images=str(Path(prefix) / folder))
    return {"splits": splits, "image_column": image_column, "label_column": label_column,
            "image_extension": extension}


def _head(path: Path, rows: int = 50) -> tuple[list[str], list[list[str]]]:
    """The header and up to ``rows`` rows (a byte-order mark, as Excel writes, is dropped)."""
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        return header, [row for _, row in zip(range(rows), reader)]


def _pick_image_column(header: list[str], row: list[str]) -> str | None:
    for column, value in zip(header, row):
        if is_image(value.strip()):
            return column
    return next((c for c in header if c.lower() in IMAGE_COLUMNS), None)


def _image_folder(base: Path, csv_path: Path, split: str, names: list[str]) -> tuple[str, str]:
    """The folder holding most of ``names`` (a CSV's first image names), and the extension they lack ("" if none).

    Several names, not just the first, so that one missing file does not hide the split.
    """
    tried = (f"{csv_path.stem}_images", csv_path.stem, "images", "")
    folders = [f for f in tried if (base / f).is_dir()]
    if not names:  # nothing to look for: loading then says what is wrong with the CSV
        return (folders or tried)[0], ""
    bare = not all(is_image(n) for n in names)  # ids like "a1b2" for files "a1b2.png"
    extensions = [""] + ([x for e in IMAGE_EXTENSIONS for x in (e, e.upper())] if bare else [])
    hits, _, folder, ext = max(((sum((base / f / (n + x)).is_file() for n in names), -i, f, x)
                                for i, f in enumerate(folders) for x in extensions), default=(0, 0, "", ""))
    if hits == 0:
        raise PipelineError(f"{csv_path}: none of the first {len(names)} images it names (e.g. '{names[0]}') was "
                            f"found in {', '.join(f'{f}/' if f else './' for f in tried)} under {base}; put them "
                            f"there or set [splits.{split}] images in a competition.toml")
    return folder, ext


def _guess_channels(competition: Competition, sample: int = 16) -> int:
    """1 when every sampled train image is greyscale, else 3."""
    from skimage import io

    folder = competition.split_source("train").images
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
    if competition.sample_submission:
        lines.append(f'sample_submission = "{competition.sample_submission}"')
    for name, spec in competition.splits.items():
        lines.append(f"[splits.{name}]")
        if spec.csv:
            lines.append(f'csv = "{spec.csv}"')
        lines.append(f'images = "{spec.images}"')
    return "\n".join(lines)
