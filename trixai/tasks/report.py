"""``trixai-report dir=<multirun dir | run dir | [dirs]>``: one table of every run, seed statistics, Pareto fronts,
and the accuracy-vs-explanation-stability trade-off.

A run directory is any directory holding ``metrics.json`` (written by ``trixai-train``); ``model.json``,
``profile.json``, ``robustness.json`` and ``explanations.json`` next to it add columns when present.
Outputs in the report's run dir: ``report.csv`` (one row per run, every numeric field), ``report.md``
(main columns, plus mean ± std over seeds when a configuration ran with several seeds), ``summary.csv``
(the seed statistics), ``pareto_*.png`` and ``tradeoff_accuracy_vs_stability.png`` (one point per configuration,
labelled by the overrides that vary between runs, e.g. ``objective.lambda_expl``); the table and figures also go
to W&B (one run per sweep group).

The parts: :mod:`trixai.tasks.runs` collects the rows, :mod:`trixai.tasks.aggregate` computes the seed statistics
and Pareto fronts, :mod:`trixai.tasks.render` writes tables and figures, :func:`trixai.tasks.loggers.log_report`
sends them to W&B.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_text
from trixai.core.values import as_list
from trixai.models.export import git_state, package_versions
from trixai.render.html import write_sweep_report
from trixai.tasks.aggregate import Configuration, seed_summary, varied_overrides
from trixai.tasks.loggers import log_report
from trixai.tasks.render import UNITS, csv_text, plot_pareto, plot_tradeoff, report_markdown, summary_csv
from trixai.tasks.runs import ID_COLUMNS, Row, find_run_dirs, read_run

log = logging.getLogger(__name__)


def resolve_column(rows: Sequence[Row], candidates: Sequence[str], what: str | None = None) -> str | None:
    """The first column (in sorted order) matching the first candidate pattern (``fnmatch``) that matches any."""
    keys = sorted({k for row in rows for k, v in row.items() if isinstance(v, float)})
    for candidate in candidates:
        matches = fnmatch.filter(keys, candidate)
        if matches:
            return matches[0]
    if what is not None:
        log.warning("no %s column matches %s: its Pareto plot is skipped", what, list(candidates))
    return None


def latency_column(rows: Sequence[Row]) -> str | None:
    """``profile/latency_ms_b1`` when measured, else the smallest measured batch."""
    keys = sorted({k for row in rows for k in row if k.startswith("profile/latency_ms_b")},
                  key=lambda k: int(k.rsplit("_b", 1)[-1]))
    return keys[0] if keys else None


def _main_columns(rows: Sequence[Row], cfg: DictConfig) -> tuple[list[str], dict[str, str | None]]:
    """report.md's metric columns, and the columns the figures plot (None where no run has one)."""
    keys = {
        "robust": resolve_column(rows, as_list(cfg.robust_metric), "robust accuracy"),
        "clean": resolve_column(rows, as_list(cfg.clean_metric), "clean accuracy"),
        "stability": resolve_column(rows, as_list(cfg.stability_metric), "explanation stability"),
        "flops": resolve_column(rows, ["profile/flops"], "FLOPs"),
        "latency": latency_column(rows),
    }
    extra = [resolve_column(rows, [c]) for c in as_list(cfg.extra_columns)]
    main = [keys["clean"], keys["robust"], *extra, keys["stability"], "profile/params", keys["flops"], keys["latency"]]
    return [c for c in dict.fromkeys(main) if c is not None], keys


def _figures(summary: Sequence[Configuration], keys: dict[str, str | None], out_dir: Path) -> dict[str, Path]:
    """The Pareto plots whose columns exist, and the trade-off curve when there is a stability column."""
    figures = {}
    for name, cost, value, cost_label in (
        ("pareto_robust_acc_vs_flops.png", keys["flops"], keys["robust"], "GFLOPs (forward, 1 image)"),
        ("pareto_robust_acc_vs_latency.png", keys["latency"], keys["robust"], f"latency (ms, {keys['latency']})"),
        ("pareto_stability_vs_flops.png", keys["flops"], keys["stability"], "GFLOPs (forward, 1 image)"),
    ):
        if cost is None or value is None:
            continue
        written = plot_pareto(summary, cost, value, out_dir / name, cost_label=cost_label, value_label=value,
                              cost_scale=1e-9 if cost == keys["flops"] else 1.0)
        if written is not None:
            figures[name] = written
    if keys["stability"] is not None:
        accuracies = [k for k in (keys["clean"], keys["robust"]) if k is not None]
        written = plot_tradeoff(summary, keys["stability"], accuracies, out_dir / "tradeoff_accuracy_vs_stability.png")
        if written is not None:
            figures["tradeoff_accuracy_vs_stability.png"] = written
    return figures


def build_report(cfg: DictConfig) -> dict:
    """Read the runs under ``cfg.dir``, write table, summary and figures into ``cfg.out_dir``; returns the paths."""
    dirs = as_list(cfg.dir)
    if not dirs or any(d in (None, "", "???") for d in dirs):
        raise TrixaiError("dir= is required: a multirun dir, a run dir, or a list dir=[a,b] of them")
    roots = [Path(d).expanduser() for d in dirs]
    rows = [read_run(run, roots) for run in find_run_dirs(roots)]
    for row, varied in zip(rows, varied_overrides(rows), strict=True):
        row["varied"] = varied
    out_dir = Path(cfg.out_dir)
    main, keys = _main_columns(rows, cfg)
    numeric = sorted({k for row in rows for k, v in row.items() if isinstance(v, float)} - set(ID_COLUMNS))
    summary = seed_summary(rows, numeric)

    atomic_write_text(out_dir / "report.csv", csv_text(rows, [*ID_COLUMNS, *numeric, "path"]))
    atomic_write_text(out_dir / "summary.csv", summary_csv(summary, numeric))
    figures = _figures(summary, keys, out_dir)
    markdown = report_markdown(rows, summary, main, roots, figures)
    atomic_write_text(out_dir / "report.md", "\n".join(markdown))
    html = write_sweep_report(out_dir, rows=rows, summary=summary, columns=main, id_columns=ID_COLUMNS, units=UNITS,
                              sources=roots, figures=figures, provenance=report_provenance(cfg))
    log_report(rows, [*ID_COLUMNS, *main], figures, project=cfg.wandb.project, mode=cfg.wandb.mode, out_dir=out_dir)
    print(markdown[0])
    print(f"trixai-report: {len(rows)} runs -> {out_dir} ({html.name})")
    return {"csv": out_dir / "report.csv", "markdown": out_dir / "report.md", "summary": out_dir / "summary.csv",
            "html": html, "figures": figures, "rows": len(rows)}


def report_provenance(cfg: DictConfig) -> dict:
    """The command, time, config, versions and git commit of this report."""
    return {"command": " ".join(sys.argv), "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": package_versions(), "git": git_state(), "config": OmegaConf.to_container(cfg, resolve=True)}
