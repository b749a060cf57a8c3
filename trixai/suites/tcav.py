"""TCAV over a dataset sample: concept and random sets from the config, one result per class, reports."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json, atomic_write_text, json_safe
from trixai.xai.concepts import EMBEDDED_CONCEPTS, folder_images, random_subsets, ruler_sets
from trixai.xai.explainers import TCAV
from trixai.xai.tcav import tcav


def _match_channels(images: Tensor, in_chans: int) -> Tensor:
    if images.shape[1] == in_chans:
        return images
    if in_chans == 1 and images.shape[1] == 3:
        return (0.299 * images[:, :1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3])
    raise TrixaiError(f"concept images have {images.shape[1]} channels; the model takes {in_chans}")


def concept_and_random_sets(cfg: Mapping, samples_images: Tensor, *, size: int, in_chans: int
                            ) -> tuple[str, Tensor, list[Tensor]]:
    """(concept name, concept images, random sets) as configured; all (N, in_chans, size, size)."""
    n, seed = int(cfg.get("n_concept", 40)), int(cfg.get("seed", 0))
    n_sets = 3 * int(cfg.get("n_runs", 10))  # per run: one counter-set, two for a random-vs-random CAV
    concept = str(cfg.get("concept", "ruler"))
    random_dir = cfg.get("random_dir")
    if concept in EMBEDDED_CONCEPTS:
        images, randoms = ruler_sets(n, size, n_random=n_sets, seed=seed)
    else:
        images, randoms = folder_images(concept, size=size, in_chans=in_chans, limit=n), []
        concept = Path(concept).name
    if random_dir is not None:
        folders = sorted(p for p in Path(random_dir).expanduser().iterdir() if p.is_dir())
        if len(folders) < 6:
            raise TrixaiError(f"explainer.random_dir={random_dir}: needs >= 6 subfolders (one per random set, 3 per "
                              f"TCAV run), found {len(folders)}")
        randoms = [folder_images(p, size=size, in_chans=in_chans, limit=n) for p in folders[:n_sets]]
    elif not randoms:
        randoms = random_subsets(samples_images, n, n_sets, seed=seed)
    return concept, _match_channels(images, in_chans), [_match_channels(r, in_chans) for r in randoms]


def _classes(spec, class_names: tuple[str, ...]) -> list[int]:
    if spec is None:
        return list(range(len(class_names)))
    out = []
    for item in [spec] if isinstance(spec, (str, int)) else list(spec):
        if isinstance(item, int) and 0 <= item < len(class_names):
            out.append(item)
        elif item in class_names:
            out.append(class_names.index(item))
        else:
            raise TrixaiError(f"explainer.classes: {item!r} is not a class of the model {list(class_names)}")
    return out


def tcav_suite(model: nn.Module, samples, settings: TCAV, out_dir: Path, *, class_names: tuple[str, ...],
               prefix: str = "xai/") -> dict[str, float]:
    """TCAV of the configured concept for each class with >= 2 images among ``samples``; writes
    explanations.json / explanations.md and returns ``{prefix}tcav/<class>`` (mean score) and p-values."""
    cfg = settings.settings()
    device = samples.images.device
    size, in_chans = samples.images.shape[-1], samples.images.shape[1]
    concept, concept_images, randoms = concept_and_random_sets(cfg, samples.images, size=size, in_chans=in_chans)
    layer = str(cfg.get("layer", "high"))
    labels = samples.labels
    rows = []
    for index in _classes(cfg.get("classes"), class_names):
        members = (labels[:, index] > 0.5) if labels.is_floating_point() else labels == index
        if int(members.sum()) < 2:
            continue
        result = tcav(model, samples.images[members], index, concept_images.to(device),
                      [r.to(device) for r in randoms], layer, concept=concept, alpha=float(cfg.get("alpha", 0.05)),
                      cav_fit=str(cfg.get("cav_fit", "raw")), test=str(cfg.get("t_test", "student")),
                      batch_size=int(cfg.get("batch_size", 32)))
        rows.append(result.as_dict())
    if not rows:
        raise TrixaiError("TCAV found no class with >= 2 images in the sample: raise explainer.max_samples")
    report = {"explainer": cfg,
              "model": getattr(model, "name", type(model).__name__), "concept": concept, "layer": layer,
              "n_concept": len(concept_images), "n_random_sets": len(randoms), "n_runs": rows[0]["n_runs"],
              "variant": {"cav_fit": rows[0]["cav_fit"], "t_test": rows[0]["t_test"]}, "results": rows}
    atomic_write_json(out_dir / "explanations.json", json_safe(report))
    atomic_write_text(out_dir / "explanations.md", tcav_markdown(report))
    flat = {}
    for row in rows:
        flat[f"{prefix}tcav/{row['class_name']}"] = row["score_mean"]
        flat[f"{prefix}tcav_p/{row['class_name']}"] = row["p_value"]
    return flat


def tcav_markdown(report: dict) -> str:
    variant = report["variant"]
    fit = "raw activations" if variant["cav_fit"] == "raw" else "standardised activations (trixai 0.1 variant)"
    test = "Student" if variant["t_test"] == "student" else "Welch (trixai 0.1 variant)"
    lines = [f"# TCAV: concept {report['concept']!r} at {report['layer']} of {report['model']}", "",
             f"{report['n_concept']} concept images; {report['n_runs']} runs, each with its own random set, and "
             f"{report['n_runs']} random-vs-random CAVs from further random sets ({report['n_random_sets']} "
             f"independent random sets). CAV: logistic regression on {fit}. Score = fraction of the class's "
             f"images with a positive directional derivative; p: two-sided {test} t-test of the concept's scores "
             "against the random-vs-random scores (Kim et al. 2018).", "",
             "| class | TCAV score (mean ± std) | random CAVs (mean ± std) | p | significant | CAV accuracy | runs | n |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        p = f"{r['p_value']:.2g}" if math.isfinite(r["p_value"]) else "nan"
        lines.append(f"| {r['class_name']} | {r['score_mean']:.3f} ± {r['score_std']:.3f} | "
                     f"{r['random_score_mean']:.3f} ± {r['random_score_std']:.3f} | {p} | "
                     f"{'yes' if r['significant'] else 'no'} | {r['cav_accuracy_mean']:.3f} | {r['n_runs']} | "
                     f"{r['n_inputs']} |")
    return "\n".join(lines) + "\n"
