"""Read the CSV/text files of official dataset layouts with errors that name the file, column and value."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from trixai.core.errors import TrixaiError


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise TrixaiError(f"{what} not found: expected the file {path}")
    return path


def read_table(path: Path, required: Sequence[str], what: str) -> list[dict[str, str]]:
    """Rows of a CSV with a header, as dicts; raises when the file or a ``required`` column is missing."""
    require_file(path, what)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c for c in (reader.fieldnames or []) if c is not None]
        missing = [c for c in required if c not in columns]
        if missing:
            raise TrixaiError(f"{path} has no column {missing[0]!r} (required: {list(required)}; "
                              f"found: {columns})")
        rows = list(reader)
    if not rows:
        raise TrixaiError(f"{path} has a header but no rows")
    return rows


def read_lines(path: Path, what: str) -> list[str]:
    """Non-empty stripped lines of a text list (e.g. NIH ``train_val_list.txt``)."""
    require_file(path, what)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def bad_value(path: Path, row: int, column: str, value: str, allowed: str) -> TrixaiError:
    """Error for an unexpected cell: ``row`` counts data rows from 1 (the header is line 1 of the file)."""
    return TrixaiError(f"{path} line {row + 1}, column {column!r}: unexpected value {value!r}; expected {allowed}")
