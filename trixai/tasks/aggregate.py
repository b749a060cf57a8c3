"""Aggregating ``trixai-report`` rows: the overrides that vary between runs, seed statistics per configuration,
and Pareto fronts."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy import stats

from trixai.tasks.runs import Row

LEVEL = 0.95


@dataclass(frozen=True)
class Stat:
    """One column over the runs of a configuration: mean, sample std (n − 1; 0 for one value), number of values,
    and the Student-t 95 % interval of the mean across seeds, ``mean ± t_{0.975, n-1} · std / sqrt(n)``."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Iterable[object]) -> Stat | None:
        """The statistic of the finite floats among ``values``; None when there are none."""
        finite = [v for v in values if isinstance(v, float) and math.isfinite(v)]
        if not finite:
            return None
        return cls(statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0, len(finite))

    @property
    def t_interval(self) -> tuple[float, float] | None:
        """The t-interval of the mean across seeds; None for fewer than two values."""
        if self.n < 2:
            return None
        half = float(stats.t.ppf(0.5 + LEVEL / 2, self.n - 1)) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half


@dataclass(frozen=True)
class Configuration:
    """Runs whose overrides differ only in the seed, with a statistic per numeric column that any of them has."""

    sweep: str
    model: str
    objective: str
    varied: str
    config: str
    seeds: tuple[object, ...]
    stats: dict[str, Stat]

    @property
    def n(self) -> int:
        """The number of runs."""
        return len(self.seeds)


def varied_overrides(rows: Sequence[Row]) -> list[str]:
    """Per row, its overrides (seed excluded) whose value is not the same in every run, e.g.
    ``objective.lambda_expl=0.3``."""
    parsed = [dict(o.split("=", 1) for o in row["group_key"].split() if "=" in o) for row in rows]
    keys = dict.fromkeys(k for overrides in parsed for k in overrides)
    varied = [k for k in keys if len({overrides.get(k) for overrides in parsed}) > 1]
    return [" ".join(f"{k}={overrides[k]}" for k in varied if k in overrides) for overrides in parsed]


def seed_summary(rows: Sequence[Row], columns: Sequence[str]) -> list[Configuration]:
    """One :class:`Configuration` per group of runs whose overrides differ only in the seed, in order of first run."""
    groups: dict[tuple[str, str], list[Row]] = defaultdict(list)
    for row in rows:
        groups[(row["sweep"], row["group_key"] or row["model"] + " " + row["objective"])].append(row)
    summary = []
    for (sweep, _), members in groups.items():
        first = members[0]
        stats = {column: Stat.of(m.get(column) for m in members) for column in columns}
        summary.append(Configuration(
            sweep=sweep, model=first["model"], objective=first["objective"], varied=first.get("varied", ""),
            config=first["group_key"], seeds=tuple(m["seed"] for m in members),
            stats={column: stat for column, stat in stats.items() if stat is not None},
        ))
    return summary


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower cost and higher value are better), sorted by cost."""
    front = []
    for i, (cost, value) in enumerate(points):
        dominated = any(
            c <= cost and v >= value and (c < cost or v > value) for j, (c, v) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def sweep_order(label: str) -> tuple:
    """Order trade-off points by the value of a single varied override when it is numeric, else by label."""
    values = [part.split("=", 1)[1] for part in label.split()]
    try:
        return (0, *(float(v) for v in values))
    except ValueError:
        return (1, label)
