"""View models of the typed reports: the tables every renderer shows, computed once.

``robustness_view``, ``corruption_view``, ``explanation_view`` and ``tcav_view`` turn a report into plain dicts of
rows and cells (a cell is ``{"value", "ci"}``); the markdown writer (:mod:`trixai.render.markdown`) and the HTML
templates (:mod:`trixai.render.html`) render the same view, so the two never disagree on what a report contains.
Labels, order and better directions come from :mod:`trixai.core.catalogue`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from trixai.core import catalogue
from trixai.core.formatting import eps_label, is_number, num
from trixai.core.reports import (
    AttackResult,
    Cell,
    CertificationReport,
    CorruptionReport,
    ExplanationReport,
    RobustnessReport,
    TcavReport,
)

ROBUSTNESS_DEFINITIONS = {
    "multiclass": [
        "accuracy = top-1 accuracy on the adversarial examples (robust accuracy); top-2, balanced accuracy "
        "(macro recall), macro F1 and per-class accuracy are computed on the same adversarial examples.",
        "attack success rate = fraction of the initially correct points that the attack makes wrong.",
        "worst case: accuracy, success rate and per-class accuracy take per point the first output (clean, then the "
        "attacks in the order listed) that fools it, else the lowest margin; every other metric takes per point the "
        "full-budget attack output with the highest cross-entropy.",
        "macro AUROC is one-vs-rest over the classes with both positives and negatives among the points.",
        "AutoAttack with fewer than 4 classes: the targeted DLR loss is undefined, APGD-T uses the targeted "
        "cross-entropy loss and APGD-T/FAB-T use C - 1 targets.",
    ],
    "multilabel": [
        "a point is fooled when any label's thresholded prediction (logit > 0) changes away from its target "
        "('flip any label'); accuracy = exact match (every label right) on the adversarial examples.",
        "FGSM/PGD/APGD-CE maximise BCE summed over labels; APGD-T and FAB-T target one label at a time (the 9 "
        "labels with the smallest signed margin (2y - 1) * logit), Square minimises min over labels of that margin; "
        "AutoAttack's loss pass maximises the expected Hamming loss (mean over labels of the wrong side's probability).",
        "macro AUROC/AUPRC, macro F1 and per-label accuracy are computed on the adversarial examples' scores (full "
        "budget on every point); the worst case takes each such metric's worst attack, exact-match accuracy per "
        "point the first output that fools the point.",
        "a label without positives or without negatives among the points has no AUROC/AUPRC: it is left out of the "
        "macro means (listed under 'Undefined AUROC').",
    ],
}
EARLY_STOP_DEFINITION = ("early stop: accuracy and the attack success rate of FGSM/PGD come from an extra run that "
                         "keeps a point's first fooling iterate (exact for accuracy); every other metric comes from "
                         "the full-budget run on every point.")
CORRUPTION_DEFINITIONS = [
    "accuracy: top-1 (multi-label: exact match); balanced accuracy: macro recall (multi-label: mean over labels of "
    "(TPR + TNR) / 2 at 0.5, MedMNIST-C); macro AUROC one-vs-rest over defined classes.",
    "error E = 1 − accuracy; CE_c = Σ_s E_{s,c} / Σ_s E^base_{s,c}; relative CE_c = Σ_s (E_{s,c} − E_clean) / "
    "Σ_s (E^base_{s,c} − E^base_clean) (ImageNet-C, Hendrycks & Dietterich 2019); mCE = mean over c.",
    "balanced error B = 1 − balanced accuracy; BE_c = mean_s B_{s,c} / mean_s B^base_{s,c}; rBE_c = "
    "(mean_s B_{s,c} − B_clean) / (mean_s B^base_{s,c} − B^base_clean) (MedMNIST-C, Di Salvo et al. 2024).",
    "rel. error (no baseline): mean_s (E_{s,c} − E_clean).",
    "— in a relative column: undefined, the baseline's corrupted error does not exceed its clean error (and then so "
    "are relative mCE / rBE).",
]


def cell(source: Cell | AttackResult | Mapping | None, key: str) -> dict:
    """``{"value", "ci"}`` of ``key`` in a scored entry (missing: both None)."""
    if source is None:
        return {"value": None, "ci": None}
    if isinstance(source, Mapping):
        return {"value": source.get(key), "ci": source.get(f"{key}_ci95")}
    return {"value": source.get(key), "ci": source.interval(key)}


def detail_keys(task: str) -> tuple[str, ...]:
    return ("top2", "balanced_accuracy", "macro_f1", "macro_auroc", "ece", "aurc") if task == "multiclass" else \
        ("label_accuracy_macro", "macro_f1", "macro_auroc", "macro_auprc", "ece", "aurc")


def bootstrap_line(settings: Mapping | None) -> str:
    if not settings:
        return "none (bootstrap: 0)"
    return (f"proportions (accuracy, top-2, success rate, per-class accuracy): Jeffreys intervals; balanced accuracy: "
            f"the posterior of the mean of per-class Jeffreys posteriors; the other metrics: percentile bootstrap over "
            f"the points, {settings['resamples']} resamples stratified by {settings['strata']}, seed {settings['seed']}")


# ---------------------------------------------------------------------------------------------------------------
# robustness

def robustness_view(report: RobustnessReport) -> dict:
    """Every table of a robustness report."""
    multiclass = report.task == "multiclass"
    labels = report.eps_labels
    attacks = list(report.results)
    accuracy = [{"name": "clean", "cells": [cell(report.clean, "accuracy")] * max(len(labels), 1), "strong": False}]
    accuracy += [{"name": name, "cells": [cell(per.get(lb), "accuracy") for lb in labels], "strong": False}
                 for name, per in report.results.items()]
    if report.worst_case:
        accuracy.append({"name": "worst case", "cells": [cell(report.worst_case.get(lb), "accuracy") for lb in labels],
                         "strong": True})
    keys = detail_keys(report.task)
    details = [_detail_row("clean", "0", report.clean, keys)]
    for name, per in [*report.results.items(), ("worst case", report.worst_case)]:
        details += [_detail_row(name, label, entry, keys) for label, entry in per.items()]
    reference = labels[-1] if labels and attacks else None
    columns = ["clean", *attacks, *(["worst case"] if report.worst_case else [])]
    sources = [report.clean, *(per.get(reference) for per in report.results.values())]
    if report.worst_case:
        sources.append(report.worst_case.get(reference))
    kind = "class" if multiclass else "label"

    def per_output(key: str) -> list[dict]:
        return [{"name": c, "cells": [None if s is None else s.scores.per_output.get(key, {}).get(c) for s in sources]}
                for c in report.class_names]

    return {
        "task": report.task, "n_points": report.n_points, "device": report.device, "seed": report.seed,
        "early_stop": report.early_stop, "resumed_batches": report.resumed_batches,
        "execution": execution_line(report.execution),
        "source": dict(report.source), "n_outputs": len(report.class_names), "labels": labels or ["—"],
        "bootstrap": bootstrap_line(report.bootstrap), "has_intervals": bool(report.bootstrap),
        "accuracy": accuracy, "details": details,
        "detail_names": [catalogue.label(k) for k in keys],
        "reference": reference, "kind": kind, "per_output_columns": columns,
        "per_class_accuracy": per_output(f"per_{kind}_accuracy"),
        "per_class_auroc": per_output(f"per_{kind}_auroc") if f"per_{kind}_auroc" in report.clean.scores.per_output else [],
        "auroc_undefined": list(report.clean.scores.auroc_undefined),
        "broken_by": [{"eps": label, "counts": [entry.broken_by.get(src, 0) for src in ["clean", *attacks]]}
                      for label, entry in report.worst_case.items() if entry.broken_by is not None],
        "broken_by_columns": ["clean", *attacks],
        "components": [{"eps": label, "parts": entry.broken_by}
                       for label, entry in report.results.get("autoattack", {}).items() if entry.broken_by],
        "sources": [{"attack": name, "eps": label, "metrics": metrics, "run": run}
                    for name, per in [*report.results.items(), ("worst case", report.worst_case)]
                    for label, entry in per.items() for metrics, run in entry.metric_runs.items()],
        "checks": [c.to_json() for c in report.masking_checks],
        "checks_passed": sum(c.passed is True for c in report.masking_checks),
        "checks_failed": sum(c.passed is False for c in report.masking_checks),
        "probe": json.dumps(report.masking_probe) if report.masking_probe else None,
        "settings": [{"name": f"{name} @ {label}", "json": json.dumps(s, default=str)}
                     for name, per in report.settings.items() for label, s in per.items()],
        "definitions": ROBUSTNESS_DEFINITIONS[report.task] + ([EARLY_STOP_DEFINITION] if report.early_stop else []),
        "figures": list(report.figures),
    }


def _detail_row(name: str, label: str, entry: AttackResult, keys: tuple[str, ...]) -> dict:
    linf = None
    if entry.linf_max is not None:
        linf = (entry.linf_mean * 255, entry.linf_max * 255, entry.linf_within_eps)
    elif name == "clean":
        linf = (0.0, 0.0, True)
    return {"attack": name, "eps": label, "cells": [cell(entry, k) for k in ("accuracy", *keys)],
            "success": None if name == "clean" else cell(entry, "attack_success_rate"), "linf": linf,
            "images_per_s": entry.images_per_s}


# ---------------------------------------------------------------------------------------------------------------
# corruptions

SUMMARY_COLUMNS = ("mean_accuracy", "mean_balanced_error")
BASELINE_COLUMNS = ("ce", "relative_ce", "be", "rbe")


def corruption_view(report: CorruptionReport) -> dict:
    """The accuracy table (columns: exactly the severities, then the summaries), balanced accuracy and AUROC
    per severity, the means, the corruptions' parameters."""
    severities = [str(s) for s in report.severities]
    extra = [*SUMMARY_COLUMNS, *(BASELINE_COLUMNS if report.baseline else ("relative_error",))]
    rows = [{"name": name, "cells": [cell(per[s], "accuracy") for s in severities],
             "balanced": [per[s].get("balanced_accuracy") for s in severities],
             "auroc": [per[s].get("auroc") for s in severities],
             "ece": [per[s].get("ece") for s in severities],
             "extra": [getattr(report.summary[name], k) for k in extra]}
            for name, per in report.results.items()]
    means = {catalogue.label(k): getattr(report, k) for k in CorruptionReport.MEANS if getattr(report, k) is not None}
    corruptions = [{"name": name, "scaling": d.get("scaling"), "source": d.get("source"), "note": d.get("note"),
                    "parameters": ", ".join(f"{s}: {p}" for s, p in (d.get("parameters") or {}).items())}
                   for name, d in (report.settings.get("corruptions") or {}).items()]
    return {
        "set": report.set, "n_points": report.n_points, "image_size": report.image_size, "seed": report.seed,
        "reference_size": report.settings.get("reference_size"), "severities": severities,
        "clean": {k: cell(report.clean, k) for k in ("accuracy", "balanced_accuracy", "auroc", "ece")},
        "bootstrap": bootstrap_line(report.bootstrap).replace(" over the points", ""),
        "rows": rows, "extra": extra, "extra_names": [catalogue.label(k) for k in extra],
        "means": means, "worst": report.worst_corruption, "baseline": report.baseline,
        "corruptions": corruptions, "definitions": CORRUPTION_DEFINITIONS, "figures": list(report.figures),
        "settings": json.dumps(report.settings, default=str),
    }


# ---------------------------------------------------------------------------------------------------------------
# explanations

def explanation_view(report: ExplanationReport) -> dict:
    flagged = set((report.uninformative or {}).get("metrics") or [])
    rows = []
    for key, value in report.metrics.items():
        entry = catalogue.metric(key)
        rows.append({"key": key, "name": key + (" †" if key in flagged else ""),
                     "mean": value.mean if math.isfinite(value.mean) else None,
                     "std": value.std if math.isfinite(value.std) else None, "n": value.n, "ci": value.mean_ci95,
                     "better": catalogue.better(key), "reading": "" if entry is None else entry.reading,
                     "citation": "" if entry is None else entry.citation})
    sanity = report.sanity
    return {
        "explainer": report.explainer.get("name", "?"), "target": report.explainer.get("target", "predicted"),
        "model": report.model, "n_samples": report.n_samples, "attack": attack_label(report.attack),
        "rows": rows,
        "flags": [f"{report.uninformative['reason']}. The metrics marked † describe the model's bias, not its "
                  "explanations."] if flagged else [],
        "variants": variant_lines(report.variants),
        "chance_note": "mask_area_fraction" in report.metrics,
        "sanity": None if not sanity else {
            "passed": sanity["passed"], "max_spearman": sanity["max_spearman"],
            "final_spearman": sanity["final_spearman"], "n": sanity["n"],
            "stages": [{"stage": s["stage"], "ssim": s["ssim"], "spearman": s["spearman"]} for s in sanity["stages"]]},
        "se": report.se_attention, "figures": list(report.figures),
        "settings": json.dumps(report.explainer, default=str), "tcav": None,
    }


def attack_label(attack: Mapping | None) -> str | None:
    """``pgd10, ε = 2/255, 10 steps`` from an attack's settings."""
    if not attack:
        return None
    eps = attack.get("eps")
    parts = [str(attack.get("attack") or attack.get("name") or "attack")]
    if isinstance(eps, (int, float)):
        parts.append(f"ε = {eps_label(eps)}")
    if attack.get("steps"):
        parts.append(f"{attack['steps']} steps")
    return ", ".join(parts)


def variant_lines(variants: Mapping) -> list[str]:
    """One line per metric family naming the variant used (docs/explanations.md defines them)."""
    lines = []
    for name, p in (variants.get("deletion_insertion") or {}).items():
        steps = "one image row per step" if p["steps"] is None else f"{p['steps']} steps"
        words = {"mean": "the mean colour (normalised zero)", "black": "black",
                 "blur": f"a {p['blur']} blur ({p['kernel']} px, sigma {p['sigma']})"}
        lines.append(f"deletion/insertion `{name}`: deletion to {words[p['deletion']]}, insertion from "
                     f"{words[p['insertion']]}, {steps}, trapezoid AUC over the normalised step axis")
    if "confidence_space" in variants:
        lines.append(f"average drop / increase in confidence: image ⊙ map in the {variants['confidence_space']} "
                     "input space")
    if "pointing_game" in variants:
        v = variants["pointing_game"]
        rows, cols = v["tolerance_px"]
        rates = ", ".join(f"{k} {r:.2f} (n={v['counts'][k]})" for k, r in (v.get("per_category") or {}).items())
        lines.append(f"pointing game: {v['tolerance']:g} px at {v['at']} ({rows:.2f} × {cols:.2f} px at the "
                     f"input on average); the reported number is the {v.get('aggregate', 'mean over samples')}"
                     + (f" ({rates}); pointing_game_per_sample is the mean over samples" if rates else ""))
    if "manipulation" in variants:
        v = variants["manipulation"]
        u, t = v["untargeted"], v["targeted"]
        lines.append(f"map manipulation on the first {v['points']} explained points at ε = {eps_label(u['eps'])}, "
                     f"{u['steps']} signed steps of {eps_label(u['alpha'])} through the {u['explainer']} map: "
                     f"untargeted (Ghorbani et al. 2019) out of the clean map's top {u['topk_pixels']} pixels, "
                     f"{u['acceptance']}; targeted (Dombrowski et al. 2019) towards {t['target']}, "
                     f"loss ‖h(x') − h_t‖² + γ‖g(x') − g(x)‖², γ = {t['gamma']:g}")
    return lines


def tcav_view(report: TcavReport) -> dict:
    variant = report.variant
    classifier = {"hinge": "linear SVM (hinge-loss SGD, alpha 0.01, as captum and tensorflow-tcav)",
                  "logistic": "L2-regularised logistic regression (exact)"}.get(variant.get("cav_classifier"),
                                                                                   "logistic regression")
    space = "raw activations" if variant.get("cav_fit") == "raw" else "standardised activations (trixai 0.1 variant)"
    fit = f"{classifier} on {space}"
    test = "Student" if variant.get("t_test") == "student" else "Welch (trixai 0.1 variant)"
    columns = [k for k, v in report.results[0].items() if isinstance(v, (str, int, float, bool)) or v is None] \
        if report.results else []
    return {
        "explainer": "tcav", "model": report.model, "n_samples": None, "attack": None, "rows": [], "flags": [],
        "variants": [], "chance_note": False, "sanity": None, "se": None, "figures": [],
        "settings": json.dumps(report.explainer, default=str),
        "tcav": {"concept": report.concept, "layer": report.layer, "n_concept": report.n_concept,
                 "bonferroni": variant.get("bonferroni_hypotheses"),
                 "n_runs": report.n_runs, "n_random_sets": report.n_random_sets, "fit": fit, "test": test,
                 "columns": columns, "rows": [[row.get(c) for c in columns] for row in report.results],
                 "results": report.results},
    }


def any_explanation_view(report: ExplanationReport | TcavReport) -> dict:
    return tcav_view(report) if isinstance(report, TcavReport) else explanation_view(report)


# ---------------------------------------------------------------------------------------------------------------
# test metrics of a training run (metrics.json)

def test_view(metrics: Mapping | None, class_names: list[str]) -> dict | None:
    """The test table (clean and under the evaluation attack) of a run's metrics.json."""
    test = (metrics or {}).get("test") or {}
    names = [k for k in test if not k.startswith("rob_") and not k.endswith("_ci95")
             and is_number(test[k])]
    if not names:
        return None
    attack = (metrics or {}).get("eval_attack") or {}
    attacked = any(k.startswith("rob_") for k in test)
    rows = [{"key": k, "name": catalogue.label(k), "clean": cell(test, k), "attacked": cell(test, f"rob_{k}")}
            for k in catalogue.order(names)]
    return {"rows": rows, "attacked": attacked, "attack_header": eval_attack_label(attack),
            "monitor": metrics.get("monitor"), "best_score": metrics.get("best_score"), "epochs": metrics.get("epochs"),
            "class_counts": metrics.get("class_counts") or {}, "class_names": list(class_names)}


def eval_attack_label(attack: Mapping | None) -> str:
    """``pgd10, ε = 2/255`` of metrics.json's ``eval_attack`` (``{"name", "eps", "settings"}``)."""
    if not attack or attack.get("eps") is None:
        return "attacked"
    return f"{attack.get('name', 'attack')}, ε = {eps_label(attack['eps'])}"


# ---------------------------------------------------------------------------------------------------------------
# certification

def certification_view(report: CertificationReport) -> dict:
    """Certified accuracy at the chosen radii (with their L-inf equivalents), the summary, the settings."""
    return {
        "sigma": report.sigma, "n0": report.n0, "n": report.n, "alpha": report.alpha, "n_points": report.n_points,
        "dimension": report.dimension,
        "rows": [{"radius": r["radius"], "linf": r["linf_equivalent_255"],
                  "cell": {"value": r["certified_accuracy"], "ci": r.get("certified_accuracy_ci95")}}
                 for r in report.at_radii],
        "certified": cell(report.certified_accuracy, "accuracy"),
        "smoothed": None if report.smoothed_accuracy is None else cell(report.smoothed_accuracy, "accuracy"),
        "smoothed_abstain": None if report.smoothed_accuracy is None else report.smoothed_accuracy.get("abstain_rate"),
        "base_accuracy": report.base_accuracy, "abstain_rate": report.abstain_rate, "mean_radius": report.mean_radius,
        "seconds_per_image": report.seconds_per_image, "figures": list(report.figures),
    }


def execution_line(execution: dict | None) -> str | None:
    """How the suites ran, in words: the workers, the merged wall time and the sum of the workers' times."""
    if not execution:
        return None
    workers = int(execution.get("workers", 1))
    return (f"{workers} worker{'s' if workers != 1 else ''} (blocks of {execution.get('block_size')} points), "
            f"wall {num(execution.get('wall_seconds'), 1)} s, sum of worker times "
            f"{num(execution.get('sum_of_shard_seconds'), 1)} s; images/s below are per worker")
