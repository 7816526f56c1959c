"""The decoded-image cache: one memory-mappable ``.npy`` entry per split and loading settings, built once.

An entry ``<root>/<split>-<key>/`` holds ``images.npy`` (uint8 N x H x W x C), ``ids.npy``, ``labels.npy``,
``sources.npy`` and ``meta.json`` (written last: it marks the entry complete). The key covers the file list, sizes,
modification times, the CSV's bytes and the loading settings, so a changed file is noticed.
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from competition.config import ImageSpec
from competition.errors import PipelineError, first_line
from pipelines import decode
from pipelines.split_files import SplitFiles

CACHE_VERSION = 1
PARALLEL_MIN_IMAGES = 512  # below this, starting worker processes costs more than it saves


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


def cache_key(files: SplitFiles, image: ImageSpec, labelled: bool) -> str:
    """A hash of the file list, sizes, modification times, labels and loading settings."""
    h = hashlib.sha256()
    settings_part = {"version": CACHE_VERSION, "split": files.split, "labelled": labelled,
                     "channels": image.channels, "image_size": image.size, "csv": files.digest}
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


def cached_split(files: SplitFiles, image: ImageSpec, root: Path, labelled: bool = True, progress: bool = True,
                 workers: int | None = None) -> CachedSplit:
    """Decode a split once into ``<root>/<split>-<key>/`` and reload it from there after.

    An entry that does not match its meta.json is said to be damaged and decoded again. The build folder's
    name carries the builder's pid and host, so a later build can remove what a killed one left.
    """
    split = files.split
    key = cache_key(files, image, labelled)
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
        sources = decode_files(files, image, tmp / "images.npy", progress=progress, workers=workers)
        np.save(tmp / "ids.npy", np.asarray(files.ids, dtype=str))
        np.save(tmp / "sources.npy", sources)
        if files.labels is not None:
            np.save(tmp / "labels.npy", files.labels, allow_pickle=False)
        images = np.load(tmp / "images.npy", mmap_mode="r")
        meta = {"split": split, "key": key, "count": len(files.ids), "shape": list(images.shape[1:]),
                "channels": image.channels, "image_size": image.size,
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


def decode_files(files: SplitFiles, image: ImageSpec, out: Path, progress: bool = True,
                 workers: int | None = None) -> np.ndarray:
    """Decode every file into a new ``.npy`` at ``out`` (N, H, W, C) uint8; return their source shapes.

    The first image fixes the shape when no ``image_size`` is set; any other size is an error.
    Worker processes (one per available core) each decode a run of files straight into the file.
    """
    n = len(files.paths)
    channels, size = image.channels, image.size
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
