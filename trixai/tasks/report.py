"""``trixai-report dir=<multirun dir | run dir | [dirs]>``: one table of every run, seed statistics, Pareto fronts,
and the accuracy-vs-explanation-stability trade-off.

A run directory is any directory holding ``metrics.json`` (written by ``trixai-train``); ``model.json``,
``profile.json``, ``robustness.json`` and ``explanations.json`` next to it add columns when present.
Outputs in the report's run dir: ``report.csv`` (one row per run, every numeric field), ``report.md``
(main columns, plus mean ± std over seeds when a configuration ran with several seeds), ``summary.csv``
(the seed statistics), ``pareto_*.png`` and ``tradeoff_accuracy_vs_stability.png`` (one point per configuration,
labelled by the overrides that vary between runs, e.g. ``objective.lambda_expl``); the table and figures also go
to W&B (one run per sweep group).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import logging
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import hydra
import matplotlib
import yaml
from omegaconf import DictConfig

from trixai.core.errors import TrixaiError, user_errors
from trixai.core.files import atomic_write_text
from trixai.core.values import as_list
from trixai.tasks.loggers import resolve_mode

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the non-interactive backend)

log = logging.getLogger(__name__)

RUN_FILE = "metrics.json"
#: Identity columns (text) in the order they are shown.
ID_COLUMNS = ("sweep", "run", "model", "objective", "varied", "seed", "resolution")
#: Overrides that vary between repeats of one configuration (ignored when grouping runs for mean ± std).
REPEAT_KEYS = ("seed",)


def find_run_dirs(dirs: Iterable[str | Path]) -> list[Path]:
    """Every directory at or below ``dirs`` that holds a ``metrics.json``, in path order."""
    runs: list[Path] = []
    for entry in dirs:
        path = Path(entry).expanduser()
        if not path.is_dir():
            raise TrixaiError(f"dir={entry!s}: no such directory (give a multirun dir, a run dir, or a list [a,b])")
        found = sorted({p.parent for p in path.rglob(RUN_FILE)}, key=_natural_key)
        if not found:
            raise TrixaiError(f"dir={entry!s}: no run directories (with {RUN_FILE}) at or below it")
        runs.extend(p for p in found if p not in runs)
    return runs


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in path.parts]


def flatten(data: object, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as ``{"a/b/c": value}`` (lists and text are skipped, bools become 0/1)."""
    out: dict[str, float] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(data, bool):
        out[prefix] = float(data)
    elif isinstance(data, (int, float)) and data is not None:
        out[prefix] = float(data)
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TrixaiError(f"{path}: not readable JSON ({err})") from err


def _hydra_info(run_dir: Path) -> tuple[dict, list[str]]:
    """Config-group choices and command-line overrides Hydra saved in ``run_dir/.hydra``."""
    choices, overrides = {}, []
    hydra_file, overrides_file = run_dir / ".hydra" / "hydra.yaml", run_dir / ".hydra" / "overrides.yaml"
    if hydra_file.exists():
        choices = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra", {}).get("runtime", {}).get("choices", {})
    if overrides_file.exists():
        overrides = [str(o) for o in yaml.safe_load(overrides_file.read_text()) or []]
    return choices or {}, overrides


def _model_label(model_cfg: dict, fallback: str) -> str:
    name = model_cfg.get("name", fallback)
    if name != "efficientnet_phi":
        return name
    scale = f"variant={model_cfg['variant']}" if model_cfg.get("variant") else f"phi={model_cfg.get('phi', 0)}"
    return f"{name}({scale}{'' if model_cfg.get('se', True) else ',no-se'})"


def _sweep_name(run_dir: Path, roots: Sequence[Path]) -> str:
    multirun = run_dir.parent / "multirun.yaml"
    if multirun.exists():
        return run_dir.parent.name
    for root in roots:
        if root in run_dir.parents or root == run_dir:
            return root.name
    return run_dir.parent.name


def read_run(run_dir: Path, roots: Sequence[Path] = ()) -> dict:
    """One table row: identity columns, then every numeric metric of the run's JSON files."""
    metrics = _read_json(run_dir / RUN_FILE)
    meta = _read_json(run_dir / "model.json") if (run_dir / "model.json").exists() else {}
    config = meta.get("config", {})
    choices, overrides = _hydra_info(run_dir)
    model_cfg = config.get("model", {})
    objective = choices.get("objective") or str(config.get("objective", {}).get("_target_", "?")).rsplit(".", 1)[-1]
    profile = metrics.get("profile")
    if profile is None and (run_dir / "profile.json").exists():
        profile = _read_json(run_dir / "profile.json")
    row: dict = {
        "sweep": _sweep_name(run_dir, roots),
        "run": run_dir.name,
        "model": _model_label(model_cfg, meta.get("timm_name", choices.get("model", "?"))),
        "objective": objective,
        "seed": meta.get("seed", config.get("seed")),
        "resolution": meta.get("input_size", model_cfg.get("resolution")),
        "path": str(run_dir),
        "group_key": " ".join(o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in REPEAT_KEYS),
        "wandb_group": (config.get("logger") or {}).get("wandb", {}).get("group"),
    }
    sections = {k: v for k, v in metrics.items() if k != "profile"}
    row.update(_strip_stage_prefix(flatten(sections)))
    if profile is not None:
        row.update({f"profile/{k}": v for k, v in flatten(profile).items()})
    else:
        row.update(_static_profile(run_dir))
    for name in ("robustness", "explanations"):
        if (run_dir / f"{name}.json").exists():
            row.update({f"{name}/{k}": v for k, v in flatten(_read_json(run_dir / f"{name}.json")).items()})
    return row


def _strip_stage_prefix(values: dict[str, float]) -> dict[str, float]:
    """``{"test/test/acc": x}`` (metrics.json nests Lightning's ``test/acc`` under ``test``) -> ``{"test/acc": x}``."""
    out = {}
    for key, value in values.items():
        head, _, rest = key.partition("/")
        out[rest if rest.startswith(f"{head}/") else key] = value
    return out


def _static_profile(run_dir: Path) -> dict[str, float]:
    """Params and FLOPs from the exported model when the run recorded no profile (latency needs a measurement)."""
    if not (run_dir / "model.safetensors").exists():
        return {}
    import torch  # noqa: PLC0415 - only needed for this fallback

    from trixai.models.export import load_model  # noqa: PLC0415
    from trixai.training.profiling import count_flops, count_parameters  # noqa: PLC0415

    model = load_model(run_dir)
    flops = count_flops(model, torch.rand(1, model.in_chans, model.input_size, model.input_size))
    return {"profile/params": float(count_parameters(model)), "profile/flops": float(flops),
            "profile/macs": float(flops // 2)}


def resolve_column(rows: Sequence[dict], candidates: Sequence[str], what: str | None = None) -> str | None:
    """The first column (in sorted order) matching the first candidate pattern (``fnmatch``) that matches any."""
    keys = sorted({k for row in rows for k, v in row.items() if isinstance(v, float)})
    for candidate in candidates:
        matches = fnmatch.filter(keys, candidate)
        if matches:
            return matches[0]
    if what is not None:
        log.warning("no %s column matches %s: its Pareto plot is skipped", what, list(candidates))
    return None


def latency_column(rows: Sequence[dict]) -> str | None:
    """``profile/latency_ms_b1`` when measured, else the smallest measured batch."""
    keys = sorted({k for row in rows for k in row if k.startswith("profile/latency_ms_b")},
                  key=lambda k: int(k.rsplit("_b", 1)[-1]))
    return keys[0] if keys else None


def label_varied_overrides(rows: Sequence[dict]) -> None:
    """Set each row's ``varied``: its overrides (seed excluded) whose value is not the same in every run."""
    parsed = [dict(o.split("=", 1) for o in row["group_key"].split() if "=" in o) for row in rows]
    keys = dict.fromkeys(k for overrides in parsed for k in overrides)
    varied = [k for k in keys if len({overrides.get(k) for overrides in parsed}) > 1]
    for row, overrides in zip(rows, parsed, strict=True):
        row["varied"] = " ".join(f"{k}={overrides[k]}" for k in varied if k in overrides)


def seed_summary(rows: Sequence[dict], columns: Sequence[str]) -> list[dict]:
    """Mean, std (sample, n-1) and n per configuration: runs whose overrides differ only in the seed."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["sweep"], row["group_key"] or row["model"] + " " + row["objective"])].append(row)
    summary = []
    for (sweep, _), members in groups.items():
        entry = {"sweep": sweep, "model": members[0]["model"], "objective": members[0]["objective"],
                 "varied": members[0].get("varied", ""), "config": members[0]["group_key"], "n": len(members),
                 "seeds": ",".join(str(m["seed"]) for m in members)}
        for column in columns:
            values = [m[column] for m in members if isinstance(m.get(column), float) and math.isfinite(m[column])]
            entry[f"{column} mean"] = statistics.fmean(values) if values else None
            entry[f"{column} std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        summary.append(entry)
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


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pareto(rows: Sequence[dict], cost: str, value: str, path: Path, *, cost_label: str, value_label: str,
                cost_scale: float = 1.0) -> Path | None:
    """Scatter of ``value`` vs ``cost`` per configuration (mean, std bars over seeds), one colour per objective,
    points labelled by model (labels of coinciding points joined), and the Pareto front."""
    points, errors, objectives, models = [], [], [], []
    for row in rows:
        c, v = row.get(f"{cost} mean"), row.get(f"{value} mean")
        if c is None or v is None:
            continue
        points.append((c * cost_scale, v))
        errors.append(row.get(f"{value} std") or 0.0)
        objectives.append(str(row["objective"]))
        models.append(str(row["model"]))
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
    for point, model in zip(points, models):
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


def sweep_order(label: str) -> tuple:
    """Order trade-off points by the value of a single varied override when it is numeric, else by label."""
    values = [part.split("=", 1)[1] for part in label.split()]
    try:
        return (0, *(float(v) for v in values))
    except ValueError:
        return (1, label)


def plot_tradeoff(rows: Sequence[dict], stability: str, accuracies: Sequence[str], path: Path) -> Path | None:
    """Accuracy metrics (y) against explanation stability (x), one point per configuration (mean, std bars
    over seeds) labelled by its varied overrides and joined in the order of their values: the trade-off curve."""
    points = [row for row in rows if row.get(f"{stability} mean") is not None]
    if len(points) < 2:
        log.warning("fewer than two configurations have %s: %s not written", stability, path.name)
        return None
    points.sort(key=lambda row: sweep_order(row.get("varied") or row["config"]))
    fig, ax = plt.subplots(figsize=(7, 5))
    for k, metric in enumerate(accuracies):
        series = [row for row in points if row.get(f"{metric} mean") is not None]
        if not series:
            continue
        xs, ys = [row[f"{stability} mean"] for row in series], [row[f"{metric} mean"] for row in series]
        ax.errorbar(xs, ys, xerr=[row[f"{stability} std"] or 0.0 for row in series],
                    yerr=[row[f"{metric} std"] or 0.0 for row in series], fmt="-o", color=f"C{k}",
                    ecolor="lightgray", capsize=3, label=metric)
        for row, x, y in zip(series, xs, ys, strict=True):
            label = row.get("varied") or f"{row['model']} {row['objective']}"
            ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"explanation stability ({stability})")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="mean ± std over seeds", title_fontsize=8)
    return _save(fig, path)


def _fmt(value: object) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value)}"
        return f"{value:.4g}"
    return str(value)


#: Markdown shows these columns in readable units (the CSV keeps raw numbers).
UNITS = {"profile/params": ("params (M)", 1e-6), "profile/flops": ("GFLOPs", 1e-9), "profile/macs": ("GMACs", 1e-9)}


def _scaled(value: object, scale: float) -> object:
    if isinstance(value, float):
        return value * scale
    if isinstance(value, str) and " ± " in value:
        return " ± ".join(_fmt(float(part) * scale) for part in value.split(" ± "))
    return value


def markdown_table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    headers = [UNITS.get(c, (c, 1.0))[0] for c in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(_scaled(row.get(c), UNITS.get(c, (c, 1.0))[1])) for c in columns) + " |"
              for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[dict], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c) for c in columns})
    return buffer.getvalue()


def _main_columns(rows: Sequence[dict], cfg: DictConfig) -> tuple[list[str], dict[str, str | None]]:
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


def build_report(cfg: DictConfig) -> dict:
    """Read the runs under ``cfg.dir``, write table, summary and figures into ``cfg.out_dir``; returns the paths."""
    dirs = as_list(cfg.dir)
    if not dirs or any(d in (None, "", "???") for d in dirs):
        raise TrixaiError("dir= is required: a multirun dir, a run dir, or a list dir=[a,b] of them")
    roots = [Path(d).expanduser() for d in dirs]
    rows = [read_run(run, roots) for run in find_run_dirs(roots)]
    label_varied_overrides(rows)
    out_dir = Path(cfg.out_dir)
    main, keys = _main_columns(rows, cfg)
    numeric = sorted({k for row in rows for k, v in row.items() if isinstance(v, float)} - set(ID_COLUMNS))
    all_columns = [*ID_COLUMNS, *numeric, "path"]
    summary = seed_summary(rows, numeric)

    atomic_write_text(out_dir / "report.csv", csv_text(rows, all_columns))
    summary_columns = ["sweep", "model", "objective", "varied", "config", "n", "seeds",
                       *(f"{c} {s}" for c in numeric for s in ("mean", "std"))]
    atomic_write_text(out_dir / "summary.csv", csv_text(summary, summary_columns))

    figures = {}
    for name, cost, value, cost_label, value_label in (
        ("pareto_robust_acc_vs_flops.png", keys["flops"], keys["robust"], "GFLOPs (forward, 1 image)", keys["robust"]),
        ("pareto_robust_acc_vs_latency.png", keys["latency"], keys["robust"], f"latency (ms, {keys['latency']})",
         keys["robust"]),
        ("pareto_stability_vs_flops.png", keys["flops"], keys["stability"], "GFLOPs (forward, 1 image)",
         keys["stability"]),
    ):
        if cost is None or value is None:
            continue
        scale = 1e-9 if cost == keys["flops"] else 1.0
        written = plot_pareto(summary, cost, value, out_dir / name, cost_label=cost_label,
                              value_label=str(value_label), cost_scale=scale)
        if written is not None:
            figures[name] = written
    if keys["stability"] is not None:
        accuracies = [k for k in (keys["clean"], keys["robust"]) if k is not None]
        written = plot_tradeoff(summary, keys["stability"], accuracies, out_dir / "tradeoff_accuracy_vs_stability.png")
        if written is not None:
            figures["tradeoff_accuracy_vs_stability.png"] = written

    markdown = ["# trixai report", "", f"{len(rows)} runs from {', '.join(str(r) for r in roots)}.", "",
                markdown_table(rows, [*ID_COLUMNS, *main])]
    if any(entry["n"] > 1 for entry in summary):
        stat_columns = ["sweep", "model", "objective", "varied", "n"]
        markdown += ["## Mean ± std over seeds", "",
                     markdown_table([_mean_std_row(entry, main) for entry in summary], [*stat_columns, *main])]
    if figures:
        markdown += ["## Figures", "", *(f"![{name}]({name})" for name in figures), ""]
    atomic_write_text(out_dir / "report.md", "\n".join(markdown))
    if cfg.wandb.mode != "disabled":
        log_to_wandb(rows, [*ID_COLUMNS, *main], figures, cfg)
    paths = {"csv": out_dir / "report.csv", "markdown": out_dir / "report.md", "summary": out_dir / "summary.csv",
             "figures": figures, "rows": len(rows)}
    print("\n".join(markdown[:5]))
    print(f"trixai-report: {len(rows)} runs -> {out_dir}")
    return paths


def _mean_std_row(entry: dict, columns: Sequence[str]) -> dict:
    row = {k: entry[k] for k in ("sweep", "model", "objective", "varied", "n")}
    for column in columns:
        mean, std = entry.get(f"{column} mean"), entry.get(f"{column} std")
        row[column] = None if mean is None else f"{mean!r} ± {(std or 0.0)!r}"
    return row


def log_to_wandb(rows: Sequence[dict], columns: Sequence[str], figures: dict[str, Path], cfg: DictConfig) -> None:
    """One W&B run per sweep group (the training runs' group when recorded) with the table and the figures."""
    import wandb  # noqa: PLC0415 - heavy import, only when logging

    mode = resolve_mode(cfg.wandb.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    by_group: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_group[row["wandb_group"] or row["sweep"]].append(row)
    for group, members in by_group.items():
        run = wandb.init(project=cfg.wandb.project, group=group, job_type="report", name=f"report-{group}",
                         dir=str(Path(cfg.out_dir)), mode=mode, reinit="finish_previous")
        try:
            table = wandb.Table(columns=list(columns),
                                data=[[None if m.get(c) is None else m.get(c) for c in columns] for m in members])
            run.log({"report": table, **{name.removesuffix(".png"): wandb.Image(str(p)) for name, p in figures.items()}})
        finally:
            run.finish()


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="report")
def main(cfg: DictConfig) -> None:
    with user_errors():
        build_report(cfg)

