"""The data contract every dataset source satisfies.

A sample is a dict: ``image`` float32 (C, H, W) in [0, 1]; ``target`` int64 scalar (multiclass) or float32
(L,) in {0, 1} (multi-label); optionally ``mask`` uint8 (K, H, W) ground-truth localisation (K = 1 for a
lesion mask, K = L per finding), ``has_mask`` bool, ``label_mask`` float32 (L,) with 0 for labels to ignore,
``name`` (the image file, relative to the dataset's root) and ``pixel_scale`` float32 (2,): model-input pixels per
pixel of the original file along rows and columns (the pointing game's tolerance is defined at the image's own
resolution).
Keys are the same for every sample of a dataset so the default collate works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from trixai.core.kinds import TASKS


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data: class order, task type, channels, input size."""

    name: str
    class_names: tuple[str, ...]
    task: str
    in_chans: int
    image_size: int

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r} is not one of {list(TASKS)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class DatasetBundle:
    """The three splits of a dataset plus its :class:`DataInfo`; ``stats`` holds counts for the log."""

    info: DataInfo
    train: Dataset
    val: Dataset
    test: Dataset
    stats: dict = field(default_factory=dict)

    def split(self, name: str) -> Dataset:
        if name not in ("train", "val", "test"):
            raise ValueError(f"split={name!r} is not one of ['train', 'val', 'test']")
        return getattr(self, name)


class ArrayDataset(Dataset):
    """Samples from in-memory (or memory-mapped) uint8 arrays.

    ``images`` (N, H, W, C) uint8; ``targets`` (N,) int or (N, L) float; ``masks`` (N, K, H, W) uint8 or None;
    ``has_masks`` (N,) bool marks samples whose mask is ground truth (default: all, when masks are given);
    ``label_masks`` (N, L) with 0 for labels to ignore; ``names`` (N,) file names and ``pixel_scales`` (N, 2)
    model pixels per original pixel (rows, columns), for datasets read from files.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, masks: np.ndarray | None = None, *,
                 has_masks: np.ndarray | None = None, label_masks: np.ndarray | None = None,
                 names: Sequence[str] | None = None, pixel_scales: np.ndarray | None = None) -> None:
        for name, array in (("targets", targets), ("masks", masks), ("has_masks", has_masks),
                            ("label_masks", label_masks), ("names", names), ("pixel_scales", pixel_scales)):
            if array is not None and len(array) != len(images):
                raise ValueError(f"{name} has {len(array)} rows for {len(images)} images")
        if masks is not None and has_masks is None:
            has_masks = np.ones(len(images), dtype=bool)
        self.images, self.targets, self.masks = images, targets, masks
        self.has_masks, self.label_masks = has_masks, label_masks
        self.names, self.pixel_scales = names, pixel_scales

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = torch.from_numpy(np.array(self.images[index])).permute(2, 0, 1).float().div_(255.0)
        target = np.array(self.targets[index])  # a copy: the targets may be a read-only memory map
        sample = {
            "image": image,
            "target": torch.as_tensor(target, dtype=torch.float32 if target.ndim else torch.int64),
        }
        if self.masks is not None:
            sample["mask"] = torch.from_numpy(np.array(self.masks[index]))
            sample["has_mask"] = bool(self.has_masks[index])
        if self.label_masks is not None:
            sample["label_mask"] = torch.from_numpy(np.asarray(self.label_masks[index], dtype=np.float32))
        if self.names is not None:
            sample["name"] = self.names[index]
        if self.pixel_scales is not None:
            sample["pixel_scale"] = torch.as_tensor(np.asarray(self.pixel_scales[index]), dtype=torch.float32)
        return sample


def class_counts(targets: np.ndarray, num_classes: int) -> np.ndarray:
    """Samples per class (multiclass) or positives per label (multi-label)."""
    targets = np.asarray(targets)
    if targets.ndim == 1:
        return np.bincount(targets.astype(np.int64), minlength=num_classes)
    return targets.sum(axis=0).astype(np.int64)


def describe_counts(class_names: Sequence[str], counts: np.ndarray) -> str:
    return ", ".join(f"{name}={int(count)}" for name, count in zip(class_names, counts, strict=True))
