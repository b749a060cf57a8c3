"""Writers for a corruption evaluation: ``corruptions.json``, ``corruptions.md``, the accuracy-vs-severity figure
and the gallery of one image under every corruption (layout in docs/robustness.md)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from trixai.core.files import atomic_write_json, atomic_write_text, json_safe

CURVE = Path("figures") / "corruption_accuracy_vs_severity.png"
GALLERY = Path("figures") / "corruption_gallery.png"


def _fmt(value, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cell(entry: dict, key: str = "accuracy") -> str:
    ci = entry.get(f"{key}_ci95")
    return _fmt(entry.get(key)) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown(evaluation: dict) -> str:
    severities = [str(s) for s in evaluation["severities"]]
    baseline = evaluation.get("baseline")
    clean = evaluation["clean"]
    lines = [
        f"# Corruptions: {evaluation['set']} set", "",
        f"- points: {evaluation['n_points']}, image size {evaluation['image_size'][0]}×{evaluation['image_size'][1]} "
        f"(pixel parameters scaled from {evaluation['settings']['reference_size']} px), seed {evaluation['seed']}",
        f"- clean: accuracy {_cell(clean)}, balanced accuracy {_cell(clean, 'balanced_accuracy')}, "
        f"macro AUROC {_cell(clean, 'auroc')}",
        "- 95 % confidence intervals in brackets: " + (
            "none (bootstrap: 0)" if not evaluation.get("bootstrap") else
            f"percentile bootstrap, {evaluation['bootstrap']['resamples']} resamples stratified by "
            f"{evaluation['bootstrap']['strata']}"),
        f"- mean accuracy over corruptions and severities {_fmt(evaluation['mean_accuracy'])}; worst corruption "
        f"{evaluation['worst_corruption']['name']} (mean {_fmt(evaluation['worst_corruption']['mean_accuracy'])})",
        (f"- baseline {baseline['path']}: mCE {_fmt(evaluation['mce'])}, relative mCE "
         f"{_fmt(evaluation['relative_mce'])}, BE {_fmt(evaluation['be'])}, rBE {_fmt(evaluation['rbe'])}"
         if baseline else "- no baseline model: CE/mCE/BE/rBE need `corruptions.baseline=<its corruptions.json>`"),
        "", "## Accuracy per corruption and severity", "",
        "| corruption | " + " | ".join(f"s{s}" for s in severities) + " | mean | balanced error | "
        + ("CE | rel. CE | BE | rBE |" if baseline else "rel. error |"),
        "|---|" + "---:|" * (len(severities) + 3 + (3 if baseline else 0)),
    ]
    for name, per in evaluation["results"].items():
        row = evaluation["summary"][name]
        extra = ([_fmt(row.get(k)) for k in ("ce", "relative_ce", "be", "rbe")] if baseline else
                 [_fmt(row["relative_error"])])
        lines.append(f"| {name} | " + " | ".join(_cell(per[s]) for s in severities)
                     + f" | {_fmt(row['mean_accuracy'])} | {_fmt(row.get('mean_balanced_error'))} | "
                     + " | ".join(extra) + " |")
    lines += ["", "## Balanced accuracy and macro AUROC", "",
              "| corruption | " + " | ".join(f"bal. acc s{s}" for s in severities) + " | "
              + " | ".join(f"AUROC s{s}" for s in severities) + " |",
              "|---|" + "---:|" * (2 * len(severities))]
    for name, per in evaluation["results"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(per[s]["balanced_accuracy"]) for s in severities) + " | "
                     + " | ".join(_fmt(per[s]["auroc"]) for s in severities) + " |")
    lines += ["", "## Definitions", "",
              "- accuracy: top-1 (multi-label: exact match); balanced accuracy: macro recall (multi-label: mean over "
              "labels of (TPR + TNR) / 2 at 0.5, MedMNIST-C); macro AUROC one-vs-rest over defined classes.",
              "- error E = 1 − accuracy; CE_c = Σ_s E_{s,c} / Σ_s E^base_{s,c}; relative CE_c = Σ_s (E_{s,c} − E_clean) /"
              " Σ_s (E^base_{s,c} − E^base_clean) (ImageNet-C, Hendrycks & Dietterich 2019); mCE = mean over c.",
              "- balanced error B = 1 − balanced accuracy; BE_c = mean_s B_{s,c} / mean_s B^base_{s,c}; rBE_c = "
              "(mean_s B_{s,c} − B_clean) / (mean_s B^base_{s,c} − B^base_clean) (MedMNIST-C, Di Salvo et al. 2024).",
              "- rel. error (no baseline): mean_s (E_{s,c} − E_clean).",
              "- — in a relative column: undefined, the baseline's corrupted error does not exceed its clean error "
              "(and then so are relative mCE / rBE).", "", "## Corruptions", ""]
    for name, described in evaluation["settings"]["corruptions"].items():
        params = ", ".join(f"{s}: {p}" for s, p in described["parameters"].items())
        note = f"; {described['note']}" if described.get("note") else ""
        lines.append(f"- {name} ({described['scaling']}): {params} — {described['source']}{note}")
    lines += ["", f"![accuracy vs severity]({CURVE.as_posix()})", "", f"![gallery]({GALLERY.as_posix()})", ""]
    return "\n".join(lines)


def plot_curves(evaluation: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    severities = evaluation["severities"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("tab20")
    for i, (name, per) in enumerate(evaluation["results"].items()):
        ax.plot([0, *severities], [evaluation["clean"]["accuracy"], *[per[str(s)]["accuracy"] for s in severities]],
                marker="o", ms=3, color=cmap(i % 20), label=name)
    ax.axhline(evaluation["clean"]["accuracy"], color="black", lw=0.8, ls="--")
    ax.set_xticks([0, *severities], ["clean", *map(str, severities)])
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Accuracy under corruption ({evaluation['set']}, n={evaluation['n_points']})")
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_gallery(clean: Tensor, corrupted: dict[str, dict[int, Tensor]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(corrupted)
    severities = sorted(next(iter(corrupted.values())))
    fig, axes = plt.subplots(len(names), len(severities) + 1, figsize=(1.6 * (len(severities) + 1), 1.6 * len(names)),
                             squeeze=False)

    def show(ax, image: Tensor, title: str) -> None:
        array = image.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
        ax.imshow(array[..., 0] if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=7)
        ax.axis("off")

    for row, name in enumerate(names):
        show(axes[row, 0], clean, f"{name}: clean" if row == 0 else name)
        for col, s in enumerate(severities, start=1):
            show(axes[row, col], corrupted[name][s], f"severity {s}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_reports(evaluation: dict, out_dir: str | Path, *, gallery=None, wandb_run=None,
                  flat: dict | None = None) -> dict[str, Path]:
    """Write corruptions.json/.md and the figures into ``out_dir``; log them to ``wandb_run`` if given."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "corruptions.json", "markdown": out_dir / "corruptions.md",
             "curve": plot_curves(evaluation, out_dir / CURVE)}
    if gallery is not None:
        paths["gallery"] = plot_gallery(*gallery, out_dir / GALLERY)
    atomic_write_json(paths["json"], json_safe(evaluation))
    atomic_write_text(paths["markdown"], markdown(evaluation))
    if wandb_run is not None:
        import wandb

        wandb_run.log({**(flat or {}), **{f"corruption/{k}": wandb.Image(str(p)) for k, p in paths.items()
                                          if p.suffix == ".png"}})
    return paths
