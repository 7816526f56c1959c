"""Load a competition's images with skimage into uint8 arrays, with labels mapped to class ids.

A split is listed (CSV rows or class folders), checked, decoded in parallel over the available
cores into a memory-mappable ``.npy`` under ``data/cache/<slug>/``, and reloaded from there while
its files and the loading settings stay the same.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import socket
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from competition import settings
from competition.config import Competition, missing_data_message
from competition.errors import PipelineError, first_line
from competition.layout import is_image, subfolders
from pipelines import decode

CACHE_VERSION = 1
PARALLEL_MIN_IMAGES = 512  # below this, starting worker processes costs more than it saves


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


@dataclass
class CachedSplit:
    """A split as decoded and cached: what ``load_split`` returns, plus the source shape of each file."""

    ids: list[str]
    images: np.ndarray
    labels: np.ndarray | None
    sources: np.ndarray  # (N, 4): height, width, channels, bits of each file as stored
    paths: list[str]
    cache_dir: Path
    decoded: bool  # False when it came from the cache without decoding


# ----------------------------------------------------------------------------------------------- listing

def read_split_csv(competition: Competition, split: str, labelled: bool) -> pd.DataFrame:
    """Read ``<split>.csv``, checking its columns and ids; one clear error per problem."""
    path = competition.split_csv(split)
    if not path.exists():
        raise PipelineError(f"{path}: missing; run `make data COMPETITION={competition.slug}` first")
    try:
        # utf-8-sig: Excel starts a CSV with a byte-order mark; only an empty cell is missing (a class may be "NA")
        frame = pd.read_csv(path, dtype={competition.image_column: str}, encoding="utf-8-sig",
                            keep_default_na=False, na_values=[""])
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
    blank = frame[competition.image_column].isna() | (frame[competition.image_column].str.strip() == "")
    if blank.any():
        row = int(np.flatnonzero(blank)[0])
        raise PipelineError(f"{path}: row {row + 2}: empty image name")
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
    if os.path.isabs(name) or ".." in Path(name.replace("\\", "/")).parts or re.match(r"^[A-Za-z]:", name):
        raise PipelineError(f"{csv}: row {row + 2}: image path '{name}' leaves {folder}; use a relative name")
    return folder / name


def list_split(competition: Competition, split: str, labelled: bool = True) -> SplitFiles:
    """The files of ``split`` in its layout, checked (ids, columns, escaping paths, emptiness)."""
    if not competition.splits and not competition.raw_dir.exists():
        raise PipelineError(missing_data_message(competition.slug))
    if not competition.has_split(split):
        where = competition.split_csv(split) if split in competition.splits else competition.raw_dir
        raise PipelineError(f"{competition.slug}: no {split} split ({where} not found); "
                            f"add the competition's {split} files to {competition.raw_dir}")
    spec = competition.splits[split]
    folder = competition.split_images(split)
    if spec.csv:
        csv = competition.split_csv(split)
        frame = read_split_csv(competition, split, labelled)
        ids = frame[competition.image_column].tolist()
        ext = competition.image_extension
        names = [name.strip() for name in ids]  # "a.png " is a.png; the id stays as written, for the submission
        paths = [str(image_path(folder, name + ext if ext and not name.endswith(ext) else name, csv, row))
                 for row, name in enumerate(names)]
        labels = _label_array(frame[competition.label_column]) if labelled else None
        return SplitFiles(split, ids, paths, labels, csv, hashlib.sha256(csv.read_bytes()).hexdigest())
    return _list_class_folders(folder, split, labelled)


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


# ------------------------------------------------------------------------------------------------- cache

def cache_key(competition: Competition, files: SplitFiles, labelled: bool) -> str:
    """A hash of the file list, sizes, modification times, labels and loading settings."""
    h = hashlib.sha256()
    settings_part = {"version": CACHE_VERSION, "split": files.split, "labelled": labelled,
                     "channels": competition.channels, "image_size": competition.image_size,
                     "csv": files.digest}
    h.update(json.dumps(settings_part, sort_keys=True, default=list).encode())
    lines = []
    for index, path in enumerate(files.paths):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise PipelineError(f"{path}: image file missing ({files.where(index)}); "
                                f"restore it or remove it from the split") from None
        except OSError as err:
            raise PipelineError(f"{path}: cannot be read ({first_line(err)}) ({files.where(index)})") from None
        lines.append(f"{path}\0{st.st_size}\0{st.st_mtime_ns}")
    h.update("\n".join(lines).encode())
    if files.labels is not None:
        h.update(np.ascontiguousarray(files.labels).tobytes())
    return h.hexdigest()


def cache_root(competition: Competition) -> Path:
    return settings.cache_dir(competition.slug)


class DamagedCache(PipelineError):
    """A cache entry that does not match its meta.json: ``<entry> is damaged (<which file, how>)``."""


def read_cache(entry: Path, paths: list[str]) -> CachedSplit:
    """A cached split, checked cheaply against its meta.json; images memory-mapped copy-on-write."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        count, shape = int(meta["count"]), tuple(meta["shape"])
    except FileNotFoundError:
        raise DamagedCache(f"{entry} is damaged (meta.json missing)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DamagedCache(f"{entry} is damaged (meta.json unreadable: {first_line(err)})") from None
    arrays = {}
    for name in ("images", "ids", "sources") + (("labels",) if meta.get("labelled") else ()):
        try:  # np.load refuses a truncated .npy (its header gives the size), and pickles
            arrays[name] = np.load(entry / f"{name}.npy", mmap_mode="c" if name == "images" else None)
        except FileNotFoundError:
            raise DamagedCache(f"{entry} is damaged ({name}.npy missing)") from None
        except (OSError, ValueError, EOFError) as err:
            raise DamagedCache(f"{entry} is damaged ({name}.npy truncated or unreadable: {first_line(err)})") from None
        if len(arrays[name]) != count:
            raise DamagedCache(f"{entry} is damaged ({name}.npy has {len(arrays[name])} rows, meta.json says {count})")
    images = arrays["images"]
    if images.shape[1:] != shape or images.dtype != np.uint8:
        raise DamagedCache(f"{entry} is damaged (images.npy holds {images.dtype} {images.shape[1:]}, "
                           f"meta.json says uint8 {shape})")
    if os.path.getsize(entry / "images.npy") != images.offset + images.nbytes:
        raise DamagedCache(f"{entry} is damaged (images.npy is longer than its header says)")
    return CachedSplit(arrays["ids"].tolist(), images, arrays.get("labels"), arrays["sources"], paths, entry,
                       decoded=False)


def remove_dead_temporaries(root: Path, split: str) -> None:
    """Remove build folders of ``split`` left by a builder on this host that is no longer running (killed)."""
    for tmp in root.glob(f".{split}-*"):
        found = re.fullmatch(rf"\.{re.escape(split)}-\w+\.pid(\d+)@(.+)\.[^.]+", tmp.name)
        if found and found[2] == socket.gethostname() and not _running(int(found[1])):
            shutil.rmtree(tmp, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def load_split_cached(competition: Competition, split: str, labelled: bool = True, progress: bool = True,
                      workers: int | None = None, files: SplitFiles | None = None) -> CachedSplit:
    """Decode a split once into ``data/cache/<slug>/<split>-<key>/`` and reload it from there after.

    An entry that does not match its meta.json is said to be damaged and decoded again. The build folder's
    name carries the builder's pid and host, so a later build can remove what a killed one left.
    """
    files = files or list_split(competition, split, labelled)
    key = cache_key(competition, files, labelled)
    root = cache_root(competition)
    entry = root / f"{split}-{key[:20]}"
    if entry.exists():
        try:
            return read_cache(entry, files.paths)
        except DamagedCache as err:
            print(f"cache: {err}; decoding again", file=sys.stderr)
            shutil.rmtree(entry, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    remove_dead_temporaries(root, split)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.pid{os.getpid()}@{socket.gethostname()}.", dir=root))
    try:
        sources = decode_files(competition, files, tmp / "images.npy", progress=progress, workers=workers)
        np.save(tmp / "ids.npy", np.asarray(files.ids, dtype=str))
        np.save(tmp / "sources.npy", sources)
        if files.labels is not None:
            np.save(tmp / "labels.npy", files.labels, allow_pickle=False)
        images = np.load(tmp / "images.npy", mmap_mode="r")
        meta = {"split": split, "key": key, "count": len(files.ids), "shape": list(images.shape[1:]),
                "channels": competition.channels, "image_size": competition.image_size,
                "source": str(files.source), "labelled": labelled, "version": CACHE_VERSION}
        del images
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=list) + "\n")  # last: marks complete
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, entry)
        except OSError:  # another process cached the same split meanwhile; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for stale in root.glob(f"{split}-*"):
        if stale != entry and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    cached = read_cache(entry, files.paths)
    cached.decoded = True
    return cached


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def decode_files(competition: Competition, files: SplitFiles, out: Path, progress: bool = True,
                 workers: int | None = None) -> np.ndarray:
    """Decode every file into a new ``.npy`` at ``out`` (N, H, W, C) uint8; return their source shapes.

    The first image fixes the shape when no ``image_size`` is set; any other size is an error.
    Worker processes (one per available core) each decode a run of files straight into the file.
    """
    n = len(files.paths)
    channels, size = competition.channels, competition.image_size
    first, first_source = decode.read_image(files.paths[0], channels, size)
    array = np.lib.format.open_memmap(out, mode="w+", dtype=np.uint8, shape=(n, *first.shape))
    array[0] = first
    array.flush()
    del array
    sources = np.zeros((n, len(decode.SOURCE_FIELDS)), np.int32)
    sources[0] = first_source
    workers = available_cores() if workers is None else workers
    # disable=None: a live bar on a terminal, none in a log file (it would be one line per refresh)
    bar = tqdm(total=n, initial=1, desc=f"decode {files.split}", unit="img", disable=None if progress else True,
               leave=False)
    args = (str(out), channels, size, files.paths[0])
    with bar:
        if workers <= 1 or n < PARALLEL_MIN_IMAGES:
            step = 256
            for start in range(1, n, step):
                sources[start:start + step] = decode.decode_into(files.paths[start:start + step], start, *args)
                bar.update(len(files.paths[start:start + step]))
            return sources
        chunk = max(32, min(1024, n // (workers * 8)))
        starts = list(range(1, n, chunk))
        with ProcessPoolExecutor(workers, mp_context=_process_context(),
                                 initializer=decode.skip_absent_optional_imports) as pool:
            futures = [pool.submit(decode.decode_into, files.paths[s:s + chunk], s, *args) for s in starts]
            try:
                for start, future in zip(starts, futures):  # in order, so the first bad file is the one named
                    sources[start:start + chunk] = future.result()
                    bar.update(len(files.paths[start:start + chunk]))
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    return sources


def _process_context():
    """fork where there is one: workers start at once and run only ``decode`` (PIL and numpy), never
    TensorFlow, so threads TensorFlow may have started in this process do not matter to them. spawn and
    forkserver would re-import the caller's ``__main__`` in every worker (with TensorFlow: seconds each)."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


# ------------------------------------------------------------------------------------------------ public

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
    # every split is listed and its labels checked before anything is decoded or cached
    names = [n for n in ("train", "val", "test") if n == "train" or competition.has_split(n)]
    files = {n: list_split(competition, n, labelled=n != "test") for n in names}
    classes = np.unique(files["train"].labels).tolist()
    if "val" in files:
        encode(files["val"].labels, classes, competition.split_csv("val"))
    ids, images, raw_labels = load_split(competition, "train", progress=progress, workers=workers,
                                         files=files["train"])
    train = SplitData(ids, images, encode(raw_labels, classes, competition.split_csv("train")))
    is_holdout = "val" not in files
    if not is_holdout:
        v_ids, v_images, v_raw = load_split(competition, "val", progress=progress, workers=workers, files=files["val"])
        val = SplitData(v_ids, v_images, encode(v_raw, classes, competition.split_csv("val")))
    else:
        train, val = holdout(train, competition.validation_fraction, seed)
    test = None
    if "test" in files:
        t_ids, t_images, _ = load_split(competition, "test", labelled=False, progress=progress, workers=workers,
                                        files=files["test"])
        test = SplitData(t_ids, t_images)
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
    from sklearn.model_selection import train_test_split

    index = np.arange(len(split))
    counts = np.bincount(split.labels)
    stratify = split.labels if counts[counts > 0].min() >= 2 else None
    train_idx, val_idx = train_test_split(index, test_size=fraction, stratify=stratify, random_state=seed)
    pick = lambda idx: SplitData([split.ids[i] for i in idx], split.images[idx], split.labels[idx])  # noqa: E731
    return pick(np.sort(train_idx)), pick(np.sort(val_idx))
