"""Decode image files with skimage.io into uint8 arrays of one shape.

Kept light (numpy, skimage) because it is what the worker processes of the parallel loader import.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np

from competition.errors import PipelineError, first_line

# The source of each decoded image, one row per file: height, width, channels, bits per sample.
SOURCE_FIELDS = ("height", "width", "channels", "bits")


def skip_absent_optional_imports() -> None:
    """Make imageio's pillow plugin skip its per-image ``import pillow_heif`` when that is not installed.

    The plugin retries the import for every file it opens and Python does not remember a failed import,
    so on small PNGs the search of sys.path costs about a third of ``skimage.io.imread``'s time.
    Marking the module absent (``sys.modules[name] = None``) makes the import fail at once, as
    the plugin expects. Run once in each worker process.
    """
    for name in ("pillow_heif",):
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = None


def read_image(path: str, channels: int, image_size: tuple[int, int] | None) -> tuple[np.ndarray, tuple]:
    """One image as uint8 (H, W, channels), resized to ``image_size`` if set; and its source shape."""
    from skimage import io

    try:
        image = io.imread(path)
    except FileNotFoundError:
        raise PipelineError(f"{path}: image file missing") from None
    except Exception as err:  # skimage/imageio/PIL raise many types for a bad file
        raise PipelineError(f"{path}: {_why_unreadable(path, err)}; replace or remove it") from None
    if image.ndim == 4:  # an animated GIF or multi-page TIFF: the first frame
        image = image[0]
    if image.ndim not in (2, 3) or image.size == 0:
        raise PipelineError(f"{path}: unreadable image (array of shape {image.shape}); replace or remove it")
    bits = 1 if image.dtype == bool else image.dtype.itemsize * 8
    source = (image.shape[0], image.shape[1], 1 if image.ndim == 2 else image.shape[2], bits)
    return conform_array(image, channels, image_size), source


def _why_unreadable(path: str, err: Exception) -> str:
    """What is wrong with a file imread failed on: empty, of no image format PIL knows, or damaged."""
    from PIL import Image, UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "empty file (0 bytes)"
        with Image.open(path):
            pass
    except UnidentifiedImageError:
        return "not an image (its format cannot be identified)"
    except Exception:  # a format PIL knows but cannot read: imread's own error says more
        pass
    return f"unreadable image ({first_line(err)})"


def conform_array(image: np.ndarray, channels: int, image_size: tuple[int, int] | None) -> np.ndarray:
    """Convert to uint8 with ``channels`` (1 or 3), then resize to ``image_size`` when it differs.

    A large image is first shrunk by a block mean (``reduce_large``), so the rest works on a small copy.
    """
    from skimage import color

    image = to_uint8(image)
    if image_size is not None:
        image = reduce_large(image, image_size)
    if image.ndim == 3 and image.shape[-1] in (2, 4):
        image = _drop_alpha(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if channels == 1 and image.ndim == 3:
        image = to_uint8(color.rgb2gray(image[..., :3]))
    if channels == 3 and image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim == 2:
        image = image[..., None]
    if image_size is not None and tuple(image.shape[:2]) != tuple(image_size):
        from skimage import transform

        resized = transform.resize(image, tuple(image_size), order=1, preserve_range=True, anti_aliasing=True)
        image = np.clip(np.round(resized), 0, 255).astype(np.uint8)
    return image


def reduce_large(image: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Shrink a uint8 image over 4x the target on a side by an integer block mean, to about 2x the target.

    The anti-aliased resize smooths a float64 copy with a Gaussian as wide as the scale factor: minutes and
    gigabytes on an 8000x8000 image. A block mean keeps the average colour and is cheap when summed one axis at
    a time over contiguous rows (0.05 s for 8000x8000 RGB; skimage's ``block_reduce`` over its strided 6-d block
    view took 1.4 s). The rows and columns past the last whole block are cropped evenly from both sides.
    """
    (fh, fw) = factors = [max(1, side // (2 * target)) for side, target in zip(image.shape[:2], image_size)]
    if max(factors) == 1:
        return image
    (h, w), rest = [side // f for side, f in zip(image.shape[:2], factors)], image.shape[2:]
    top, left = (image.shape[0] - h * fh) // 2, (image.shape[1] - w * fw) // 2
    kept = image[top:top + h * fh, left:left + w * fw]  # a view: splitting an axis in two needs no copy
    rows = kept.reshape(h, fh, w * fw, *rest).sum(axis=1, dtype=np.uint64)
    sums = rows.reshape(h, w, fw, *rest).sum(axis=2)
    return np.round(sums / (fh * fw)).astype(np.uint8)


def to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        return np.clip(np.round(image * 255), 0, 255).astype(np.uint8)
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8)


def _drop_alpha(image: np.ndarray) -> np.ndarray:
    """Composite over white (as skimage's rgba2rgb does); an opaque image just loses the channel."""
    colour, alpha = image[..., :-1], image[..., -1:]
    if alpha.min() == 255:
        return np.ascontiguousarray(colour)
    a = alpha.astype(np.float32) / 255
    return np.clip(np.round(colour * a + 255 * (1 - a)), 0, 255).astype(np.uint8)


def decode_into(paths: list[str], start: int, out_file: str, channels: int,
                image_size: tuple[int, int] | None, first: str) -> np.ndarray:
    """Decode ``paths`` into rows ``start:`` of the ``.npy`` at ``out_file``; return their source shapes.

    Runs in a worker process: the pixels go straight into the memory-mapped file, never through a pipe.
    """
    out = np.load(out_file, mmap_mode="r+")
    sources = np.zeros((len(paths), len(SOURCE_FIELDS)), np.int32)
    for i, path in enumerate(paths):
        image, sources[i] = read_image(path, channels, image_size)
        if image.shape != out.shape[1:]:
            raise PipelineError(
                f"{path}: size {image.shape[1]}x{image.shape[0]} differs from {out.shape[2]}x{out.shape[1]} "
                f"of {first}; set image_size = [height, width] in the competition's config to resize")
        out[start + i] = image
    out.flush()
    del out
    return sources
