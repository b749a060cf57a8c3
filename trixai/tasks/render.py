"""Rendering ``trixai-report``: CSV tables (raw numbers), Markdown (readable units, seed statistics as
"mean ± std") and the Pareto and trade-off figures."""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

from trixai.tasks.aggregate import Configuration, Stat, pareto_front, sweep_order
from trixai.tasks.runs import ID_COLUMNS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

log = logging.getLogger(__name__)

#: Markdown shows these columns in readable units (the CSV keeps raw numbers).
UNITS = {"profile/params": ("params (M)", 1e-6), "profile/flops": ("GFLOPs", 1e-9), "profile/macs": ("GMACs", 1e-9)}
#: Identity columns of the seed-statistics table in report.md.
CONFIGURATION_COLUMNS = ("sweep", "model", "objective", "varied", "n")


def fmt(value: object) -> str:
    """A table cell: 4 significant digits, large whole numbers in full, "—" when missing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value)}"
        return f"{value:.4g}"
    return str(value)


def _cell(value: object, scale: float) -> str:
    if isinstance(value, Stat):
        interval = value.t_interval
        text = f"{fmt(value.mean * scale)} ± {fmt(value.std * scale)}"
        return text if interval is None else f"{text} [{fmt(interval[0] * scale)}, {fmt(interval[1] * scale)}]"
    return fmt(value * scale if isinstance(value, float) else value)


def markdown_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """A Markdown table of ``columns``; floats and :class:`Stat` cells in the units of :data:`UNITS`."""
    headers = [UNITS.get(c, (c, 1.0))[0] for c in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(c), UNITS.get(c, (c, 1.0))[1]) for c in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    """CSV of ``columns`` (other keys ignored, missing ones empty)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in columns})
    return buffer.getvalue()


def summary_csv(summary: Sequence[Configuration], columns: Sequence[str]) -> str:
    """summary.csv: per configuration its identity, n, seeds, then ``<column> mean``, ``<column> std`` and the
    t-interval across seeds ``<column> t95_low`` / ``t95_high`` (empty for one seed)."""
    header = ["sweep", "model", "objective", "varied", "config", "n", "seeds",
              *(f"{c} {s}" for c in columns for s in ("mean", "std", "t95_low", "t95_high"))]
    rows = [{"sweep": c.sweep, "model": c.model, "objective": c.objective, "varied": c.varied, "config": c.config,
             "n": c.n, "seeds": ",".join(str(seed) for seed in c.seeds),
             **{f"{column} {field}": getattr(stat, field) for column, stat in c.stats.items()
                for field in ("mean", "std")},
             **{f"{column} t95_{side}": bound for column, stat in c.stats.items() if stat.t_interval
                for side, bound in zip(("low", "high"), stat.t_interval, strict=True)}}
            for c in summary]
    return csv_text(rows, header)


def report_markdown(rows: Sequence[Mapping[str, object]], summary: Sequence[Configuration], columns: Sequence[str],
                    sources: Sequence[Path], figures: Mapping[str, Path]) -> list[str]:
    """report.md's sections (joined by newlines): the run table (identity columns, then ``columns``), the mean ± std
    table when a configuration ran with several seeds, and links to the figures."""
    sections = [f"# trixai report\n\n{len(rows)} runs from {', '.join(str(s) for s in sources)}.\n\n"
                + markdown_table(rows, [*ID_COLUMNS, *columns])]
    if any(c.n > 1 for c in summary):
        table = [{"sweep": c.sweep, "model": c.model, "objective": c.objective, "varied": c.varied, "n": c.n, **c.stats}
                 for c in summary]
        sections.append("## Mean ± std over seeds\n\nIn brackets: the 95 % Student-t interval of the mean across seeds "
                        "(mean ± t_{0.975, n-1} · std / √n).\n\n"
                        + markdown_table(table, [*CONFIGURATION_COLUMNS, *columns]))
    if figures:
        sections.append("## Figures\n\n" + "".join(f"![{name}]({name})\n" for name in figures))
    return sections


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pareto(summary: Sequence[Configuration], cost: str, value: str, path: Path, *, cost_label: str,
                value_label: str, cost_scale: float = 1.0) -> Path | None:
    """Scatter of ``value`` vs ``cost`` per configuration (mean, std bars over seeds), one colour per objective,
    points labelled by model (labels of coinciding points joined), and the Pareto front."""
    points, errors, objectives, models = [], [], [], []
    for configuration in summary:
        c, v = configuration.stats.get(cost), configuration.stats.get(value)
        if c is None or v is None:
            continue
        points.append((c.mean * cost_scale, v.mean))
        errors.append(v.std)
        objectives.append(configuration.objective)
        models.append(configuration.model)
    if not points:
        log.warning("no run has both %s and %s: %s not written", cost, value, path.name)
        return None
    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7, 5))
    for k, objective in enumerate(dict.fromkeys(objectives)):
        idx = [i for i, o in enumerate(objectives) if o == objective]
        ax.errorbar([points[i][0] for i in idx], [points[i][1] for i in idx], yerr=[errors[i] for i in idx], fmt="o",
                    color=f"C{k}", ecolor="lightgray", capsize=3, label=objective)
    ax.plot([points[i][0] for i in front], [points[i][1] for i in front], "-o", color="tab:red", mfc="none", ms=11,
            label="Pareto front")
    labels: dict[tuple[float, float], list[str]] = defaultdict(list)
    for point, model in zip(points, models, strict=True):
        if model not in labels[point]:
            labels[point].append(model)
    for (x, y), names in labels.items():
        ax.annotate(", ".join(names), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel(cost_label)
    ax.set_ylabel(value_label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, title="objective (mean ± std over seeds)", title_fontsize=8)
    return _save(fig, path)


def plot_tradeoff(summary: Sequence[Configuration], stability: str, accuracies: Sequence[str],
                  path: Path) -> Path | None:
    """Accuracy metrics (y) against explanation stability (x), one point per configuration (mean, std bars
    over seeds) labelled by its varied overrides and joined in the order of their values: the trade-off curve."""
    points = sorted((c for c in summary if stability in c.stats), key=lambda c: sweep_order(c.varied or c.config))
    if len(points) < 2:
        log.warning("fewer than two configurations have %s: %s not written", stability, path.name)
        return None
    fig, ax = plt.subplots(figsize=(7, 5))
    for k, metric in enumerate(accuracies):
        series = [c for c in points if metric in c.stats]
        if not series:
            continue
        xs, ys = [c.stats[stability].mean for c in series], [c.stats[metric].mean for c in series]
        ax.errorbar(xs, ys, xerr=[c.stats[stability].std for c in series], yerr=[c.stats[metric].std for c in series],
                    fmt="-o", color=f"C{k}", ecolor="lightgray", capsize=3, label=metric)
        for c, x, y in zip(series, xs, ys, strict=True):
            ax.annotate(c.varied or f"{c.model} {c.objective}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7)
    ax.set_xlabel(f"explanation stability ({stability})")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="mean ± std over seeds", title_fontsize=8)
    return _save(fig, path)
