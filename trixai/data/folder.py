"""Class-per-subfolder images: ``root/<class>/*`` or, with official splits, ``root/{train,val,test}/<class>/*``.

Files with a suffix in ``IMAGE_SUFFIXES`` (PNG, JPEG, BMP, TIFF, DICOM) are collected recursively below each
class folder. Class order is ``class_names`` when given (each must be a folder; a folder not listed is an
error), else the folder names sorted; it is stored with the trained model. Without split folders the
images are split per class (stratified) by ``fractions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trixai.core.errors import TrixaiError
from trixai.data.images import IMAGE_SUFFIXES
from trixai.data.source import SPLITS, FileSource, SplitTable
from trixai.data.splits import check_fractions, group_split


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Row indices per split, splitting each class separately by ``fractions``."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        for name, index in group_split([str(i) for i in rows], fractions, seed + int(label)).items():
            parts[name].append(rows[index])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


class ImageFolder(FileSource):
    """One subfolder per class, multiclass."""

    name = "folder"

    def __init__(self, *, root: str, class_names: Sequence[str] | None = None,
                 fractions: dict[str, float] | None = None, seed: int = 0, channels: int = 3,
                 **options: Any) -> None:
        super().__init__(root=root, channels=channels, **options)
        self.fractions = dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
        check_fractions(self.fractions, "dataset.fractions", names=SPLITS)
        self.seed = int(seed)
        self.split_folders = (self.root / "train").is_dir()
        found = class_folders(self.root / "train" if self.split_folders else self.root)
        if not found:
            raise TrixaiError(f"dataset.root={self.root} has no class subfolders (expected root/<class>/<image> "
                              "or root/{train,val,test}/<class>/<image>)")
        self._classes = tuple(class_names) if class_names is not None else tuple(found)
        extra = sorted(set(found) - set(self._classes))
        if extra:
            raise TrixaiError(f"folder {extra[0]!r} in {self.root} is not in dataset.class_names="
                              f"{list(self._classes)}")

    def class_names(self) -> tuple[str, ...]:
        return self._classes

    def _table(self, folder: Path) -> SplitTable:
        paths, labels = [], []
        for index, name in enumerate(self._classes):
            class_dir = folder / name
            if not class_dir.is_dir():
                raise TrixaiError(f"class folder {class_dir} does not exist (dataset.class_names lists {name!r})")
            files = list_images(class_dir)
            paths += files
            labels += [index] * len(files)
        extra = sorted(set(class_folders(folder)) - set(self._classes))
        if extra:
            raise TrixaiError(f"folder {folder / extra[0]} is not a class in {list(self._classes)}")
        return SplitTable(paths, np.asarray(labels, dtype=np.int64), source=str(folder))

    def tables(self) -> dict[str, SplitTable]:
        if self.split_folders:
            missing = [s for s in SPLITS if not (self.root / s).is_dir()]
            if missing:
                raise TrixaiError(f"{self.root} has a train/ folder but no {missing[0]}/ folder; provide all of "
                                  f"{list(SPLITS)} or put the class folders directly in dataset.root")
            return {split: self._table(self.root / split) for split in SPLITS}
        table = self._table(self.root)
        index = stratified_split(table.targets, self.fractions, self.seed)
        return {split: table.subset(index[split]) for split in SPLITS}
