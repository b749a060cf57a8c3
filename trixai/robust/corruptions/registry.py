"""Named corruption sets with five severities each, and the set a dataset's modality picks by default.

- ``dermoscopy``: MedMNIST-C's DermaMNIST set (Di Salvo et al. 2024, ``medmnistc/corruptions/registry.py``,
  ``dermamnist``) plus ``hair`` (trixai's own);
- ``chest_xray``: MedMNIST-C's ChestMNIST set (``chestmnist``);
- ``generic``: ImageNet-C's noise, blur and digital corruptions (Hendrycks & Dietterich 2019) plus speckle noise
  and Gaussian blur from its extra set; weather and elastic/glass distortions are left out (natural-image scenes).

docs/robustness.md has the table of corruptions, parameters, sources and deviations.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from trixai.core.errors import TrixaiError
from trixai.robust.corruptions import artefacts, blur, digital, noise
from trixai.robust.corruptions.base import Corruption

MEDMNIST_C = "MedMNIST-C (Di Salvo et al. 2024), registry {}"
IMAGENET_C = "ImageNet-C (Hendrycks & Dietterich 2019)"


def _zooms(stop: float, step: float) -> tuple[float, ...]:
    return tuple(round(float(z), 4) for z in np.arange(1, stop, step))


ZOOMS = (_zooms(1.11, 0.01), _zooms(1.16, 0.01), _zooms(1.21, 0.02), _zooms(1.26, 0.02), _zooms(1.31, 0.03))
PIXEL_NOTE = "box-average down, nearest-neighbour up (MedMNIST-C enlarges with PIL's box filter)"
JPEG_NOTE = "kornia's differentiable codec (smooth rounding) instead of libjpeg"


def _medmnist_common(dataset: str) -> dict[str, Corruption]:
    src = MEDMNIST_C.format(dataset)
    derma = dataset == "dermamnist"
    return {
        "pixelate": Corruption("pixelate", digital.pixelate, (0.7, 0.5, 0.4, 0.3, 0.25) if derma else
                               (0.30, 0.25, 0.20, 0.15, 0.10), src, note=PIXEL_NOTE),
        "jpeg_compression": Corruption("jpeg_compression", digital.jpeg, (30, 20, 15, 10, 7) if derma else
                                       (50, 30, 15, 10, 7), src, note=JPEG_NOTE),
        "gaussian_noise": Corruption("gaussian_noise", noise.gaussian_noise, (0.04, 0.08, 0.12, 0.18, 0.26), src),
        "speckle_noise": Corruption("speckle_noise", noise.speckle_noise, (0.05, 0.15, 0.2, 0.35, 0.45), src),
        "impulse_noise": Corruption("impulse_noise", noise.impulse_noise, (0.01, 0.03, 0.06, 0.09, 0.17), src),
        "shot_noise": Corruption("shot_noise", noise.shot_noise, (60, 25, 18, 10, 5), src),
    }


def _intensity(src: str, contrast_down: tuple) -> dict[str, Corruption]:
    return {
        "brightness_up": Corruption("brightness_up", digital.brightness, (1.1, 1.2, 1.3, 1.4, 1.5), src),
        "brightness_down": Corruption("brightness_down", digital.brightness, (0.9, 0.8, 0.7, 0.6, 0.5), src),
        "contrast_up": Corruption("contrast_up", digital.contrast, (1.1, 1.2, 1.3, 1.4, 1.6), src),
        "contrast_down": Corruption("contrast_down", digital.contrast, contrast_down, src),
    }


def dermoscopy() -> dict[str, Corruption]:
    src = MEDMNIST_C.format("dermamnist")
    return {
        **_medmnist_common("dermamnist"),
        "defocus_blur": Corruption("defocus_blur", blur.defocus_blur,
                                   ((4, 0.1), (5, 0.2), (6, 0.3), (7, 0.4), (8, 0.5)), src, "pixels"),
        "motion_blur": Corruption("motion_blur", blur.motion_blur,
                                  ((10, 5), (15, 5), (15, 8), (15, 12), (20, 15)), src, "pixels"),
        "zoom_blur": Corruption("zoom_blur", blur.zoom_blur, ZOOMS, src),
        **_intensity(src, (0.8, 0.7, 0.6, 0.5, 0.4)),
        "black_corner": Corruption("black_corner", artefacts.black_corner, (1.10, 1.05, 1.00, 0.95, 0.90), src,
                                   note="MedMNIST-C lists 0.90 at severity 4 and 0.95 at 5; ordered here so the "
                                        "frame grows with severity"),
        "characters": Corruption("characters", artefacts.characters,
                                 ((1, 6, 0.14), (2, 7, 0.15), (3, 8, 0.16), (4, 9, 0.17), (6, 10, 0.18)), src,
                                 "pixels", note="PIL's default font instead of OpenCV's Hershey font; text height "
                                                "at least 3 px"),
        "hair": Corruption("hair", artefacts.hair, ((2, 2.0), (4, 2.0), (6, 2.5), (9, 2.5), (12, 3.0)),
                           "trixai (hair strands, a common dermoscopy artefact); (strands, width px at 224)",
                           "pixels"),
    }


def chest_xray() -> dict[str, Corruption]:
    src = MEDMNIST_C.format("chestmnist")
    return {
        **_medmnist_common("chestmnist"),
        "gaussian_blur": Corruption("gaussian_blur", blur.gaussian_blur_kernel, (3, 5, 7, 9, 11), src, "pixels",
                                    note="kernel size; sigma as torchvision's default for it"),
        **_intensity(src, (0.9, 0.8, 0.7, 0.6, 0.4)),
        "gamma_corr_up": Corruption("gamma_corr_up", digital.gamma, (1.1, 1.2, 1.3, 1.4, 1.6), src),
        "gamma_corr_down": Corruption("gamma_corr_down", digital.gamma, (0.9, 0.8, 0.7, 0.6, 0.4), src),
    }


def generic() -> dict[str, Corruption]:
    src = IMAGENET_C
    return {
        "gaussian_noise": Corruption("gaussian_noise", noise.gaussian_noise, (0.08, 0.12, 0.18, 0.26, 0.38), src),
        "shot_noise": Corruption("shot_noise", noise.shot_noise, (60, 25, 12, 5, 3), src),
        "impulse_noise": Corruption("impulse_noise", noise.impulse_noise, (0.03, 0.06, 0.09, 0.17, 0.27), src),
        "speckle_noise": Corruption("speckle_noise", noise.speckle_noise, (0.15, 0.2, 0.35, 0.45, 0.6), src),
        "defocus_blur": Corruption("defocus_blur", blur.defocus_blur,
                                   ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)), src, "pixels"),
        "motion_blur": Corruption("motion_blur", blur.motion_blur,
                                  ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)), src, "pixels"),
        "zoom_blur": Corruption("zoom_blur", blur.zoom_blur, ZOOMS, src),
        "gaussian_blur": Corruption("gaussian_blur", blur.gaussian_blur_sigma, (1, 2, 3, 4, 6), src, "pixels",
                                    note="sigma"),
        "brightness": Corruption("brightness", digital.brightness_hsv, (0.1, 0.2, 0.3, 0.4, 0.5), src),
        "contrast": Corruption("contrast", digital.contrast_channel_mean, (0.4, 0.3, 0.2, 0.1, 0.05), src),
        "pixelate": Corruption("pixelate", digital.pixelate, (0.6, 0.5, 0.4, 0.3, 0.25), src),
        "jpeg_compression": Corruption("jpeg_compression", digital.jpeg, (25, 18, 15, 10, 7), src, note=JPEG_NOTE),
    }


SETS = {"dermoscopy": dermoscopy, "chest_xray": chest_xray, "generic": generic}

# The set a dataset picks with ``set: auto``: by the dataset source's name (``DataInfo.name``) or MedMNIST flag.
MODALITY = {"isic2018": "dermoscopy", "ham10000": "dermoscopy", "synthetic_lesions": "dermoscopy",
            "dermamnist": "dermoscopy", "chexpert": "chest_xray", "nih_cxr14": "chest_xray",
            "synthetic_cxr": "chest_xray", "chestmnist": "chest_xray", "pneumoniamnist": "chest_xray"}


def default_set(dataset: str | None, flag: str | None = None) -> str:
    """The corruption set of a dataset (``generic`` for folders, CSV tables and other modalities)."""
    return MODALITY.get(str(flag or "").lower()) or MODALITY.get(str(dataset or "").lower()) or "generic"


def corruption_set(name: str, only: list[str] | tuple[str, ...] | None = None) -> dict[str, Corruption]:
    """The corruptions of set ``name`` in their fixed order, or the named subset ``only`` of them."""
    if name not in SETS:
        raise TrixaiError(f"corruptions.set={name!r} is not one of {sorted(SETS)} (or auto)")
    corruptions = SETS[name]()
    if only:
        unknown = [c for c in only if c not in corruptions]
        if unknown:
            raise TrixaiError(f"corruptions.only: {unknown} are not in the {name} set; choose from {list(corruptions)}")
        corruptions = {c: corruptions[c] for c in only}
    return corruptions


def describe(corruptions: Mapping[str, Corruption]) -> dict[str, dict]:
    return {name: c.describe() for name, c in corruptions.items()}
