"""Writers for a robustness evaluation: ``robustness.json``, ``robustness.md``, the accuracy-vs-eps figure, W&B."""

from __future__ import annotations

import json
from pathlib import Path

from trixai.core.files import atomic_write_json, atomic_write_text

FIGURE = Path("figures") / "robust_accuracy_vs_eps.png"

DEFINITIONS = {
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
        "labels with the smallest signed margin (2y - 1) * logit), Square minimises min over labels of that margin.",
        "macro AUROC/AUPRC, macro F1 and per-label accuracy are computed on the adversarial examples' scores (full "
        "budget on every point); the worst case takes per point the attack output with the highest BCE summed over "
        "labels, exact-match accuracy the first output that fools the point.",
        "a label without positives or without negatives among the points has no AUROC/AUPRC: it is left out of the "
        "macro means (listed under 'Undefined AUROC').",
    ],
}


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ci(entry: dict, key: str) -> str:
    """``value [low, high]`` (the bootstrap 95 % interval when the entry has one)."""
    value, interval = entry.get(key), entry.get(f"{key}_ci95")
    if value is None or not interval:
        return _fmt(value)
    return f"{_fmt(value)} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _verdict(passed) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def plot_curve(evaluation: dict, path: Path) -> Path:
    """Accuracy vs eps per attack, worst case bold, clean accuracy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps_255 = [e * 255 for e in evaluation["eps"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, per_eps in evaluation["results"].items():
        points = [(e * 255, per_eps[label]["accuracy"]) for e, label in zip(evaluation["eps"], evaluation["eps_labels"])
                  if label in per_eps]
        ax.plot(*zip(*points), marker="o", label=name)
    worst = [evaluation["worst_case"][label]["accuracy"] for label in evaluation["eps_labels"]
             if label in evaluation["worst_case"]]
    if len(worst) == len(eps_255):
        ax.plot(eps_255, worst, color="black", linewidth=2.5, marker="s", label="worst case")
    ax.axhline(evaluation["clean"]["accuracy"], color="grey", linestyle="--", label="clean")
    ax.set_xlabel("eps (x/255, L-inf, [0, 1] pixels)")
    ax.set_ylabel("accuracy" if evaluation["task"] == "multiclass" else "exact-match accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Robust accuracy vs eps ({evaluation['n_points']} points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def markdown(evaluation: dict) -> str:
    """The human-readable report."""
    multiclass = evaluation["task"] == "multiclass"
    labels = evaluation["eps_labels"]
    source = evaluation.get("source", {})
    lines = ["# Robustness report", ""]
    for key, value in source.items():
        lines.append(f"- {key}: `{value}`")
    lines += [f"- task: {evaluation['task']}, {len(evaluation['class_names'])} outputs, {evaluation['n_points']} points",
              f"- device: {evaluation['device']}; early stop on fooled points: {evaluation['early_stop']}; "
              f"batches reused from partial results: {evaluation['resumed_batches']}",
              f"- 95 % confidence intervals in brackets: {_bootstrap_line(evaluation.get('bootstrap'))}", "",
              "## Accuracy per attack and eps", "", "| attack | " + " | ".join(labels) + " |",
              "|---|" + "---|" * len(labels)]
    lines.append("| clean | " + " | ".join(_ci(evaluation["clean"], "accuracy") for _ in labels) + " |")
    for name, per_eps in evaluation["results"].items():
        lines.append(f"| {name} | " + " | ".join(_ci(per_eps.get(lb, {}), "accuracy") for lb in labels) + " |")
    lines.append("| **worst case** | " + " | ".join(
        f"**{_ci(evaluation['worst_case'].get(lb, {}), 'accuracy')}**" for lb in labels) + " |")
    lines += ["", "## Details per attack and eps", ""]
    extra = ("top-2", "bal. acc", "macro F1", "macro AUROC") if multiclass else \
        ("label acc", "macro F1", "macro AUROC", "macro AUPRC")
    keys = ("top2", "balanced_accuracy", "macro_f1", "macro_auroc") if multiclass else \
        ("label_accuracy_macro", "macro_f1", "macro_auroc", "macro_auprc")
    lines += ["| attack | eps | accuracy | " + " | ".join(extra) + " | success rate | mean ‖δ‖∞·255 | max ‖δ‖∞·255 "
              "| ‖δ‖∞ ≤ ε | images/s |", "|---|---|---|" + "---|" * len(extra) + "---|---|---|---|---|"]
    c = evaluation["clean"]
    lines.append("| clean | 0 | " + " | ".join(_ci(c, k) for k in ("accuracy", *keys))
                 + f" | — | 0 | 0 | yes | {_fmt(c.get('images_per_s'), 1)} |")
    for name, per_eps in [*evaluation["results"].items(), ("worst case", evaluation["worst_case"])]:
        for label, entry in per_eps.items():
            linf = (_fmt(entry["linf_mean"] * 255, 3), _fmt(entry["linf_max"] * 255, 3), _fmt(entry["linf_within_eps"])) \
                if "linf_max" in entry else ("—", "—", "—")
            lines.append(f"| {name} | {label} | " + " | ".join(_ci(entry, k) for k in ("accuracy", *keys))
                         + f" | {_ci(entry, 'attack_success_rate')} | {' | '.join(linf)} | "
                         f"{_fmt(entry.get('images_per_s'), 1)} |")
    lines += _sources(evaluation)
    per_key = "per_class_accuracy" if multiclass else "per_label_accuracy"
    reference = labels[-1]
    attacks = list(evaluation["results"])
    columns = ["clean", *attacks, *(["worst case"] if attacks else [])]
    lines += ["", f"## Per-{'class' if multiclass else 'label'} accuracy" + (f" at eps = {reference}" if attacks else ""),
              "", f"| {'class' if multiclass else 'label'} | " + " | ".join(columns) + " |",
              "|---|" + "---|" * len(columns)]
    for cls in evaluation["class_names"]:
        row = [_fmt(evaluation["clean"][per_key][cls])]
        row += [_fmt(per_eps.get(reference, {}).get(per_key, {}).get(cls)) for per_eps in evaluation["results"].values()]
        if attacks:
            row.append(_fmt(evaluation["worst_case"].get(reference, {}).get(per_key, {}).get(cls)))
        lines.append(f"| {cls} | " + " | ".join(row) + " |")
    lines += _per_output_auroc(evaluation, reference, attacks, columns)
    if attacks:
        lines += ["", "## Which attack broke each point (worst case)", "",
                  "| eps | " + " | ".join(["clean", *attacks]) + " |", "|---|" + "---|" * (len(attacks) + 1)]
        for label, entry in evaluation["worst_case"].items():
            lines.append(f"| {label} | " + " | ".join(str(entry["broken_by"].get(src, 0))
                                                      for src in ["clean", *attacks]) + " |")
    for label, entry in evaluation["results"].get("autoattack", {}).items():
        if "broken_by" in entry:
            parts = ", ".join(f"{k}: {v}" for k, v in entry["broken_by"].items())
            lines.append(f"\nAutoAttack at {label}, points broken per component (each runs on the points still robust): {parts}.")
    lines += ["", "## Gradient-masking checks", "",
              "Checks of Athalye et al. (2018) and AutoAttack's own (Croce & Hein 2020, `autoattack/checks.py`); a FAIL "
              "means the robust accuracies above may overstate robustness (docs/robustness.md).", "",
              "| check | result | detail |", "|---|---|---|"]
    for check in evaluation["masking_checks"]:
        detail = str(check["detail"]).replace("|", "\\|")
        lines.append(f"| {check['check']} | {_verdict(check['passed'])} | {detail} |")
    if evaluation.get("masking_probe"):
        lines.append(f"\nLarge-eps probe settings: `{json.dumps(evaluation['masking_probe'])}`")
    lines += ["", "## Attack settings", "", "Every setting of every attack run (eps in [0, 1] pixel units):", ""]
    for name, per_eps in evaluation["settings"].items():
        for label, settings in per_eps.items():
            lines.append(f"- **{name} @ {label}**: `{json.dumps(settings, default=str)}`")
    lines += ["", "## Definitions", ""] + [f"- {line}" for line in DEFINITIONS[evaluation["task"]]]
    if evaluation["early_stop"]:
        lines.append("- early stop: accuracy and the attack success rate of FGSM/PGD come from an extra run that keeps "
                     "a point's first fooling iterate (exact for accuracy); every other metric comes from the "
                     "full-budget run on every point.")
    return "\n".join(lines) + "\n"


def _bootstrap_line(settings: dict | None) -> str:
    if not settings:
        return "none (bootstrap: 0)"
    return (f"percentile bootstrap over the points, {settings['resamples']} resamples stratified by "
            f"{settings['strata']}, seed {settings['seed']}")


def _sources(evaluation: dict) -> list[str]:
    """Which attack run produced each metric."""
    entries = [(name, label, entry) for name, per_eps in [*evaluation["results"].items(),
                                                          ("worst case", evaluation["worst_case"])]
               for label, entry in per_eps.items() if "metric_runs" in entry]
    if not entries:
        return []
    lines = ["", "## Which attack run produced each metric", "", "| attack | eps | metrics | run |", "|---|---|---|---|"]
    for name, label, entry in entries:
        lines += [f"| {name} | {label} | {metrics} | {run} |" for metrics, run in entry["metric_runs"].items()]
    return lines


def _per_output_auroc(evaluation: dict, reference: str, attacks: list[str], columns: list[str]) -> list[str]:
    """Per-class/label AUROC at the reference eps, and the outputs whose AUROC is undefined."""
    multiclass = evaluation["task"] == "multiclass"
    key = "per_class_auroc" if multiclass else "per_label_auroc"
    if key not in evaluation["clean"]:
        return []
    kind = "class" if multiclass else "label"
    lines = ["", f"## Per-{kind} AUROC" + (f" at eps = {reference}" if attacks else ""), "",
             f"| {kind} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    sources = [evaluation["clean"], *(per_eps.get(reference, {}) for per_eps in evaluation["results"].values())]
    if attacks:
        sources.append(evaluation["worst_case"].get(reference, {}))
    for cls in evaluation["class_names"]:
        lines.append(f"| {cls} | " + " | ".join(_fmt(entry.get(key, {}).get(cls)) for entry in sources) + " |")
    undefined = evaluation["clean"].get("auroc_undefined") or []
    if undefined:
        lines += ["", f"Undefined AUROC (no positives or no negatives among the points; left out of every macro mean): "
                      f"{', '.join(undefined)}."]
    return lines


def write_reports(evaluation: dict, out_dir: str | Path, *, wandb_run=None, flat: dict | None = None) -> dict[str, Path]:
    """Write the JSON, Markdown and figure into ``out_dir``; log scalars, figure and table to ``wandb_run``."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "robustness.json", "md": out_dir / "robustness.md", "figure": out_dir / FIGURE}
    atomic_write_json(paths["json"], evaluation)
    atomic_write_text(paths["md"], markdown(evaluation))
    plot_curve(evaluation, paths["figure"])
    if wandb_run is not None:
        import wandb

        rows = [[name, label, entry["accuracy"]] for name, per_eps in
                [*evaluation["results"].items(), ("worst", evaluation["worst_case"])] for label, entry in per_eps.items()]
        wandb_run.log({**(flat or {}), "robustness/accuracy_vs_eps": wandb.Image(str(paths["figure"])),
                       "robustness/table": wandb.Table(columns=["attack", "eps", "accuracy"], data=rows)})
        for key in ("json", "md"):
            wandb_run.save(str(paths[key]), base_path=str(out_dir), policy="now")
    return paths
