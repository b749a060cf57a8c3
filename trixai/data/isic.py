"""ISIC 2018 Task 3 (lesion diagnosis) in its official layout.

``root`` holds ``ISIC2018_Task3_{Training,Validation,Test}_Input/ISIC_*.jpg`` and the ground truth
``ISIC2018_Task3_{Training,Validation,Test}_GroundTruth.csv`` (directly in ``root`` or inside the
``..._GroundTruth/`` folder of the official zip), columns ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` one-hot.
``split=official`` uses the official training/validation/test sets; ``split=lesion`` keeps the official test
set and re-splits the training set into train/val by ``lesion_id`` from
``ISIC2018_Task3_Training_LesionGroupings.csv`` so no lesion has images in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trixai.core.errors import TrixaiError
from trixai.data.labels import ISIC_CLASSES
from trixai.data.source import FileSource, SplitTable
from trixai.data.splits import check_fractions, group_split
from trixai.data.tables import bad_value, read_table

PREFIX = "ISIC2018_Task3_"
PARTS = {"train": "Training", "val": "Validation", "test": "Test"}
SPLIT_MODES = ("official", "lesion")


def one_hot_labels(path: Path, rows: list[dict[str, str]], classes: tuple[str, ...]) -> np.ndarray:
    """Class index per row of a one-hot table; every row must hold exactly one 1 and zeros elsewhere."""
    labels = np.empty(len(rows), dtype=np.int64)
    for r, row in enumerate(rows):
        values = []
        for name in classes:
            try:
                values.append(float(row[name]))
            except (TypeError, ValueError):
                raise bad_value(path, r + 1, name, row[name], "0.0 or 1.0") from None
        hot = [i for i, v in enumerate(values) if v == 1.0]
        if len(hot) != 1 or any(v not in (0.0, 1.0) for v in values):
            raise TrixaiError(f"{path} line {r + 2}: {dict(zip(classes, values, strict=True))} is not one-hot; "
                              f"expected exactly one 1.0 among {list(classes)}")
        labels[r] = hot[0]
    return labels


def find_in_root(root: Path, name: str, folder: str) -> Path:
    """``root/name`` or ``root/folder/name`` (official zips put the CSVs inside a folder of that name)."""
    for candidate in (root / name, root / folder / name):
        if candidate.is_file():
            return candidate
    raise TrixaiError(f"{name} not found: expected {root / name} or {root / folder / name}")


class ISIC2018(FileSource):
    """ISIC 2018 Task 3: 7 classes in the official column order, multiclass."""

    name = "isic2018"
    group_kind = "lesion"

    def __init__(self, *, root: str, split: str = "official", val_fraction: float = 0.1, seed: int = 0,
                 channels: int = 3, **options: Any) -> None:
        super().__init__(root=root, channels=channels, **options)
        if split not in SPLIT_MODES:
            raise TrixaiError(f"dataset.split={split!r} is not one of {list(SPLIT_MODES)}")
        check_fractions({"train": 1 - val_fraction, "val": val_fraction}, "dataset.val_fraction (as train/val)")
        self.split, self.val_fraction, self.seed = split, float(val_fraction), int(seed)

    def class_names(self) -> tuple[str, ...]:
        return ISIC_CLASSES

    def _part(self, part: str) -> SplitTable:
        csv_name = f"{PREFIX}{part}_GroundTruth.csv"
        path = find_in_root(self.root, csv_name, f"{PREFIX}{part}_GroundTruth")
        rows = read_table(path, ["image", *ISIC_CLASSES], f"ISIC 2018 {part} ground truth")
        images = self.root / f"{PREFIX}{part}_Input"
        return SplitTable([images / f"{row['image']}.jpg" for row in rows], one_hot_labels(path, rows, ISIC_CLASSES),
                          source=str(path), groups=None)

    def _lesions(self, table: SplitTable) -> list[str]:
        name = f"{PREFIX}Training_LesionGroupings.csv"
        path = find_in_root(self.root, name, f"{PREFIX}Training_GroundTruth")
        lesion = {row["image"]: row["lesion_id"] for row in read_table(path, ["image", "lesion_id"], name)}
        groups = []
        for image in (p.stem for p in table.paths):
            if image not in lesion:
                raise TrixaiError(f"{path} has no row for image {image!r} (listed in {table.source}); "
                                  "split=lesion needs a lesion_id for every training image")
            groups.append(lesion[image])
        return groups

    def tables(self) -> dict[str, SplitTable]:
        if self.split == "official":
            return {split: self._part(part) for split, part in PARTS.items()}
        training = self._part("Training")
        training.groups = self._lesions(training)
        index = group_split(training.groups, {"train": 1 - self.val_fraction, "val": self.val_fraction}, self.seed)
        return {"train": training.subset(index["train"]), "val": training.subset(index["val"]),
                "test": self._part("Test")}
