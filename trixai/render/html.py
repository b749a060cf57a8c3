"""``report.html``: one self-contained page per training run, ``trixai-eval``, ``trixai-explain``, audit and
``trixai-report`` sweep, for readers without W&B or a network.

The page is rendered with Jinja2 from the templates in ``trixai/render/templates`` (autoescaped); every figure is
inlined as a ``data:`` URI, the style sheet is inline, there are no scripts and no external links, so the file opens
from a disk, an e-mail attachment or a USB stick. A run page renders the sections whose files exist in the
directory (``model.json``, ``provenance.json``, ``metrics.json``, the typed reports ``robustness.json``,
``corruptions.json`` and ``explanations.json`` through the views of :mod:`trixai.render.views` (the markdown
reports render the same views), ``predictions.json``, ``profile.json``) and omits the others; a training run's page
links every evaluation written under it (``evals/<name>/report.html``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import yaml

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_text
from trixai.core.formatting import interval, is_number, num, value
from trixai.core.reports import (
    CertificationReport,
    CorruptionReport,
    RobustnessReport,
    explanation_report_from_json,
)
from trixai.render.views import any_explanation_view, certification_view, corruption_view, robustness_view, test_view

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
        ".gif": "image/gif", ".webp": "image/webp"}
PROFILE_ROWS = (("params", "parameters", 1e-6, "M"), ("macs", "MACs (1 image)", 1e-9, "G"),
                ("flops", "FLOPs (1 image)", 1e-9, "G"), ("latency_ms_b1", "latency, batch 1", 1.0, "ms"),
                ("throughput_b1", "throughput, batch 1", 1.0, "images/s"),
                ("throughput_b32", "throughput, batch 32", 1.0, "images/s"),
                ("size_fp32_bytes", "size fp32", 2 ** -20, "MiB"), ("size_fp16_bytes", "size fp16", 2 ** -20, "MiB"),
                ("peak_mem_infer_bytes", "peak memory, inference", 2 ** -20, "MiB"),
                ("peak_mem_train_bytes", "peak memory, training step", 2 ** -20, "MiB"))
TASK_TITLES = {"train": "Training run", "eval": "Robustness evaluation", "explain": "Explanations",
               "audit": "Audit", "report": "Sweep report"}
#: Evaluations and explanations of a run live in folders under this one (each with its own report.html).
EVALUATIONS = "evals"


# ---------------------------------------------------------------------------------------------------------------
# formatting (Jinja filters; numbers are trixai.core.formatting's)

def fixed(x: object, decimals: int = 3) -> str:
    """A score with a fixed number of decimals (columns line up)."""
    return value(x, decimals)


def breakable(text: object) -> markupsafe.Markup:
    """A long column name (``explanations/metrics/stability_ssim/mean``) that may wrap after ``/`` and ``_``."""
    escaped = str(markupsafe.escape(str(text)))
    return markupsafe.Markup(escaped.replace("/", "/<wbr>").replace("_", "_<wbr>"))


def heat(x: object) -> str:
    """Inline background for a score in [0, 1]: red (0) through amber to green (1); empty otherwise."""
    if not is_number(x) or not math.isfinite(x) or not 0.0 <= x <= 1.0:
        return ""
    return f"background-color: hsl({round(120 * x)}, 70%, 90%)"


def data_uri(path: Path) -> str | None:
    """The file as a base64 ``data:`` URI (None when absent or of an unknown image type)."""
    mime = MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        return None
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _figure(directory: Path, relative: str, title: str, caption: str = "") -> dict | None:
    uri = data_uri(directory / relative)
    return None if uri is None else {"title": title, "uri": uri, "caption": caption, "file": relative}


def _read(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise TrixaiError(f"{path}: not readable JSON ({err})") from err


# ---------------------------------------------------------------------------------------------------------------
# sections of a run page

def _provenance(model_meta: dict | None, provenance: dict | None) -> list[dict]:
    """One block per task that wrote files here: command, time, git commit, versions, config, model origin."""
    blocks = []
    git = lambda entry: {"commit": (entry.get("git") or {}).get("commit"), "dirty": (entry.get("git") or {}).get("dirty")}
    if model_meta:
        blocks.append({"task": "train", "command": model_meta.get("command"), "created": model_meta.get("created"),
                       "git": git(model_meta), "versions": model_meta.get("versions") or {},
                       "seed": model_meta.get("seed"), "config": _yaml(model_meta.get("config")), "model": None})
    for task, entry in (provenance or {}).items():
        blocks.append({"task": task, "command": entry.get("command"), "created": entry.get("created"),
                       "git": git(entry), "versions": entry.get("versions") or {},
                       "seed": entry.get("seed"), "config": _yaml(entry.get("config")),
                       "model": entry.get("model")})
    return blocks


def _yaml(config: object) -> str:
    return "" if not config else yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=110)


def _model_rows(model_meta: dict | None, origin: dict) -> list[tuple[str, str]]:
    """The audited model: architecture, classes, input, normalisation, task (from model.json or its origin)."""
    meta = {**(model_meta or {}), **(origin.get("metadata") or {})}
    rows = []
    for key, label in (("timm_name", "architecture"), ("architecture", "architecture"), ("family", "family"),
                       ("task", "task"), ("class_names", "classes (output order)"), ("in_chans", "input channels"),
                       ("input_size", "input size (px)"), ("mean", "normalisation mean"),
                       ("std", "normalisation std")):
        value = meta.get(key)
        if value is None or any(label == r[0] for r in rows):
            continue
        if isinstance(value, (list, tuple)):
            value = ", ".join(num(v) if isinstance(v, float) else str(v) for v in value)
        rows.append((label, str(value)))
    return rows


FIGURE_CAPTIONS = {
    "robust_accuracy_vs_eps": ("Accuracy vs ε", "Each attack's accuracy at every ε (L∞, [0, 1] pixels); worst case "
                               "bold, clean dashed."),
    "fragile_images": ("The most fragile images", "Correctly classified images whose target probability the attack "
                       "lowers most: clean and adversarial image, the Grad-CAM map of the clean prediction on each "
                       "(points.csv lists every point)."),
    "calibration": ("Calibration under attack", "Left: reliability diagrams (accuracy against mean confidence in 15 "
                    "equal-width bins; the dotted diagonal is perfect calibration). Right: risk-coverage curves "
                    "(the error among the most confident points as coverage grows; AURC is the area under it)."),
    "certified_accuracy_vs_radius": ("Certified accuracy vs radius", "The share of points whose smoothed "
                                     "prediction is right and certified at least this L2 radius; abstentions count "
                                     "as wrong."),
    "corruption_accuracy_vs_severity": ("Accuracy vs severity", "Each corruption's accuracy at every severity."),
    "corruption_gallery": ("Corruption gallery", "One image under every corruption and severity."),
    "xai_gallery": ("Gallery", "Images, their maps (per stage for multi-scale maps; and, when measured, the maps under "
                    "attack) per class."),
    "xai_curves": ("Deletion and insertion curves", "Mean model confidence as the most salient pixels are removed "
                   "(deletion) or restored (insertion), per baseline."),
    "xai_se_gates": ("Squeeze-and-excitation gates", ""),
}


def _figures(directory: Path, paths: Sequence[str]) -> list[dict]:
    """The report's figures inlined, with their captions."""
    return [f for f in (_figure(directory, rel, *FIGURE_CAPTIONS.get(Path(rel).stem, (Path(rel).stem, "")))
                        for rel in paths) if f is not None]


def _typed(directory: Path, name: str, parse, view) -> tuple[object | None, dict | None]:
    """The typed report in ``directory/name`` (``parse``: its ``from_json``) and its view with the figures inlined
    (None, None when absent)."""
    data = _read(directory / name)
    if not data:
        return None, None
    report = parse(data)
    shown = view(report)
    shown["figures"] = _figures(directory, shown["figures"])
    return report, shown


def _predictions(rows: list | None, directory: Path) -> list[dict] | None:
    if not rows:
        return None
    return [{"file": r.get("file"), "prediction": r.get("prediction"), "confidence": r.get("confidence"),
             "positive": r.get("positive_labels"), "uri": data_uri(directory / r["overlay"]) if r.get("overlay") else None}
            for r in rows]


def _profile(profile: dict | None) -> dict | None:
    if not profile:
        return None
    rows = [(label, profile[key] * scale, unit) for key, label, scale, unit in PROFILE_ROWS
            if isinstance(profile.get(key), (int, float))]
    parts = [str(profile["device"])] if profile.get("device") else []
    parts += [f"{profile['resolution']} px images"] if profile.get("resolution") else []
    parts += ["bf16 autocast" if profile.get("bf16") else "fp32"] if "bf16" in profile else []
    parts += ["channels_last"] if profile.get("channels_last") else []
    context = ", ".join(parts)
    return {"rows": rows, "context": context} if rows else None


def _headline(metrics: dict | None, robustness: RobustnessReport | None, corruptions: CorruptionReport | None,
              explanations: dict | None) -> list[dict]:
    """The few numbers a reader looks for first."""
    cards = []
    if robustness is not None:
        clean = robustness.clean
        cards.append({"label": "clean accuracy", "value": clean.get("accuracy"), "ci": clean.interval("accuracy"),
                      "note": f"{robustness.n_points} images"})
        worst = robustness.worst_case
        primary = None if robustness.eval_attack is None else robustness.eval_attack.label
        label = primary if primary in worst else (list(worst)[-1] if worst else None)
        if label is not None:
            cards.append({"label": f"robust accuracy, ε = {label}", "value": worst[label].get("accuracy"),
                          "ci": worst[label].interval("accuracy"), "note": "worst case over the attacks"})
        decided = [c for c in robustness.masking_checks if c.passed is not None]
        if decided:
            failed = sum(c.passed is False for c in decided)
            cards.append({"label": "gradient-masking checks", "text": f"{len(decided) - failed}/{len(decided)} passed",
                          "bad": failed > 0, "note": "failures mean the robust accuracy may be overstated"})
    elif metrics and (metrics.get("test") or {}).get("acc") is not None:
        test = metrics["test"]
        cards.append({"label": "test accuracy", "value": test.get("acc"), "ci": test.get("acc_ci95"), "note": ""})
    if corruptions is not None and corruptions.mean_accuracy is not None:
        cards.append({"label": "mean corruption accuracy", "value": corruptions.mean_accuracy, "ci": None,
                      "note": f"{len(corruptions.corruptions)} corruptions × {len(corruptions.severities)} severities"})
    if explanations:
        for prefix, label in (("deletion_auc", "deletion AUC (lower is better)"),
                              ("insertion_auc", "insertion AUC (higher is better)"),
                              ("stability_ssim", "map stability under attack (SSIM)")):
            row = next((r for r in explanations["rows"] if r["key"].startswith(prefix)), None)
            if row is not None:  # the first baseline listed (rise, blur, ...); † marks a degenerate model's
                flagged = row["name"].endswith(" †")
                cards.append({"label": label, "value": row["mean"], "ci": row["ci"], "warn": flagged,
                              "note": "uninformative: the model is degenerate (see Explanations)" if flagged
                              else f"{explanations['explainer']}, {row['key']}"})
        sanity = explanations.get("sanity")
        if sanity:
            cards.append({"label": "explanation sanity check", "text": "passed" if sanity.get("passed") else "FAILED",
                          "bad": not sanity.get("passed"), "note": "maps change when the weights are randomised"})
    return cards


def _evaluations(directory: Path) -> list[dict]:
    """The evaluations and explanations run on this run's model (``evals/<name>/``), newest last."""
    found = sorted((directory / EVALUATIONS).glob("*/provenance.json")) if (directory / EVALUATIONS).is_dir() else []
    rows = []
    for path in found:
        folder = path.parent
        provenance = _read(path) or {}
        task = next(iter(provenance), "eval")
        entry = provenance.get(task) or {}
        rows.append({"name": folder.name, "task": TASK_TITLES.get(task, task), "created": entry.get("created"),
                     "command": entry.get("command"),
                     "link": f"{EVALUATIONS}/{folder.name}/{REPORT_FILE}" if (folder / REPORT_FILE).exists() else None,
                     "files": sorted(p.name for p in folder.glob("*.json"))})
    return rows


#: Figures written outside the suites' reports, with their captions; any other PNG is shown under its file name.
OTHER_FIGURES = {"robust_curves.png": ("Robust accuracy per epoch", "The evaluation attack's metric on the training "
                                       "and validation data at each epoch: a widening gap while validation falls is "
                                       "robust overfitting (Rice et al. 2020).")}


def _other_figures(directory: Path, shown: set[str]) -> list[dict]:
    """PNGs in the directory and ``figures/`` that no section shows (e.g. the training curves)."""
    found = sorted([*directory.glob("*.png"), *directory.glob("figures/*.png")])
    relative = [str(p.relative_to(directory)) for p in found]
    return [f for f in (_figure(directory, rel, *OTHER_FIGURES.get(Path(rel).name, (Path(rel).stem.replace("_", " "), "")))
                        for rel in relative if rel not in shown) if f is not None]


def run_context(directory: str | Path) -> dict:
    """Everything the run page shows, read from the files in ``directory`` (absent files: sections omitted)."""
    directory = Path(directory)
    model_meta = _read(directory / "model.json")
    provenance = _read(directory / "provenance.json")
    metrics = _read(directory / "metrics.json")
    robustness_report, robustness = _typed(directory, "robustness.json", RobustnessReport.from_json, robustness_view)
    corruptions_report, corruptions = _typed(directory, "corruptions.json", CorruptionReport.from_json,
                                             corruption_view)
    explanations = _typed(directory, "explanations.json", explanation_report_from_json, any_explanation_view)[1]
    certification = _typed(directory, "certification.json", CertificationReport.from_json, certification_view)[1]
    profile = (metrics or {}).get("profile") or _read(directory / "profile.json")
    tasks = (["train"] if model_meta and metrics else []) + list(provenance or {})
    origin = next((e.get("model") for e in (provenance or {}).values() if e.get("model")), None) or {}
    model_name = (model_meta or {}).get("timm_name") or (origin.get("metadata") or {}).get("architecture") \
        or origin.get("architecture") or (explanations or {}).get("model") or "model"
    dataset = ((model_meta or {}).get("config") or {}).get("dataset", {}).get("_target_") \
        or next((e.get("dataset") for e in (provenance or {}).values() if e.get("dataset")), None)
    shown = {f["file"] for section in (robustness, corruptions, explanations, certification) if section
             for f in section["figures"]}
    return {
        "title": f"{model_name}" + (f" on {str(dataset).rsplit('.', 1)[-1]}" if dataset else ""),
        "kind": " + ".join(TASK_TITLES.get(t, t) for t in dict.fromkeys(tasks)) or "Report",
        "directory": str(directory.resolve()),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "headline": _headline(metrics, robustness_report, corruptions_report, explanations),
        "provenance": _provenance(model_meta, provenance),
        "model_rows": _model_rows(model_meta, origin),
        "origin": {k: origin.get(k) for k in ("source", "file", "sha256", "sha256_of", "metadata_from")},
        "test": test_view(metrics, (model_meta or {}).get("class_names") or []),
        "robustness": robustness,
        "corruptions": corruptions,
        "explanations": explanations,
        "certification": certification,
        "evaluations": _evaluations(directory),
        "points": (directory / "points.csv").exists(),
        "predictions": _predictions(_read(directory / "predictions.json"), directory),
        "profile": _profile(profile),
        "other_figures": _other_figures(directory, shown),
    }


# ---------------------------------------------------------------------------------------------------------------
# rendering

def environment() -> jinja2.Environment:
    """The Jinja2 environment of the report templates (HTML autoescaped, undefined names are errors)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, fixed=fixed, interval=interval, heat=heat, breakable=breakable)
    return env


def render_run(directory: str | Path) -> str:
    """The run page of ``directory`` as HTML text."""
    return environment().get_template("run.html.j2").render(**run_context(directory))


def write_run_report(directory: str | Path) -> Path:
    """Render ``directory``'s files into ``directory/report.html``; returns its path."""
    path = Path(directory) / REPORT_FILE
    atomic_write_text(path, render_run(directory))
    return path


def try_write_run_report(directory: str | Path) -> Path | None:
    """:func:`write_run_report` for the end of a training run: a page that cannot be rendered is a warning, so the
    run (and the sweep it belongs to) keeps its results."""
    try:
        return write_run_report(directory)
    except (TrixaiError, jinja2.TemplateError, OSError, ValueError, TypeError, KeyError) as err:
        log.warning("report.html not written for %s: %s: %s", directory, type(err).__name__, err)
        return None


def write_sweep_report(out_dir: str | Path, *, rows: Sequence[Mapping], summary: Sequence, columns: Sequence[str],
                       id_columns: Sequence[str], units: Mapping[str, tuple[str, float]], sources: Sequence[Path],
                       figures: Mapping[str, Path], provenance: Mapping) -> Path:
    """``out_dir/report.html`` of a ``trixai-report`` sweep: the runs, mean ± std over seeds, the Pareto and
    trade-off figures, and the report's provenance."""
    out_dir = Path(out_dir)
    headers = [units.get(c, (c, 1.0))[0] for c in columns]
    scale = [units.get(c, (c, 1.0))[1] for c in columns]

    def scaled(value: object, factor: float) -> dict:
        if hasattr(value, "mean") and hasattr(value, "std"):
            return {"value": value.mean * factor, "std": value.std * factor}
        return {"value": value * factor if isinstance(value, float) else value, "std": None}

    # identity columns with one value for every run are said once above the tables
    common = [(c, rows[0].get(c)) for c in id_columns if rows and len({str(r.get(c)) for r in rows}) == 1]
    varying = [c for c in id_columns if c not in dict(common)]
    run_rows = [{"id": [row.get(c) for c in varying],
                 "cells": [scaled(row.get(c), s) for c, s in zip(columns, scale, strict=True)]} for row in rows]
    seed_columns = [c for c in ("sweep", "model", "objective", "varied") if c in varying] + ["n"]
    seed_rows = [{"id": [getattr(c, k) for k in seed_columns],
                  "cells": [scaled(c.stats.get(col), s) for col, s in zip(columns, scale, strict=True)]}
                 for c in summary] if any(c.n > 1 for c in summary) else []
    captions = {"pareto_robust_acc_vs_flops.png": ("Robust accuracy vs compute", "One point per configuration; the "
                "red line joins the configurations that no other beats on both."),
                "pareto_robust_acc_vs_latency.png": ("Robust accuracy vs latency", "Latency as measured by the "
                                                     "efficiency profile."),
                "pareto_stability_vs_flops.png": ("Explanation stability vs compute", "Stability of the maps under "
                                                  "attack against the forward pass's cost."),
                "tradeoff_accuracy_vs_stability.png": ("Accuracy vs explanation stability", "One point per "
                                                       "configuration, joined in the order of the varied setting.")}
    inlined = [f for f in (_figure(p.parent, p.name, *captions.get(name, (name.removesuffix(".png").replace("_", " "), "")))
                           for name, p in figures.items()) if f is not None]
    context = {
        "title": f"Sweep of {len(rows)} runs", "kind": TASK_TITLES["report"], "directory": str(out_dir.resolve()),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "sources": [str(s) for s in sources], "id_columns": varying, "common": common, "headers": headers,
        "rows": run_rows, "seed_rows": seed_rows, "seed_id_columns": seed_columns,
        "figures": inlined,
        "provenance": _provenance(None, {"report": dict(provenance)}),
    }
    path = out_dir / REPORT_FILE
    atomic_write_text(path, environment().get_template("sweep.html.j2").render(**context))
    return path
