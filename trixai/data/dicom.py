"""Read a DICOM image into display-ready uint8 pixels: modality rescale, VOI window/LUT, MONOCHROME1 inversion.

Order of operations (DICOM PS3.3 C.11): stored values -> RescaleSlope/RescaleIntercept (modality LUT) ->
VOI (an explicit ``window``, else the file's first WindowCenter/WindowWidth, else its VOI LUT sequence, else
the image's own min..max) -> [0, 1] -> inverted for MONOCHROME1 (where low values are white) -> uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trixai.core.errors import TrixaiError

DICOM_SUFFIXES = (".dcm", ".dicom")


def is_dicom(path: Path) -> bool:
    """True for a ``.dcm``/``.dicom`` suffix, or a file carrying the ``DICM`` marker at byte 128."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM 'LINEAR' VOI function mapped to [0, 1] (PS3.3 C.11.2.1.2.1)."""
    if width < 1:
        raise TrixaiError(f"DICOM window width {width} must be >= 1")
    scaled = (values - (center - 0.5)) / (width - 1.0) + 0.5
    return np.clip(scaled, 0.0, 1.0)


def _first(value) -> float:
    """First value of a possibly multi-valued DICOM element."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = value[0]
    return float(value)


def _min_max(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def read_dicom(path: str | Path, *, window: Sequence[float] | None = None) -> np.ndarray:
    """Pixels of a single-frame DICOM as uint8 (H, W) for monochrome or (H, W, 3) for colour images.

    ``window`` = (center, width) in modality units (e.g. Hounsfield) overrides the file's VOI settings.
    """
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut, convert_color_space

    path = Path(path)
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except Exception as error:  # pydicom raises many types for bad/unsupported files
        raise TrixaiError(f"cannot read DICOM {path}: {error}") from error
    if int(dataset.get("NumberOfFrames", 1) or 1) > 1:
        raise TrixaiError(f"DICOM {path} has {dataset.NumberOfFrames} frames; only single-frame images are supported")
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if photometric.startswith("YBR"):
            pixels = convert_color_space(pixels, photometric, "RGB")
        if pixels.ndim != 3 or pixels.shape[-1] != 3:
            raise TrixaiError(f"DICOM {path}: PhotometricInterpretation {photometric} is not supported "
                              "(allowed: MONOCHROME1, MONOCHROME2, RGB, YBR_*)")
        if pixels.dtype == np.uint8:
            return pixels
        return np.round(_min_max(pixels.astype(np.float64)) * 255).astype(np.uint8)
    values = np.asarray(apply_modality_lut(pixels, dataset), dtype=np.float64)
    if window is not None:
        if len(window) != 2:
            raise TrixaiError(f"dataset.dicom_window={list(window)} must be [center, width]")
        unit = linear_window(values, float(window[0]), float(window[1]))
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        unit = linear_window(values, _first(dataset.WindowCenter), _first(dataset.WindowWidth))
    elif "VOILUTSequence" in dataset:
        unit = _min_max(np.asarray(apply_voi_lut(values, dataset), dtype=np.float64))
    else:
        unit = _min_max(values)
    if photometric == "MONOCHROME1":
        unit = 1.0 - unit
    return np.round(unit * 255).astype(np.uint8)
