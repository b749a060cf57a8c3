"""Group-wise splits: every image of a patient (or lesion) lands in exactly one split."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from trixai.core.errors import TrixaiError


def check_fractions(fractions: Mapping[str, float], key: str, names: Sequence[str] | None = None) -> None:
    """Raise unless ``fractions`` are non-negative, sum to 1 and (when given) have exactly the keys ``names``."""
    if names is not None and sorted(fractions) != sorted(names):
        raise TrixaiError(f"{key}={dict(fractions)} needs exactly the keys {list(names)}")
    values = list(fractions.values())
    if any(v < 0 for v in values) or not np.isclose(sum(values), 1.0):
        raise TrixaiError(f"{key}={dict(fractions)} must be non-negative and sum to 1")


def group_split(groups: Sequence[str], fractions: Mapping[str, float], seed: int) -> dict[str, np.ndarray]:
    """Row indices per split name, splitting whole groups in proportion to ``fractions``.

    Groups are shuffled with ``seed`` (from their sorted order, so the result does not depend on row order)
    and dealt out by group count; every split with a positive fraction gets at least one group when there
    are enough groups.
    """
    names = list(fractions)
    unique, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(unique))
    share = np.array([fractions[name] for name in names], dtype=float)
    counts = np.floor(share * len(unique)).astype(int)
    wanted = share > 0
    for i in np.argsort(-(share * len(unique) - counts), kind="stable"):  # largest remainder
        if counts.sum() >= len(unique):
            break
        counts[i] += 1
    for i in np.flatnonzero(wanted & (counts == 0)):  # take one group from the largest split
        donor = int(np.argmax(counts))
        if counts[donor] > 1:
            counts[donor] -= 1
            counts[i] += 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    assignment = np.empty(len(unique), dtype=int)
    for split_index in range(len(names)):
        assignment[order[bounds[split_index]:bounds[split_index + 1]]] = split_index
    row_split = assignment[inverse]
    return {name: np.flatnonzero(row_split == i) for i, name in enumerate(names)}


def check_disjoint(groups_by_split: Mapping[str, Sequence[str]], what: str) -> None:
    """Raise when a group (patient, lesion) appears in more than one split."""
    seen: dict[str, str] = {}
    for split, groups in groups_by_split.items():
        for group in set(groups):
            if group in seen:
                raise TrixaiError(f"{what} {group!r} appears in both the {seen[group]} and {split} splits; "
                                  f"splits must be {what}-wise")
            seen[group] = split
