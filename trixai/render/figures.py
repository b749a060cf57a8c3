"""Figures drawn from typed reports: accuracy vs eps (robustness) and accuracy vs severity (corruptions)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from trixai.core.reports import CertificationReport, CorruptionReport, RobustnessReport  # noqa: E402

ROBUST_CURVE = "figures/robust_accuracy_vs_eps.png"
CALIBRATION = "figures/calibration.png"
CERTIFIED_CURVE = "figures/certified_accuracy_vs_radius.png"
CORRUPTION_CURVE = "figures/corruption_accuracy_vs_severity.png"


def _save(fig: plt.Figure, path: Path, dpi: int = 120) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_accuracy_vs_eps(report: RobustnessReport, path: Path) -> Path:
    """Accuracy vs eps per attack, worst case bold, clean accuracy dashed."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for name, per_eps in report.results.items():
        points = [(e * 255, per_eps[label].get("accuracy")) for e, label in zip(report.eps, report.eps_labels)
                  if label in per_eps]
        ax.plot(*zip(*points), marker="o", label=name)
    worst = [report.worst_case[label].get("accuracy") for label in report.eps_labels if label in report.worst_case]
    if len(worst) == len(report.eps):
        ax.plot([e * 255 for e in report.eps], worst, color="black", linewidth=2.5, marker="s", label="worst case")
    ax.axhline(report.clean.get("accuracy"), color="grey", linestyle="--", label="clean")
    ax.set_xlabel("eps (x/255, L-inf, [0, 1] pixels)")
    ax.set_ylabel("accuracy" if report.task == "multiclass" else "exact-match accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Robust accuracy vs eps ({report.n_points} points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_accuracy_vs_severity(report: CorruptionReport, path: Path) -> Path:
    """Each corruption's accuracy at every severity, from the clean accuracy at severity 0."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("tab20")
    clean = report.clean.get("accuracy")
    for i, (name, per) in enumerate(report.results.items()):
        ax.plot([0, *report.severities], [clean, *[per[str(s)].get("accuracy") for s in report.severities]],
                marker="o", ms=3, color=cmap(i % 20), label=name)
    ax.axhline(clean, color="black", lw=0.8, ls="--")
    ax.set_xticks([0, *report.severities], ["clean", *map(str, report.severities)])
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy under corruption ({report.set}, n={report.n_points})")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    return _save(fig, path)


def plot_calibration(report: RobustnessReport, path: Path) -> Path:
    """Reliability diagrams (accuracy vs mean confidence per bin) and risk-coverage curves, clean and for every
    attack at the largest eps (and the worst case there)."""
    label = report.eps_labels[-1] if report.eps else None
    entries = [("clean", report.clean)] + [(name, per[label]) for name, per in report.results.items() if label in per]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    left.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for name, entry in entries:
        curves = entry.scores.curves
        if not curves:
            continue
        bins = curves["reliability"]
        shown = [(c, a) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"]) if n]
        ece = entry.get("ece")
        legend = f"{name} (ECE {ece:.3f})" if ece is not None else name
        left.plot(*zip(*shown), marker="o", ms=3, label=legend)
        rc = curves["risk_coverage"]
        aurc = entry.get("aurc")
        right.plot(rc["coverage"], rc["risk"], label=f"{name} (AURC {aurc:.3f})" if aurc is not None else name)
    left.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
             title=f"Reliability{f' at eps = {label}' if label else ''} (15 bins)")
    right.set(xlabel="coverage", ylabel="selective risk (error)", xlim=(0, 1), ylim=(0, 1), title="Risk-coverage")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_certified_accuracy(report: CertificationReport, path: Path) -> Path:
    """Certified accuracy against the L2 radius (and its L-inf equivalent on a second axis)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(report.curve["radius"], report.curve["certified_accuracy"], color="black")
    ax.set_xlabel("L2 radius ([0, 1] pixels)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Randomized smoothing, sigma = {report.sigma:g} ({report.n_points} points, n = {report.n})")
    scale = 255 / report.dimension ** 0.5
    top = ax.secondary_xaxis("top", functions=(lambda r: r * scale, lambda e: e / scale))
    top.set_xlabel("L-inf equivalent r/sqrt(d) (x/255)")
    ax.grid(alpha=0.3)
    return _save(fig, path)
