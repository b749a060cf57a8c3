"""Images listed in a CSV: an image-path column plus label column(s), single- or multi-label.

Label modes: one ``label_columns`` entry holding class names or ids (multiclass); one column with several
labels joined by ``label_separator`` (multi-label, empty cell = no label); several columns of 0/1 (multi-label,
class names = column names). Class order: ``class_names`` when given (a value outside it is an error), else
the sorted distinct values (numerically when all are integers). Splits: ``split_column`` with values
train/val/test, or a random split by ``fractions``, grouped by ``group_column`` (e.g. a patient id) when set.
Image paths are relative to ``root``/``image_dir`` unless absolute.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trixai.core.errors import TrixaiError
from trixai.data.source import SPLITS, FileSource, SplitTable
from trixai.data.splits import check_fractions, group_split
from trixai.data.tables import bad_value, read_table

BINARY = {"0": 0.0, "1": 1.0, "0.0": 0.0, "1.0": 1.0}


def sorted_values(values: set[str]) -> tuple[str, ...]:
    if all(v.lstrip("-").isdigit() for v in values):
        return tuple(sorted(values, key=int))
    return tuple(sorted(values))


class CsvTable(FileSource):
    """A CSV of image paths and labels."""

    name = "csv"

    def __init__(self, *, root: str, csv: str = "labels.csv", image_column: str = "image",
                 label_columns: Sequence[str] = ("label",), label_separator: str | None = None,
                 class_names: Sequence[str] | None = None, split_column: str | None = None,
                 group_column: str | None = None, fractions: dict[str, float] | None = None, seed: int = 0,
                 image_dir: str | None = None, channels: int = 3, **options: Any) -> None:
        super().__init__(root=root, channels=channels, **options)
        self.csv = Path(csv) if Path(csv).is_absolute() else self.root / csv
        self.image_column, self.label_columns = image_column, tuple(label_columns)
        if not self.label_columns:
            raise TrixaiError("dataset.label_columns is empty; name the column(s) holding the labels")
        if label_separator is not None and len(self.label_columns) != 1:
            raise TrixaiError("dataset.label_separator needs exactly one dataset.label_columns entry")
        self.separator = label_separator
        self.task = "multiclass" if len(self.label_columns) == 1 and label_separator is None else "multilabel"
        self.given_names = None if class_names is None else tuple(str(c) for c in class_names)
        if len(self.label_columns) > 1 and self.given_names is not None:
            raise TrixaiError("dataset.class_names cannot be set with several label_columns (the column names are "
                              "the class names)")
        self.split_column, self.group_column = split_column, group_column
        self.fractions = dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
        check_fractions(self.fractions, "dataset.fractions", names=SPLITS)
        self.seed = int(seed)
        self.image_dir = self.root if image_dir is None else self.root / image_dir
        self._rows = self._read()
        self._classes = self._class_order()

    def _read(self) -> list[dict[str, str]]:
        required = [self.image_column, *self.label_columns]
        required += [c for c in (self.split_column, self.group_column) if c is not None]
        return read_table(self.csv, required, "dataset CSV (dataset.csv)")

    def _tokens(self, cell: str) -> list[str]:
        return [t.strip() for t in cell.split(self.separator) if t.strip()]

    def _class_order(self) -> tuple[str, ...]:
        if len(self.label_columns) > 1:
            return self.label_columns
        if self.given_names is not None:
            return self.given_names
        column = self.label_columns[0]
        if self.separator is None:
            return sorted_values({row[column].strip() for row in self._rows})
        return sorted_values({t for row in self._rows for t in self._tokens(row[column])})

    def class_names(self) -> tuple[str, ...]:
        return self._classes

    def _targets(self) -> np.ndarray:
        names = {name: i for i, name in enumerate(self._classes)}
        rows, path = self._rows, self.csv
        if self.task == "multiclass":
            column = self.label_columns[0]
            labels = np.empty(len(rows), np.int64)
            for r, row in enumerate(rows):
                if row[column].strip() not in names:
                    raise bad_value(path, r + 1, column, row[column], f"one of {list(self._classes)}")
                labels[r] = names[row[column].strip()]
            return labels
        targets = np.zeros((len(rows), len(self._classes)), np.float32)
        for r, row in enumerate(rows):
            if self.separator is not None:
                for token in self._tokens(row[self.label_columns[0]]):
                    if token not in names:
                        raise bad_value(path, r + 1, self.label_columns[0], token, f"labels from {list(self._classes)}")
                    targets[r, names[token]] = 1.0
                continue
            for c, column in enumerate(self.label_columns):
                if row[column].strip() not in BINARY:
                    raise bad_value(path, r + 1, column, row[column], "0 or 1")
                targets[r, c] = BINARY[row[column].strip()]
        return targets

    def _path(self, value: str) -> Path:
        path = Path(value.strip())
        return path if path.is_absolute() else self.image_dir / path

    def tables(self) -> dict[str, SplitTable]:
        rows = self._rows
        groups = None if self.group_column is None else [row[self.group_column] for row in rows]
        table = SplitTable([self._path(row[self.image_column]) for row in rows], self._targets(),
                           source=str(self.csv), groups=groups)
        if self.split_column is not None:
            for r, row in enumerate(rows):
                if row[self.split_column] not in SPLITS:
                    raise bad_value(self.csv, r + 1, self.split_column, row[self.split_column],
                                    f"one of {list(SPLITS)}")
            return {s: table.subset(np.array([row[self.split_column] == s for row in rows], dtype=bool))
                    for s in SPLITS}
        index = group_split(groups if groups is not None else [str(i) for i in range(len(rows))], self.fractions,
                            self.seed)
        return {split: table.subset(index[split]) for split in SPLITS}
