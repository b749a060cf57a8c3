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
        "worst case = per point, the first attack (in the order listed) that fools it, else the lowest margin.",
        "AutoAttack with fewer than 4 classes: the targeted DLR loss is undefined, APGD-T uses the targeted "
        "cross-entropy loss and APGD-T/FAB-T use C - 1 targets.",
    ],
    "multilabel": [
        "a point is fooled when any label's thresholded prediction (logit > 0) changes away from its target "
        "('flip any label'); accuracy = exact match (every label right) on the adversarial examples.",
        "FGSM/PGD/APGD-CE maximise BCE summed over labels; APGD-T and FAB-T target one label at a time (the 9 "
        "labels with the smallest signed margin (2y - 1) * logit), Square minimises min over labels of that margin.",
        "macro AUROC/AUPRC and per-label accuracy are computed on the adversarial examples' scores.",
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
              f"batches reused from partial results: {evaluation['resumed_batches']}", "",
              "## Accuracy per attack and eps", "", "| attack | " + " | ".join(labels) + " |",
              "|---|" + "---|" * len(labels)]
    clean = evaluation["clean"]["accuracy"]
    lines.append("| clean | " + " | ".join(_fmt(clean) for _ in labels) + " |")
    for name, per_eps in evaluation["results"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(per_eps.get(lb, {}).get("accuracy")) for lb in labels) + " |")
    lines.append("| **worst case** | " + " | ".join(
        f"**{_fmt(evaluation['worst_case'].get(lb, {}).get('accuracy'))}**" for lb in labels) + " |")
    lines += ["", "## Details per attack and eps", ""]
    extra = ("top-2", "bal. acc", "macro F1") if multiclass else ("label acc", "macro AUROC", "macro AUPRC")
    keys = ("top2", "balanced_accuracy", "macro_f1") if multiclass else ("label_accuracy_macro", "macro_auroc", "macro_auprc")
    lines += ["| attack | eps | accuracy | " + " | ".join(extra) + " | success rate | mean ‖δ‖∞·255 | max ‖δ‖∞·255 "
              "| ‖δ‖∞ ≤ ε | images/s |", "|---|---|---|" + "---|" * len(extra) + "---|---|---|---|---|"]
    c = evaluation["clean"]
    lines.append("| clean | 0 | " + " | ".join(_fmt(c.get(k)) for k in ("accuracy", *keys))
                 + f" | — | 0 | 0 | yes | {_fmt(c.get('images_per_s'), 1)} |")
    for name, per_eps in [*evaluation["results"].items(), ("worst case", evaluation["worst_case"])]:
        for label, entry in per_eps.items():
            linf = (_fmt(entry["linf_mean"] * 255, 3), _fmt(entry["linf_max"] * 255, 3), _fmt(entry["linf_within_eps"])) \
                if "linf_max" in entry else ("—", "—", "—")
            lines.append(f"| {name} | {label} | " + " | ".join(_fmt(entry.get(k)) for k in ("accuracy", *keys))
                         + f" | {_fmt(entry['attack_success_rate'])} | {' | '.join(linf)} | "
                         f"{_fmt(entry.get('images_per_s'), 1)} |")
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
    lines += ["", "## Gradient-masking checks", "", "| check | result | detail |", "|---|---|---|"]
    for check in evaluation["masking_checks"]:
        lines.append(f"| {check['check']} | {_verdict(check['passed'])} | {check['detail']} |")
    if evaluation.get("masking_probe"):
        lines.append(f"\nLarge-eps probe settings: `{json.dumps(evaluation['masking_probe'])}`")
    lines += ["", "## Attack settings", "", "Every setting of every attack run (eps in [0, 1] pixel units):", ""]
    for name, per_eps in evaluation["settings"].items():
        for label, settings in per_eps.items():
            lines.append(f"- **{name} @ {label}**: `{json.dumps(settings, default=str)}`")
    lines += ["", "## Definitions", ""] + [f"- {line}" for line in DEFINITIONS[evaluation["task"]]]
    if evaluation["early_stop"]:
        lines.append("- early stop: an attack stops working on a point once it is fooled and keeps that adversarial "
                     "example (for PGD: the first fooling iterate, not the last); robust accuracy is never higher "
                     "than without it, but top-2/F1/AUROC under attack are measured on those first fooling examples.")
    return "\n".join(lines) + "\n"


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
