"""NIH ChestX-ray14 (Wang et al. 2017) as downloaded, with the optional bounding boxes.

``root`` holds ``Data_Entry_2017.csv`` or ``Data_Entry_2017_v2020.csv`` (``Image Index``, ``Finding Labels`` with ``|``-separated findings or
``No Finding``, ``Patient ID``, ``View Position``, ...), the official ``train_val_list.txt`` and
``test_list.txt``, and the PNGs in ``images*/`` folders (``images/``, or ``images_001/images/`` ...
``images_012/images/`` as on Kaggle). The official lists are patient-wise; val is carved from train_val by
``Patient ID``. ``BBox_List_2017.csv`` (``Image Index, Finding Label, Bbox [x, y, w, h]`` in pixels of the
1024 x 1024 PNGs) becomes per-finding masks (K = 14 channels) scaled to the input size, ``has_mask`` False for
images without a box.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trixai.core.errors import TrixaiError
from trixai.data.labels import NIH_FINDINGS as FINDINGS
from trixai.data.source import Box, FileSource, SplitTable
from trixai.data.splits import check_fractions, group_split
from trixai.data.tables import bad_value, read_lines, read_table, require_file

NO_FINDING = "No Finding"
BOX_SPELLINGS = {"Infiltrate": "Infiltration"}  # BBox_List_2017.csv spells it differently
DATA_ENTRIES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")  # original and 2020 re-release
BBOX_LIST = "BBox_List_2017.csv"


def parse_findings(path: Path, row: int, value: str) -> np.ndarray:
    """Multi-hot (14,) float32 from a ``Finding Labels`` cell."""
    target = np.zeros(len(FINDINGS), np.float32)
    if value.strip() == NO_FINDING:
        return target
    for finding in value.split("|"):
        if finding.strip() not in FINDINGS:
            raise bad_value(path, row, "Finding Labels", finding, f"'{NO_FINDING}' or '|'-separated names from "
                            f"{list(FINDINGS)}")
        target[FINDINGS.index(finding.strip())] = 1.0
    return target


def read_boxes(path: Path) -> dict[str, list[Box]]:
    """Boxes per image name: (finding index, (x, y, w, h)). The header's ``Bbox [x,y,w,h]`` spans 4 columns."""
    require_file(path, "NIH bounding-box list")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        starts = [i for i, name in enumerate(header) if name.strip().startswith("Bbox")]
        for column in ("Image Index", "Finding Label"):
            if column not in header:
                raise TrixaiError(f"{path} has no column {column!r} (found: {header})")
        if not starts:
            raise TrixaiError(f"{path} has no column starting with 'Bbox' (found: {header})")
        image_col, label_col, box_col = header.index("Image Index"), header.index("Finding Label"), starts[0]
        boxes: dict[str, list[Box]] = {}
        for r, row in enumerate(reader, start=1):
            if not any(cell.strip() for cell in row):
                continue
            label = BOX_SPELLINGS.get(row[label_col].strip(), row[label_col].strip())
            if label not in FINDINGS:
                raise bad_value(path, r, "Finding Label", row[label_col], f"one of {list(FINDINGS)} or 'Infiltrate'")
            try:
                x, y, w, h = (float(v) for v in row[box_col:box_col + 4])
            except ValueError:
                raise bad_value(path, r, header[box_col], ",".join(row[box_col:box_col + 4]),
                                "four numbers x, y, w, h") from None
            if w <= 0 or h <= 0:
                raise bad_value(path, r, header[box_col], f"{x},{y},{w},{h}", "a box with positive width and height")
            boxes.setdefault(row[image_col].strip(), []).append((FINDINGS.index(label), (x, y, w, h)))
    return boxes


class NIHChestXray14(FileSource):
    """ChestX-ray14: 14 findings, multi-label; official patient-wise train_val/test lists; optional boxes."""

    name = "nih_cxr14"
    task = "multilabel"

    def __init__(self, *, root: str, bbox_file: str | None = "auto", view_positions: Sequence[str] | None = None,
                 val_fraction: float = 0.1, seed: int = 0, channels: int = 1, **options: Any) -> None:
        super().__init__(root=root, channels=channels, **options)
        check_fractions({"train": 1 - val_fraction, "val": val_fraction}, "dataset.val_fraction (as train/val)")
        self.bbox_file, self.val_fraction, self.seed = bbox_file, float(val_fraction), int(seed)
        self.view_positions = None if view_positions is None else tuple(view_positions)

    def class_names(self) -> tuple[str, ...]:
        return FINDINGS

    def _box_path(self) -> Path | None:
        if self.bbox_file is None:
            return None
        if self.bbox_file == "auto":
            path = self.root / BBOX_LIST
            return path if path.is_file() else None
        path = Path(self.bbox_file).expanduser()
        return path if path.is_absolute() else self.root / path

    def _data_entry(self) -> Path:
        for name in DATA_ENTRIES:
            if (self.root / name).is_file():
                return self.root / name
        raise TrixaiError(f"NIH data entry table not found: expected {self.root / DATA_ENTRIES[0]} or "
                          f"{self.root / DATA_ENTRIES[1]}")

    def _image_files(self) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for path in sorted(self.root.glob("images*/**/*.png")):
            files.setdefault(path.name, path)
        return files

    def tables(self) -> dict[str, SplitTable]:
        entry = self._data_entry()
        rows = read_table(entry, ["Image Index", "Finding Labels", "Patient ID", "View Position"], "NIH data entry")
        by_name = {row["Image Index"]: (r, row) for r, row in enumerate(rows, start=1)}
        files = self._image_files()
        box_path = self._box_path()
        boxes = read_boxes(box_path) if box_path is not None else None
        tables = {}
        for split, list_name in (("train_val", "train_val_list.txt"), ("test", "test_list.txt")):
            list_path = self.root / list_name
            names = read_lines(list_path, f"official NIH list {list_name}")
            picked = []
            for name in names:
                if name not in by_name:
                    raise TrixaiError(f"{list_path}: image {name!r} has no row in {entry}")
                r, row = by_name[name]
                if self.view_positions is None or row["View Position"] in self.view_positions:
                    picked.append((r, row))
            targets = np.stack([parse_findings(entry, r, row["Finding Labels"]) for r, row in picked]) \
                if picked else np.zeros((0, len(FINDINGS)), np.float32)
            tables[split] = SplitTable(
                [files.get(row["Image Index"], self.root / "images" / row["Image Index"]) for _, row in picked],
                targets, source=str(list_path), groups=[row["Patient ID"] for _, row in picked],
                boxes=None if boxes is None else [boxes.get(row["Image Index"], []) for _, row in picked])
        if boxes is not None:
            unknown = sorted(set(boxes) - set(by_name))
            if unknown:
                raise TrixaiError(f"{box_path}: image {unknown[0]!r} has no row in {entry}")
        train_val = tables["train_val"]
        if not train_val.paths:
            raise TrixaiError(f"dataset nih_cxr14: no train_val images left (view_positions={self.view_positions})")
        index = group_split(train_val.groups, {"train": 1 - self.val_fraction, "val": self.val_fraction}, self.seed)
        return {"train": train_val.subset(index["train"]), "val": train_val.subset(index["val"]),
                "test": tables["test"]}
