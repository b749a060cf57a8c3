"""CheXpert (Irvin et al. 2019) as downloaded: ``train.csv``/``valid.csv`` plus the patient folders.

``root`` is the dataset folder (``CheXpert-v1.0-small/`` or ``CheXpert-v1.0/``) holding ``train.csv``,
``valid.csv``, ``train/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg`` and ``valid/...``; the CSVs' ``Path``
column starts with that folder's name and is resolved against ``root`` or its parent.
Labels are 1.0 (positive), 0.0 (negative), -1.0 (uncertain) or blank (not mentioned). Uncertainty policies:
``u_ignore`` (uncertain labels get ``label_mask`` 0: out of the loss and the metrics), ``u_zeros``, ``u_ones``;
``blank`` is ``zeros`` (negative) or ``ignore`` (masked). Splits are patient-wise: val is carved from
``train.csv`` by patient, the official ``valid.csv`` is the test split.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trixai.core.errors import TrixaiError
from trixai.data.labels import CHEXPERT_COMPETITION as COMPETITION_TASKS
from trixai.data.labels import CHEXPERT_OBSERVATIONS as OBSERVATIONS
from trixai.data.source import FileSource, SplitTable
from trixai.data.splits import check_fractions, group_split
from trixai.data.tables import bad_value, read_table

UNCERTAIN_POLICIES = ("u_ignore", "u_zeros", "u_ones")
BLANK_POLICIES = ("zeros", "ignore")
VALUES = {"1.0": 1.0, "1": 1.0, "0.0": 0.0, "0": 0.0, "-1.0": -1.0, "-1": -1.0, "": None}
PATIENT = re.compile(r"(patient\d+)")


class CheXpert(FileSource):
    """CheXpert: multi-label over ``labels`` (default the 5 competition tasks) with an uncertainty policy."""

    name = "chexpert"
    task = "multilabel"

    def __init__(self, *, root: str, labels: Sequence[str] = COMPETITION_TASKS, uncertain: str = "u_ignore",
                 blank: str = "zeros", frontal_only: bool = False, val_fraction: float = 0.1, seed: int = 0,
                 channels: int = 1, **options: Any) -> None:
        super().__init__(root=root, channels=channels, **options)
        self.labels = tuple(labels)
        unknown = [label for label in self.labels if label not in OBSERVATIONS]
        if unknown or not self.labels or len(set(self.labels)) != len(self.labels):
            raise TrixaiError(f"dataset.labels={list(self.labels)}: each must be one of {list(OBSERVATIONS)}, "
                              "without repeats")
        if uncertain not in UNCERTAIN_POLICIES:
            raise TrixaiError(f"dataset.uncertain={uncertain!r} is not one of {list(UNCERTAIN_POLICIES)}")
        if blank not in BLANK_POLICIES:
            raise TrixaiError(f"dataset.blank={blank!r} is not one of {list(BLANK_POLICIES)}")
        check_fractions({"train": 1 - val_fraction, "val": val_fraction}, "dataset.val_fraction (as train/val)")
        self.uncertain, self.blank, self.frontal_only = uncertain, blank, bool(frontal_only)
        self.val_fraction, self.seed = float(val_fraction), int(seed)

    def class_names(self) -> tuple[str, ...]:
        return self.labels

    def encode(self, raw: float | None) -> tuple[float, float]:
        """(target, label_mask) of one cell under the uncertainty and blank policies."""
        if raw is None:
            return (0.0, 0.0) if self.blank == "ignore" else (0.0, 1.0)
        if raw == -1.0:
            return {"u_ignore": (0.0, 0.0), "u_zeros": (0.0, 1.0), "u_ones": (1.0, 1.0)}[self.uncertain]
        return raw, 1.0

    def _base(self, path: Path, first: str) -> Path:
        """The folder the ``Path`` column is relative to: the parent of ``root`` (``root`` is the dataset
        folder the paths start with) or ``root`` itself (``root`` holds the dataset folder)."""
        relative = Path(first)
        for base in (self.root.parent, self.root):
            if (base / relative).is_file():
                return base
        raise TrixaiError(f"{path}: the first image {first!r} is neither {self.root.parent / relative} nor "
                          f"{self.root / relative}; dataset.root must be the folder holding train.csv and the "
                          "train/ and valid/ image folders")

    def _read(self, name: str) -> SplitTable:
        path = self.root / name
        rows = read_table(path, ["Path", "Frontal/Lateral", *self.labels], f"CheXpert {name}")
        if self.frontal_only:
            rows = [row for row in rows if row["Frontal/Lateral"] == "Frontal"]
            if not rows:
                raise TrixaiError(f"{path} has no rows with Frontal/Lateral == 'Frontal' (dataset.frontal_only=true)")
        base = self._base(path, rows[0]["Path"])
        targets = np.zeros((len(rows), len(self.labels)), np.float32)
        masks = np.ones_like(targets)
        groups = []
        for r, row in enumerate(rows):
            for c, label in enumerate(self.labels):
                cell = row[label].strip()
                if cell not in VALUES:
                    raise bad_value(path, r + 1, label, cell, "1.0, 0.0, -1.0 or blank")
                targets[r, c], masks[r, c] = self.encode(VALUES[cell])
            match = PATIENT.search(row["Path"])
            if match is None:
                raise bad_value(path, r + 1, "Path", row["Path"], "a path containing patientNNNNN")
            groups.append(match.group(1))
        ignoring = self.uncertain == "u_ignore" or self.blank == "ignore"
        return SplitTable([base / row["Path"] for row in rows], targets, source=str(path),
                          label_masks=masks if ignoring else None, groups=groups)

    def tables(self) -> dict[str, SplitTable]:
        train = self._read("train.csv")
        index = group_split(train.groups, {"train": 1 - self.val_fraction, "val": self.val_fraction}, self.seed)
        return {"train": train.subset(index["train"]), "val": train.subset(index["val"]),
                "test": self._read("valid.csv")}
