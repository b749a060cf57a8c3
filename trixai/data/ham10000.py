"""HAM10000 as downloaded: ``HAM10000_metadata.csv`` plus the image folders, split by lesion.

``root`` holds ``HAM10000_metadata.csv`` (``lesion_id,image_id,dx,dx_type,age,sex,localization``) and the
``<image_id>.jpg`` files anywhere below it (``HAM10000_images_part_1/``, ``HAM10000_images_part_2/``).
Classes use the ISIC 2018 order (MEL, NV, BCC, AKIEC, BKL, DF, VASC) so models transfer between the two.
Splits are drawn by ``lesion_id``: all images of one lesion land in the same split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trixai.data.labels import ISIC_CLASSES
from trixai.data.source import FileSource, SplitTable
from trixai.data.splits import check_fractions, group_split
from trixai.data.tables import bad_value, read_table

METADATA = "HAM10000_metadata.csv"
DX = {name.lower(): i for i, name in enumerate(ISIC_CLASSES)}


class HAM10000(FileSource):
    """HAM10000: 7 diagnoses (``dx``), multiclass, lesion-wise train/val/test split."""

    name = "ham10000"
    group_kind = "lesion"

    def __init__(self, *, root: str, fractions: dict[str, float] | None = None, seed: int = 0,
                 channels: int = 3, **options: Any) -> None:
        super().__init__(root=root, channels=channels, **options)
        self.fractions = dict(fractions or {"train": 0.7, "val": 0.15, "test": 0.15})
        check_fractions(self.fractions, "dataset.fractions", names=("train", "val", "test"))
        self.seed = int(seed)

    def class_names(self) -> tuple[str, ...]:
        return ISIC_CLASSES

    def tables(self) -> dict[str, SplitTable]:
        path = self.root / METADATA
        rows = read_table(path, ["lesion_id", "image_id", "dx"], "HAM10000 metadata")
        files = {p.stem: p for p in sorted(self.root.rglob("*.jpg"))}
        labels = np.empty(len(rows), dtype=np.int64)
        for r, row in enumerate(rows):
            if row["dx"] not in DX:
                raise bad_value(path, r + 1, "dx", row["dx"], f"one of {sorted(DX)}")
            labels[r] = DX[row["dx"]]
        paths = [files.get(row["image_id"], self.root / f"{row['image_id']}.jpg") for row in rows]
        table = SplitTable(paths, labels, source=str(path), groups=[row["lesion_id"] for row in rows])
        index = group_split(table.groups, self.fractions, self.seed)
        return {split: table.subset(index[split]) for split in ("train", "val", "test")}
