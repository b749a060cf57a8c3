"""``report.html``: one self-contained page per training run, ``trixai-eval``, ``trixai-explain``, audit and
``trixai-report`` sweep, for readers without W&B or a network.

The page is rendered with Jinja2 from the templates in ``trixai/tasks/templates`` (autoescaped); every figure is
inlined as a ``data:`` URI, the style sheet is inline, there are no scripts and no external links, so the file opens
from a disk, an e-mail attachment or a USB stick. A run page renders the sections whose files exist in the
directory (``model.json``, ``provenance.json``, ``metrics.json``, ``robustness.json``, ``corruptions.json``,
``explanations.json``, ``predictions.json``, ``profile.json``, ``figures/``) and omits the others; a 95 % interval
``k_ci95: [low, high]`` stored beside a metric ``k`` is shown as ``value [low, high]``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
import yaml

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_text

log = logging.getLogger(__name__)
REPORT_FILE = "report.html"
TEMPLATES = Path(__file__).resolve().parent / "templates"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml",
        ".gif": "image/gif", ".webp": "image/webp"}
#: Test metrics of metrics.json in the order shown (others follow alphabetically).
TEST_ORDER = ("acc", "top2", "bal_acc", "f1", "auroc", "auprc", "cam_ssim")
TEST_NAMES = {"acc": "accuracy", "top2": "top-2 accuracy", "bal_acc": "balanced accuracy", "f1": "macro F1",
              "auroc": "macro AUROC", "auprc": "macro AUPRC", "cam_ssim": "CAM SSIM clean vs attacked"}
#: Explanation metrics: (reading, better direction); unknown keys are shown without a hint.
XAI_HINTS = {
    "deletion_auc": ("faithfulness: confidence left while the most salient pixels are removed", "lower"),
    "insertion_auc": ("faithfulness: confidence regained while the most salient pixels are restored", "higher"),
    "average_drop": ("faithfulness: relative confidence lost on the map-masked image", "lower"),
    "increase_in_confidence": ("faithfulness: share of images more confident on the map-masked image", "higher"),
    "pointing_game": ("localisation: the map's peak falls on the lesion mask", "higher"),
    "energy_pointing_game": ("localisation: share of map energy inside the mask", "higher"),
    "topk_iou": ("localisation: IoU of the top-k % pixels with the mask", "higher"),
    "mask_area_fraction": ("chance level of the two pointing games (mask area / image)", ""),
    "stability_ssim": ("stability: SSIM of the maps of clean and attacked images", "higher"),
    "stability_spearman": ("stability: rank correlation of clean and attacked maps", "higher"),
    "noise_ssim": ("stability: SSIM under random noise of the same size", "higher"),
    "noise_spearman": ("stability: rank correlation under random noise", "higher"),
    "sanity_final_ssim": ("sanity: similarity to the fully randomised model's maps", "lower"),
    "sanity_final_spearman": ("sanity: rank correlation with the randomised model's maps", "lower"),
}
PROFILE_ROWS = (("params", "parameters", 1e-6, "M"), ("macs", "MACs (1 image)", 1e-9, "G"),
                ("flops", "FLOPs (1 image)", 1e-9, "G"), ("latency_ms_b1", "latency, batch 1", 1.0, "ms"),
                ("throughput_b1", "throughput, batch 1", 1.0, "images/s"),
                ("throughput_b32", "throughput, batch 32", 1.0, "images/s"),
                ("size_fp32_bytes", "size fp32", 2 ** -20, "MiB"), ("size_fp16_bytes", "size fp16", 2 ** -20, "MiB"),
                ("peak_mem_infer_bytes", "peak memory, inference", 2 ** -20, "MiB"),
                ("peak_mem_train_bytes", "peak memory, training step", 2 ** -20, "MiB"))
TASK_TITLES = {"train": "Training run", "eval": "Robustness evaluation", "explain": "Explanations",
               "audit": "Audit", "report": "Sweep report"}


# ---------------------------------------------------------------------------------------------------------------
# formatting (Jinja filters)

def num(value: object, digits: int = 4) -> str:
    """A number with ``digits`` significant digits, large whole numbers in full, "—" when missing or undefined."""
    if value is None or isinstance(value, str) and not value:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return "undefined" if math.isnan(value) else str(value)
        if float(value).is_integer() and abs(value) >= 1000:
            return f"{int(value):,}".replace(",", "\u2009")
        return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def fixed(value: object, decimals: int = 3) -> str:
    """A score with a fixed number of decimals (columns line up), falling back to :func:`num` for large values."""
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1000:
        return f"{value:.{decimals}f}"
    return num(value)


def interval(ci: object) -> str:
    """``[low, high]`` of a stored 95 % interval, empty when there is none."""
    if isinstance(ci, Sequence) and not isinstance(ci, str) and len(ci) == 2 and all(
            isinstance(v, (int, float)) for v in ci):
        return f"[{fixed(float(ci[0]))}, {fixed(float(ci[1]))}]"
    return ""


def breakable(text: object) -> markupsafe.Markup:
    """A long column name (``explanations/metrics/stability_ssim/mean``) that may wrap after ``/`` and ``_``."""
    escaped = str(markupsafe.escape(str(text)))
    return markupsafe.Markup(escaped.replace("/", "/<wbr>").replace("_", "_<wbr>"))


def heat(value: object) -> str:
    """Inline background for a score in [0, 1]: red (0) through amber to green (1); empty otherwise."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or not 0.0 <= value <= 1.0:
        return ""
    return f"background-color: hsl({round(120 * value)}, 70%, 90%)"


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


def _ci(mapping: Mapping | None, key: str) -> object:
    return None if not isinstance(mapping, Mapping) else mapping.get(f"{key}_ci95")


def _cell(mapping: Mapping | None, key: str) -> dict:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    return {"value": value, "ci": _ci(mapping, key)}


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


def _model_rows(model_meta: dict | None, provenance: dict | None) -> list[tuple[str, str]]:
    """The audited model: architecture, classes, input, normalisation, task (from model.json or provenance)."""
    origin = next((e.get("model") for e in (provenance or {}).values() if e.get("model")), None) or {}
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


def _test_metrics(metrics: dict | None, class_names: Sequence[str]) -> dict | None:
    test = (metrics or {}).get("test") or {}
    names = [k for k in test if not k.startswith("rob_") and not k.endswith("_ci95") and isinstance(test[k], (int, float))]
    if not names:
        return None
    names.sort(key=lambda k: (TEST_ORDER.index(k) if k in TEST_ORDER else len(TEST_ORDER), k))
    attacked = any(k.startswith("rob_") for k in test)
    attack = (metrics or {}).get("eval_attack") or {}
    eps = attack.get("eps")
    header = f"{attack.get('attack', 'attack')}, ε = {round(eps * 255, 2):g}/255" if eps is not None else "attacked"
    rows = [{"name": TEST_NAMES.get(k, k), "clean": _cell(test, k), "attacked": _cell(test, f"rob_{k}")}
            for k in names]
    return {"rows": rows, "attacked": attacked, "attack_header": header, "monitor": metrics.get("monitor"),
            "best_score": metrics.get("best_score"), "epochs": metrics.get("epochs"),
            "class_counts": metrics.get("class_counts") or {}, "class_names": list(class_names)}


def _robustness(evaluation: dict | None, directory: Path) -> dict | None:
    if not evaluation:
        return None
    labels = list(evaluation.get("eps_labels") or [])
    clean = evaluation.get("clean") or {}
    results = evaluation.get("results") or {}
    worst = evaluation.get("worst_case") or {}
    multiclass = evaluation.get("task", "multiclass") == "multiclass"
    accuracy = [{"name": "clean", "cells": [_cell(clean, "accuracy")] * max(len(labels), 1), "strong": False}]
    accuracy += [{"name": name, "cells": [_cell(per_eps.get(lb), "accuracy") for lb in labels], "strong": False}
                 for name, per_eps in results.items()]
    if worst:
        accuracy.append({"name": "worst case", "cells": [_cell(worst.get(lb), "accuracy") for lb in labels],
                         "strong": True})
    per_key = "per_class_accuracy" if multiclass else "per_label_accuracy"
    reference = labels[-1] if labels else None
    columns = ["clean", *results, *(["worst case"] if worst else [])]
    per_class = []
    for cls in evaluation.get("class_names") or []:
        cells = [(clean.get(per_key) or {}).get(cls)]
        cells += [((per_eps.get(reference) or {}).get(per_key) or {}).get(cls) for per_eps in results.values()]
        if worst:
            cells.append(((worst.get(reference) or {}).get(per_key) or {}).get(cls))
        per_class.append({"name": cls, "cells": cells})
    details_keys = ("top2", "balanced_accuracy", "macro_f1") if multiclass else (
        "label_accuracy_macro", "macro_auroc", "macro_auprc")
    details = [{"attack": "clean", "eps": "0", "scores": [clean.get(k) for k in ("accuracy", *details_keys)],
                "success": None, "linf": None}]
    for name, per_eps in [*results.items(), ("worst case", worst)]:
        for label, entry in per_eps.items():
            linf = (entry["linf_mean"] * 255, entry["linf_max"] * 255, entry.get("linf_within_eps")) \
                if "linf_max" in entry else None
            details.append({"attack": name, "eps": label, "scores": [entry.get(k) for k in ("accuracy", *details_keys)],
                            "success": entry.get("attack_success_rate"), "linf": linf})
    checks = [{"check": c.get("check", "?"), "passed": c.get("passed"), "detail": c.get("detail", "")}
              for c in evaluation.get("masking_checks") or []]
    components = [{"eps": label, "parts": entry["broken_by"]} for label, entry in results.get("autoattack", {}).items()
                  if isinstance(entry, Mapping) and entry.get("broken_by")]
    settings = [{"name": f"{name} @ {label}", "json": json.dumps(s, default=str)}
                for name, per_eps in (evaluation.get("settings") or {}).items() for label, s in per_eps.items()]
    return {
        "task": evaluation.get("task", "multiclass"), "n_points": evaluation.get("n_points"),
        "device": evaluation.get("device"), "seed": evaluation.get("seed"), "labels": labels or ["—"],
        "accuracy": accuracy, "per_class": per_class, "per_class_columns": columns, "reference": reference,
        "per_class_label": "class" if multiclass else "label", "details": details,
        "details_keys": details_keys,
        "details_names": ("top-2", "bal. acc", "macro F1") if multiclass else ("label acc", "AUROC", "AUPRC"),
        "checks": checks, "checks_passed": sum(c["passed"] is True for c in checks),
        "checks_failed": sum(c["passed"] is False for c in checks),
        "probe": json.dumps(evaluation["masking_probe"]) if evaluation.get("masking_probe") else None,
        "components": components, "settings": settings, "early_stop": evaluation.get("early_stop"),
        # a curve needs two budgets: with one ε the table above says everything the figure would
        "figure": _figure(directory, "figures/robust_accuracy_vs_eps.png", "Accuracy vs ε",
                          "Each attack's accuracy at every ε (L∞, [0, 1] pixels); worst case bold, clean dashed.")
        if len(labels) > 1 else None,
    }


def _natural(text: str) -> list:
    return [float(p) if re.fullmatch(r"\d+(\.\d+)?", p) else p for p in re.split(r"(\d+(?:\.\d+)?)", str(text))]


def _corruptions(data: dict | None, directory: Path) -> dict | None:
    """A corruption x severity table of accuracy. Layout read: ``results`` (or the top level) maps corruption ->
    severity -> an entry with ``accuracy`` (or a number); ``clean.accuracy``, per-corruption ``summary`` rows
    (their numeric fields become columns: mean accuracy, CE, ...), the top-level numbers (mean accuracy, mCE, ...),
    ``worst_corruption`` and ``figures/corruption_*.png`` are shown when present. Any other layout falls back to a
    list of its numeric leaves."""
    if not data:
        return None
    results = data.get("results") if isinstance(data.get("results"), Mapping) else {
        k: v for k, v in data.items() if isinstance(v, Mapping) and k not in ("clean", "settings", "source", "summary")}
    table: dict[str, dict[str, dict]] = {}
    for name, per_severity in results.items():
        if not isinstance(per_severity, Mapping):
            continue
        for severity, entry in per_severity.items():
            if isinstance(entry, Mapping) and isinstance(entry.get("accuracy"), (int, float)):
                table.setdefault(name, {})[str(severity)] = _cell(entry, "accuracy")
            elif isinstance(entry, (int, float)) and not isinstance(entry, bool):
                table.setdefault(name, {})[str(severity)] = {"value": entry, "ci": _ci(per_severity, severity)}
    severities = sorted({s for row in table.values() for s in row}, key=_natural)
    clean = data.get("clean") if isinstance(data.get("clean"), Mapping) else {}
    summary = {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if not table:
        leaves = _numeric_leaves(data)
        return {"rows": [], "severities": [], "clean": None, "summary": leaves, "settings": None, "extra": [],
                "worst": None, "figures": []}
    per_row = data.get("summary") if isinstance(data.get("summary"), Mapping) else {}
    extra = sorted({k for row in per_row.values() if isinstance(row, Mapping) for k, v in row.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and not k.endswith("_ci95")},
                   key=lambda k: (k != "mean_accuracy", k))
    worst = data.get("worst_corruption") if isinstance(data.get("worst_corruption"), Mapping) else None
    worst = None if worst is None else {"name": worst.get("name"), "mean_accuracy": worst.get("mean_accuracy")}
    figures = [f for f in (_figure(directory, f"figures/{name}", title, caption) for name, title, caption in (
        ("corruption_accuracy_vs_severity.png", "Accuracy vs severity", "Each corruption's accuracy at every severity."),
        ("corruption_gallery.png", "Corruption gallery", "One image under every corruption and severity."))) if f]
    return {"rows": [{"name": n, "cells": [row.get(s, {"value": None, "ci": None}) for s in severities],
                      "extra": [{"value": (per_row.get(n) or {}).get(k), "ci": _ci(per_row.get(n), k)} for k in extra]}
                     for n, row in table.items()],
            "severities": severities, "clean": _cell(clean, "accuracy") if "accuracy" in clean else None,
            "summary": summary, "extra": extra, "worst": worst, "figures": figures,
            "settings": json.dumps(data.get("settings"), default=str) if data.get("settings") else None}


def _numeric_leaves(data: object, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            out.update(_numeric_leaves(value, f"{prefix}/{key}" if prefix else str(key)))
    elif isinstance(data, (int, float)) and not isinstance(data, bool):
        out[prefix] = data
    return out


def _metric_ci(metrics: Mapping, key: str, value: Mapping) -> object:
    return value.get("mean_ci95") or value.get("ci95") or metrics.get(f"{key}_ci95")


def _explanations(report: dict | None, directory: Path) -> dict | None:
    if not report:
        return None
    metrics = report.get("metrics") or {}
    rows = []
    for key, value in metrics.items():
        if key.endswith("_ci95") or not isinstance(value, Mapping):
            continue
        hint = next((h for prefix, h in XAI_HINTS.items() if key.startswith(prefix)), ("", ""))
        rows.append({"name": key, "mean": value.get("mean"), "std": value.get("std"), "n": value.get("n"),
                     "ci": _metric_ci(metrics, key, value), "reading": hint[0], "better": hint[1]})
    titles = {"xai_gallery": ("Gallery", "Images, their maps (and, when measured, the maps under attack) per class."),
              "xai_curves": ("Deletion and insertion curves", "Mean model confidence as the most salient pixels are "
                             "removed (deletion) or restored (insertion), per baseline."),
              "xai_se_gates": ("Squeeze-and-excitation gates", "")}
    figures = [f for f in (_figure(directory, rel, *titles.get(Path(rel).stem, (Path(rel).stem, "")))
                           for rel in report.get("figures") or []) if f is not None]
    # a degenerate model (trixai.xai.metrics.degeneracy) makes some metrics describe its bias: marked with †
    flagged = report.get("uninformative") or {}
    marked = set(flagged.get("metrics") or [])
    for row in rows:
        row["name"] += " †" if row["name"] in marked else ""
    flags = [f"{flagged.get('reason') or 'degenerate model'}. The metrics marked † describe the model's bias, not "
             "its explanations."] if marked else []
    explainer = report.get("explainer") or {}
    return {"explainer": explainer.get("name", "?"), "target": explainer.get("target", "predicted"),
            "settings": json.dumps(explainer, default=str), "model": report.get("model"),
            "n_samples": report.get("n_samples"), "attack": _attack_label(report.get("attack")),
            "rows": rows, "figures": figures, "sanity": _sanity(report.get("sanity")),
            "flags": flags,
            "se": report.get("se_attention"),
            "tcav": _tcav(report)}


def _tcav(report: Mapping) -> dict | None:
    """TCAV's per-class rows (``results``: score, p-value, ...) with the concept and layer tested."""
    rows = report.get("results")
    if not report.get("concept") or not isinstance(rows, list) or not rows:
        return None
    columns = [k for k, v in rows[0].items() if isinstance(v, (str, int, float, bool)) or v is None]
    return {"concept": report["concept"], "layer": report.get("layer"), "columns": columns,
            "rows": [[row.get(c) for c in columns] for row in rows]}


def _attack_label(attack: Mapping | None) -> str | None:
    """``pgd10, ε = 2/255, 10 steps`` from an attack's settings."""
    if not attack:
        return None
    eps = attack.get("eps")
    parts = [str(attack.get("attack") or attack.get("name") or "attack")]
    if isinstance(eps, (int, float)):
        parts.append(f"ε = {round(eps * 255, 2):g}/255")
    if attack.get("steps"):
        parts.append(f"{attack['steps']} steps")
    return ", ".join(parts)


def _sanity(sanity: Mapping | None) -> dict | None:
    if not sanity:
        return None
    return {"passed": sanity.get("passed"), "max_spearman": sanity.get("max_spearman"),
            "final_spearman": sanity.get("final_spearman"), "n": sanity.get("n"),
            "stages": [{"stage": s.get("stage"), "ssim": s.get("ssim"), "spearman": s.get("spearman")}
                       for s in sanity.get("stages") or []]}


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


def _headline(metrics, evaluation, corruptions, explanations) -> list[dict]:
    """The few numbers a reader looks for first."""
    cards = []
    if evaluation:
        clean = evaluation.get("clean") or {}
        cards.append({"label": "clean accuracy", "value": clean.get("accuracy"), "ci": _ci(clean, "accuracy"),
                      "note": f"{evaluation.get('n_points')} images"})
        worst = evaluation.get("worst_case") or {}
        primary = (evaluation.get("eval_attack") or {}).get("eps")
        label = primary if primary in worst else (list(worst)[-1] if worst else None)
        if label is not None:
            cards.append({"label": f"robust accuracy, ε = {label}", "value": worst[label].get("accuracy"),
                          "ci": _ci(worst[label], "accuracy"), "note": "worst case over the attacks"})
        checks = evaluation.get("masking_checks") or []
        decided = [c for c in checks if c.get("passed") is not None]
        if decided:
            failed = sum(c["passed"] is False for c in decided)
            cards.append({"label": "gradient-masking checks", "text": f"{len(decided) - failed}/{len(decided)} passed",
                          "bad": failed > 0, "note": "failures mean the robust accuracy may be overstated"})
    elif metrics and (metrics.get("test") or {}).get("acc") is not None:
        test = metrics["test"]
        cards.append({"label": "test accuracy", "value": test.get("acc"), "ci": _ci(test, "acc"), "note": ""})
    if corruptions and corruptions.get("rows"):
        values = [c["value"] for r in corruptions["rows"] for c in r["cells"] if isinstance(c["value"], (int, float))]
        if isinstance(corruptions["summary"].get("mean_accuracy"), (int, float)):
            values = [corruptions["summary"]["mean_accuracy"]]  # the suite's own mean over corruptions and severities
        if values:
            cards.append({"label": "mean corruption accuracy", "value": sum(values) / len(values), "ci": None,
                          "note": f"{len(corruptions['rows'])} corruptions"})
    if explanations:
        for prefix, label in (("deletion_auc", "deletion AUC (lower is better)"),
                              ("insertion_auc", "insertion AUC (higher is better)"),
                              ("stability_ssim", "map stability under attack (SSIM)")):
            row = next((r for r in explanations["rows"] if r["name"].startswith(prefix)), None)
            if row is not None:  # the first baseline listed (rise, blur, ...); † marks a degenerate model's
                flagged = row["name"].endswith(" †")
                cards.append({"label": label, "value": row["mean"], "ci": row["ci"], "warn": flagged,
                              "note": "uninformative: the model is degenerate (see Explanations)" if flagged
                              else f"{explanations['explainer']}, {row['name']}"})
        sanity = explanations.get("sanity")
        if sanity:
            cards.append({"label": "explanation sanity check", "text": "passed" if sanity.get("passed") else "FAILED",
                          "bad": not sanity.get("passed"), "note": "maps change when the weights are randomised"})
    return cards


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
    evaluation = _read(directory / "robustness.json")
    corruptions = _corruptions(_read(directory / "corruptions.json"), directory)
    explanations = _explanations(_read(directory / "explanations.json"), directory)
    profile = (metrics or {}).get("profile") or _read(directory / "profile.json")
    tasks = (["train"] if model_meta and metrics else []) + list(provenance or {})
    origin = next((e.get("model") for e in (provenance or {}).values() if e.get("model")), None) or {}
    model_name = (model_meta or {}).get("timm_name") or (origin.get("metadata") or {}).get("architecture") \
        or origin.get("architecture") or (explanations or {}).get("model") or "model"
    dataset = ((model_meta or {}).get("config") or {}).get("dataset", {}).get("_target_") \
        or next((e.get("dataset") for e in (provenance or {}).values() if e.get("dataset")), None)
    robustness = _robustness(evaluation, directory)
    shown = {f["file"] for f in [*((explanations or {}).get("figures") or []), *((corruptions or {}).get("figures") or [])]}
    shown |= {"figures/robust_accuracy_vs_eps.png"}
    return {
        "title": f"{model_name}" + (f" on {str(dataset).rsplit('.', 1)[-1]}" if dataset else ""),
        "kind": " + ".join(TASK_TITLES.get(t, t) for t in dict.fromkeys(tasks)) or "Report",
        "directory": str(directory.resolve()),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "headline": _headline(metrics, evaluation, corruptions, explanations),
        "provenance": _provenance(model_meta, provenance),
        "model_rows": _model_rows(model_meta, provenance),
        "origin": {k: origin.get(k) for k in ("source", "file", "sha256", "sha256_of", "metadata_from")},
        "test": _test_metrics(metrics, (model_meta or {}).get("class_names") or []),
        "robustness": robustness,
        "corruptions": corruptions,
        "explanations": explanations,
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
