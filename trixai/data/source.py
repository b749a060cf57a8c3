"""Shared machinery of the on-disk datasets: split tables -> decoded cache -> :class:`DatasetBundle`.

A dataset class parses its official layout into one :class:`SplitTable` per split (image paths, targets,
optional label masks, groups and boxes); :class:`FileSource` decodes the union of all images once (see
:mod:`trixai.data.cache`), applies the bad-file policy, checks that no group crosses splits, logs the class
counts and assembles :class:`ArrayDataset` views onto the cached array.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from trixai.core.errors import TrixaiError
from trixai.data.base import ArrayDataset, DataInfo, DatasetBundle, describe_counts
from trixai.data.cache import CachedImages, cached_images, file_fingerprints
from trixai.data.images import (
    DECODER_VERSION,
    BadImageError,
    box_to_output,
    check_image_options,
    pixel_scales,
    read_image,
)
from trixai.data.splits import check_disjoint

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
Box = tuple[int, tuple[float, float, float, float]]  # (label index, 4 box coordinates in pixels)


@dataclass
class SplitTable:
    """One split before decoding. ``source`` names the file the rows came from (for error messages)."""

    paths: list[Path]
    targets: np.ndarray
    source: str
    label_masks: np.ndarray | None = None
    groups: list[str] | None = None
    boxes: list[list[Box]] | None = None

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.paths):
            raise ValueError(f"{len(self.targets)} targets for {len(self.paths)} paths")

    def subset(self, keep: np.ndarray) -> SplitTable:
        """Rows where ``keep`` (bool or index array) selects."""
        index = np.arange(len(self.paths))[keep]

        def pick(rows: list | None) -> list | None:
            return None if rows is None else [rows[i] for i in index]

        return SplitTable([self.paths[i] for i in index], self.targets[index], self.source,
                          None if self.label_masks is None else self.label_masks[index],
                          pick(self.groups), pick(self.boxes))


class Rows:
    """Row view ``base[index[i]]`` of an array without copying it (keeps a memory map lazy)."""

    def __init__(self, base: np.ndarray, index: np.ndarray) -> None:
        self.base, self.index = base, np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.array(self.base[self.index[i]])  # a writable copy of one row


def rasterise_boxes(boxes: Sequence[Box], num_labels: int, size: int) -> np.ndarray:
    """(num_labels, size, size) uint8 with 1 on every pixel a box (x0, y0, x1, y1) touches, per label."""
    mask = np.zeros((num_labels, size, size), np.uint8)
    for label, (x0, y0, x1, y1) in boxes:
        c0, r0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        c1, r1 = min(size, max(int(np.ceil(x1)), c0 + 1)), min(size, max(int(np.ceil(y1)), r0 + 1))
        mask[label, r0:r1, c0:c1] = 1
    return mask


class BoxMasks:
    """Per-sample localisation masks rasterised on access from boxes in output pixels (K = number of labels)."""

    def __init__(self, boxes: list[list[Box]], num_labels: int, size: int) -> None:
        self.boxes, self.num_labels, self.size = boxes, num_labels, size

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, i: int) -> np.ndarray:
        return rasterise_boxes(self.boxes[i], self.num_labels, self.size)


class FileSource(ABC):
    """Base of the datasets read from image files; subclasses implement ``class_names``, ``task`` and ``tables``."""

    name = ""
    task = "multiclass"
    group_kind = "patient"

    def __init__(self, *, root: str | Path, image_size: int, channels: int, resize: str = "squash",
                 cache_dir: str | Path | None = None, decode_workers: int = 4, skip_bad_files: bool = False,
                 dicom_window: Sequence[float] | None = None) -> None:
        if root is None or str(root) in ("", "???"):
            raise TrixaiError(f"dataset.root is not set: point it at your {self.name} folder")
        self.root = Path(root).expanduser().resolve()
        if not self.root.exists():
            raise TrixaiError(f"dataset.root={self.root} does not exist")
        if int(image_size) < 8:
            raise TrixaiError(f"dataset.image_size={image_size} must be >= 8")
        check_image_options(int(channels), resize)
        self.image_size, self.channels, self.resize = int(image_size), int(channels), resize
        self.cache_dir = cache_dir
        self.decode_workers, self.skip_bad_files = int(decode_workers), bool(skip_bad_files)
        self.dicom_window = None if dicom_window is None else [float(v) for v in dicom_window]

    @abstractmethod
    def class_names(self) -> tuple[str, ...]:
        """Class (or finding) names in label order."""

    @abstractmethod
    def tables(self) -> dict[str, SplitTable]:
        """One table per split (image paths, targets, ...) read from the dataset's official layout."""

    def info(self) -> DataInfo:
        return DataInfo(self.name, tuple(self.class_names()), self.task, self.channels, self.image_size)

    def _decode(self, tables: dict[str, SplitTable]) -> tuple[dict[Path, int], CachedImages]:
        unique = sorted({path for table in tables.values() for path in table.paths})
        prints = file_fingerprints(unique)
        missing = {Path(p) for p, size, _ in prints if size < 0}
        if missing and not self.skip_bad_files:  # fail before decoding anything
            for table in tables.values():
                for path in table.paths:
                    if path in missing:
                        raise BadImageError(f"image file {path} (listed in {table.source}) does not exist; "
                                            "set dataset.skip_bad_files=true to skip missing or corrupt files")
        key = {"files": prints, "image_size": self.image_size, "channels": self.channels, "resize": self.resize,
               "dicom_window": self.dicom_window, "decoder": DECODER_VERSION}

        def produce(i: int):
            return read_image(unique[i], size=self.image_size, channels=self.channels, resize=self.resize,
                              dicom_window=self.dicom_window)

        decoded = cached_images(name=self.name, key=key, n=len(unique),
                                shape=(self.image_size, self.image_size, self.channels), produce=produce,
                                cache_dir=self.cache_dir, num_workers=self.decode_workers,
                                stop_on_error=not self.skip_bad_files, desc=f"{self.name}: decoding")
        if decoded.errors and not self.skip_bad_files:
            first = decoded.errors[min(decoded.errors)]
            raise BadImageError(f"{first} ({len(decoded.errors)} bad files in the cache); "
                                "set dataset.skip_bad_files=true to skip them")
        return {path: i for i, path in enumerate(unique)}, decoded

    def load(self) -> DatasetBundle:
        info = self.info()
        tables = self.tables()
        for split in SPLITS:
            if not tables[split].paths:
                raise TrixaiError(f"dataset {self.name}: the {split} split is empty (rows from "
                                  f"{tables[split].source}); check dataset.root, the filters and the split fractions")
        grouped = {split: table.groups for split, table in tables.items() if table.groups is not None}
        if len(grouped) > 1:
            check_disjoint(grouped, self.group_kind)
        position, decoded = self._decode(tables)
        datasets, stats = {}, {"class_counts": {}, "labelled_counts": {}, "num_samples": {}, "skipped": {},
                               "boxes": {}}
        for split in SPLITS:
            table = tables[split]
            index = np.array([position[p] for p in table.paths], dtype=np.int64)
            keep = np.array([i not in decoded.errors for i in index], dtype=bool)
            skipped = int((~keep).sum())
            if skipped:
                log.warning("%s %s: skipped %d unreadable or missing files, e.g. %s", self.name, split, skipped,
                            decoded.errors[int(index[~keep][0])])
            table, index = table.subset(keep), index[keep]
            if not table.paths:
                raise TrixaiError(f"dataset {self.name}: the {split} split is empty after skipping {skipped} bad "
                                  f"files listed in {table.source}")
            datasets[split] = self._dataset(table, index, decoded, info)
            stats["skipped"][split] = skipped
            stats["num_samples"][split] = len(table.paths)
            stats["class_counts"][split] = self._counts(table, info).tolist()
            if table.label_masks is not None:
                stats["labelled_counts"][split] = table.label_masks.sum(axis=0).astype(int).tolist()
            if table.boxes is not None:
                stats["boxes"][split] = int(sum(len(b) for b in table.boxes))
            log.info("%s %s (%d images): %s", self.name, split, len(table.paths),
                     describe_counts(info.class_names, np.asarray(stats["class_counts"][split])))
        stats = {key: value for key, value in stats.items() if value}
        return DatasetBundle(info=info, **datasets, stats=stats)

    @staticmethod
    def _counts(table: SplitTable, info: DataInfo) -> np.ndarray:
        """Samples per class (multiclass) or positives per label, counting only unmasked labels."""
        if table.targets.ndim == 1:
            return np.bincount(table.targets.astype(np.int64), minlength=info.num_classes)
        weights = table.targets if table.label_masks is None else table.targets * table.label_masks
        return weights.sum(axis=0).astype(np.int64)

    def _dataset(self, table: SplitTable, index: np.ndarray, decoded: CachedImages, info: DataInfo) -> Dataset:
        masks = has_masks = None
        if table.boxes is not None:
            boxes = [[(label, box_to_output(box, tuple(decoded.sizes[i]), self.image_size, self.resize))
                      for label, box in row] for row, i in zip(table.boxes, index, strict=True)]
            masks = BoxMasks(boxes, info.num_classes, self.image_size)
            has_masks = np.array([bool(row) for row in boxes], dtype=bool)
        names = [str(p.relative_to(self.root)) if p.is_relative_to(self.root) else p.name for p in table.paths]
        return ArrayDataset(Rows(decoded.images, index), table.targets, masks, has_masks=has_masks,
                            label_masks=table.label_masks, names=names,
                            pixel_scales=pixel_scales(np.asarray(decoded.sizes)[index], self.image_size, self.resize))
