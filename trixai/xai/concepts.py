"""Concept and random image sets for TCAV: folders of images, or the embedded dataset's planted ruler.

The embedded concept renders dermoscopy-like lesions of random classes with the ruler artifact
(:func:`trixai.data.synthetic.render_ruler`); its random counter-sets are lesions from the same generator
without it, so a CAV can only pick up the ruler. Folder sets are decoded like dataset images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from trixai.core.errors import TrixaiError
from trixai.data.images import IMAGE_SUFFIXES, read_image
from trixai.data.labels import ISIC_CLASSES
from trixai.data.synthetic import render_lesion

EMBEDDED_CONCEPTS = ("ruler",)


def _to_tensor(images: np.ndarray) -> Tensor:
    """(N, H, W, C) uint8 or float in [0, 1] -> float (N, C, H, W) in [0, 1]."""
    array = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)


def image_files(folder: str | Path) -> list[Path]:
    """Image files (PNG, JPEG, BMP, TIFF, DICOM) directly inside ``folder``, sorted by name."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise TrixaiError(f"concept folder {path} does not exist or is not a directory")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise TrixaiError(f"concept folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def folder_images(folder: str | Path, *, size: int, in_chans: int, limit: int | None = None) -> Tensor:
    """Images of a concept folder as (N, in_chans, size, size) in [0, 1]."""
    files = image_files(folder)[:limit]
    return _to_tensor(np.stack([read_image(p, size=size, channels=in_chans)[0] for p in files]))


def ruler_sets(n: int, size: int, *, n_random: int, seed: int = 0) -> tuple[Tensor, list[Tensor]]:
    """The planted ruler concept: ``n`` lesion images with a ruler, and ``n_random`` sets of ``n`` without."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))

    def render(count: int, artifact: bool) -> Tensor:
        images = [render_lesion(ISIC_CLASSES[rng.integers(len(ISIC_CLASSES))], size, rng, artifact=artifact)[0]
                  for _ in range(count)]
        return _to_tensor(np.round(np.stack(images) * 255).astype(np.uint8))

    concept = render(n, True)
    return concept, [render(n, False) for _ in range(n_random)]


def random_subsets(images: Tensor, n: int, n_sets: int, *, seed: int = 0) -> list[Tensor]:
    """``n_sets`` random subsets of ``n`` images each (without replacement within a set)."""
    if len(images) < n:
        raise TrixaiError(f"random sets of {n} images need >= {n} dataset images, got {len(images)} "
                          "(raise explainer.max_points or lower explainer.n_concept)")
    generator = torch.Generator().manual_seed(seed)
    return [images[torch.randperm(len(images), generator=generator)[:n].to(images.device)] for _ in range(n_sets)]
