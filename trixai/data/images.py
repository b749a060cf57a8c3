"""Decode one image file (PNG, JPEG, BMP, TIFF or DICOM) into a square uint8 array with a fixed channel count.

Channel policy: ``channels=1`` gives luminance (for ``in_chans=1`` models), ``channels=3`` gives RGB with a
grayscale source replicated to three identical channels. Resize policy: ``squash`` resizes the whole image to
``size`` x ``size`` (aspect ratio not kept); ``crop`` scales the shorter side to ``size`` and centre-crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from trixai.core.errors import TrixaiError
from trixai.data.dicom import is_dicom, read_dicom

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
CHANNELS = (1, 3)
RESIZE_MODES = ("squash", "crop")
DECODER_VERSION = 1  # bump when decoding or resizing changes: part of every cache key


class BadImageError(TrixaiError):
    """An image file is missing, unreadable or corrupt."""


def check_image_options(channels: int, resize: str) -> None:
    if channels not in CHANNELS:
        raise TrixaiError(f"dataset.channels={channels} is not one of {list(CHANNELS)} "
                          "(1: grayscale for in_chans=1 models, 3: RGB, grayscale replicated)")
    if resize not in RESIZE_MODES:
        raise TrixaiError(f"dataset.resize={resize!r} is not one of {list(RESIZE_MODES)}")


def _to_pil(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array, mode="L" if array.ndim == 2 else "RGB")


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grayscale to 8 bits by the image's own min..max (PIL would clip at 255)."""
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low)
    return _to_pil(np.round(scaled * 255).astype(np.uint8))


def open_image(path: str | Path, *, size_hint: int | None = None,
               dicom_window: Sequence[float] | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decoded PIL image (mode ``L`` or ``RGB``) and the file's original (height, width).

    ``size_hint`` lets JPEG decoding skip detail finer than needed for that output size (DCT scaling).
    """
    path = Path(path)
    if not path.is_file():
        raise BadImageError(f"image file {path} does not exist")
    if is_dicom(path):
        try:
            image = _to_pil(read_dicom(path, window=dicom_window))
        except TrixaiError as error:
            raise BadImageError(str(error)) from error
        return image, (image.height, image.width)
    try:
        image = Image.open(path)
        original = (image.height, image.width)
        if size_hint is not None and image.format == "JPEG":
            image.draft("L" if image.mode == "L" else "RGB", (size_hint, size_hint))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"cannot decode image {path} ({error}); expected a PNG, JPEG, BMP, TIFF or DICOM "
                            "file") from error
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _high_depth_to_l(image)
    elif image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return image, original


def resize_square(image: Image.Image, size: int, resize: str) -> Image.Image:
    """Resize to ``size`` x ``size`` by the ``resize`` policy (antialiased bilinear)."""
    if resize == "crop":
        scale = size / min(image.width, image.height)
        width, height = max(size, round(image.width * scale)), max(size, round(image.height * scale))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        left, top = (width - size) // 2, (height - size) // 2
        return image.crop((left, top, left + size, top + size))
    return image.resize((size, size), Image.Resampling.BILINEAR)


def pixel_scales(originals: np.ndarray, size: int, resize: str) -> np.ndarray:
    """(N, 2) model-input pixels per original pixel along rows and columns for originals (N, 2) (height, width):
    ``squash`` scales each axis on its own (size / H, size / W), ``crop`` both by size / min(H, W)."""
    originals = np.asarray(originals, dtype=np.float64).reshape(-1, 2)
    if resize == "crop":
        return np.repeat(size / originals.min(axis=1, keepdims=True), 2, axis=1)
    return size / originals


def box_to_output(box: Sequence[float], original: tuple[int, int], size: int, resize: str) -> tuple[float, ...]:
    """Map a box (x, y, w, h) in original pixel coordinates to (x0, y0, x1, y1) in the resized image."""
    height, width = original
    x, y, w, h = (float(v) for v in box)
    if resize == "crop":
        scale = size / min(width, height)
        dx = (max(size, round(width * scale)) - size) // 2
        dy = (max(size, round(height * scale)) - size) // 2
        return x * scale - dx, y * scale - dy, (x + w) * scale - dx, (y + h) * scale - dy
    sx, sy = size / width, size / height
    return x * sx, y * sy, (x + w) * sx, (y + h) * sy


def to_channels(image: Image.Image, channels: int) -> np.ndarray:
    """(H, W, channels) uint8 array: luminance for 1, RGB (grayscale replicated) for 3."""
    converted = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(converted, dtype=np.uint8)
    return array[..., None] if channels == 1 else array


def read_image(path: str | Path, *, size: int, channels: int, resize: str = "squash",
               dicom_window: Sequence[float] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """One image file as (size, size, channels) uint8 plus its original (height, width).

    Raises :class:`BadImageError` naming the file when it is missing or cannot be decoded.
    """
    check_image_options(channels, resize)
    image, original = open_image(path, size_hint=size, dicom_window=dicom_window)
    return to_channels(resize_square(image, size, resize), channels), original
