"""The explanation suite: run an explainer over a loader, score it, write reports and figures.

Used by ``trixai-explain`` and by the test phase of ``trixai-train``: :func:`explanation_suite` writes
``explanations.json``, ``explanations.md`` and ``figures/xai_*.png`` into ``out_dir`` and returns flat
``xai/...`` metrics (means) for the result table.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.bootstrap import Bootstrap
from trixai.core.errors import TrixaiError
from trixai.core.files import atomic_write_json, atomic_write_text, json_safe
from trixai.core.frozen import frozen_eval
from trixai.xai import figures
from trixai.xai.explainers import TCAV, Explanation, MapExplainer
from trixai.xai.metrics.degeneracy import degeneracy
from trixai.xai.metrics.faithfulness import confidence_change, deletion_insertion, protocol
from trixai.xai.metrics.localization import (
    POINTING_REFERENCE_SIZE,
    POINTING_TOLERANCE,
    area_fraction,
    energy_pointing_game,
    pointing_game,
    scaled_tolerance,
    topk_iou,
)
from trixai.xai.metrics.sanity import parameter_randomisation
from trixai.xai.metrics.stability import spearman, ssim
from trixai.xai.se_attention import gate_statistics

log = logging.getLogger(__name__)


@dataclass
class Samples:
    """Up to ``max_samples`` images from a loader, on one device."""

    images: Tensor
    labels: Tensor
    masks: Tensor | None
    has_mask: Tensor
    names: list[str]


class SampleCollector:
    """Keeps the first ``max_samples`` samples of the batches it is given (``image``, ``target``, optional
    ``mask``/``has_mask``/``name``), on the CPU, as the suites pass over a loader."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = int(max_samples)
        self.parts: dict[str, list] = {"image": [], "target": [], "mask": [], "has_mask": [], "name": []}
        self.count = 0

    @property
    def done(self) -> bool:
        return self.count >= self.max_samples

    def add(self, batch: Mapping) -> None:
        take = min(len(batch["image"]), self.max_samples - self.count)
        if take <= 0:
            return
        self.parts["image"].append(batch["image"][:take].cpu())
        self.parts["target"].append(torch.as_tensor(batch["target"])[:take].cpu())
        if "mask" in batch:
            self.parts["mask"].append(batch["mask"][:take].cpu())
            flags = batch.get("has_mask", torch.ones(take, dtype=torch.bool))
            self.parts["has_mask"].append(torch.as_tensor(flags, dtype=torch.bool)[:take].cpu())
        self.parts["name"].extend(list(batch.get("name", [str(self.count + i) for i in range(take)]))[:take])
        self.count += take

    def samples(self, device: torch.device) -> Samples:
        if not self.count:
            raise TrixaiError("the explanation loader yielded no samples")
        parts = self.parts
        masks = torch.cat(parts["mask"]).to(device) if len(parts["mask"]) == len(parts["image"]) else None
        flags = (torch.cat(parts["has_mask"]).to(device) if masks is not None
                 else torch.zeros(self.count, dtype=torch.bool, device=device))
        return Samples(torch.cat(parts["image"]).to(device), torch.cat(parts["target"]).to(device), masks, flags,
                       parts["name"])


def resolve_target(spec, class_names: tuple[str, ...]) -> str | int:
    """``predicted`` | ``label`` | a class index | a class name -> ``predicted``, ``label`` or an index."""
    if spec in (None, "predicted", "label"):
        return spec or "predicted"
    if isinstance(spec, int) and 0 <= spec < len(class_names):
        return spec
    if isinstance(spec, str) and spec in class_names:
        return class_names.index(spec)
    raise TrixaiError(f"explanation.target={spec!r}: allowed are predicted, label, 0..{len(class_names) - 1} "
                      f"or a class name {list(class_names)}")


def batch_targets(mode: str | int, logits: Tensor, labels: Tensor) -> Tensor:
    """Class explained per sample: arg-max logit, the label (multi-label: its highest-scoring positive
    label, the arg-max where none is positive), or one fixed class."""
    if mode == "predicted":
        return logits.argmax(dim=1)
    if isinstance(mode, int):
        return torch.full((len(logits),), mode, dtype=torch.long, device=logits.device)
    if not labels.is_floating_point():
        return labels.long()
    scored = torch.where(labels > 0.5, logits, torch.full_like(logits, -math.inf))
    return torch.where(labels.amax(dim=1) > 0.5, scored.argmax(dim=1), logits.argmax(dim=1))


def summary(values: Tensor) -> dict[str, float | int | list[float] | None]:
    """Mean, std (population) and n over the finite values, and ``mean_ci95``: the percentile-bootstrap 95 %
    interval of the mean over the samples (1,000 resamples, seed 0, not stratified)."""
    values = values.detach().double().flatten().cpu()
    values = values[torch.isfinite(values)]
    n = int(values.numel())
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0, "mean_ci95": None}
    boot = Bootstrap.draw(torch.zeros(n, dtype=torch.long))
    interval = boot.intervals(lambda w: {"mean": w.double() @ values / w.sum(1)})["mean_ci95"]
    return {"mean": float(values.mean()), "std": float(values.std(unbiased=False)), "n": n, "mean_ci95": interval}


def target_masks(samples: Samples, targets: Tensor) -> tuple[Tensor, Tensor] | None:
    """Ground-truth mask of each sample's explained class (K = 1: the lesion mask; K = L: that label's
    mask) and which samples have a non-empty one; None without masks."""
    if samples.masks is None:
        return None
    masks = samples.masks.bool()
    if masks.shape[1] == 1:
        chosen = masks[:, 0]
    else:
        chosen = masks[torch.arange(len(targets), device=targets.device), targets]
    valid = samples.has_mask & chosen.flatten(1).any(dim=1)
    return chosen, valid


def _explain_all(model: nn.Module, explainer: MapExplainer, x: Tensor, labels: Tensor, mode: str | int, cfg: Mapping,
                 targets: Tensor | None = None) -> Explanation:
    size = int(cfg.get("batch_size", 16))
    parts = []
    for start in range(0, len(x), size):
        xb = x[start:start + size]
        if targets is not None:
            tb = targets[start:start + size]
        elif mode == "predicted":
            tb = None
        else:
            with torch.no_grad():
                tb = batch_targets(mode, model(xb), labels[start:start + size])
        parts.append(explainer(model, xb, tb))
    extras = {}
    if "gates" in parts[0].extras:
        extras["gates"] = {k: torch.cat([p.extras["gates"][k] for p in parts]) for k in parts[0].extras["gates"]}
    return Explanation(torch.cat([p.maps for p in parts]), torch.cat([p.logits for p in parts]),
                       torch.cat([p.targets for p in parts]), extras)


def _gallery_indices(labels: Tensor, targets: Tensor, per_class: int) -> list[int]:
    keys = labels if not labels.is_floating_point() else targets
    chosen: dict[int, list[int]] = {}
    for index, key in enumerate(keys.tolist()):
        bucket = chosen.setdefault(int(key), [])
        if len(bucket) < per_class:
            bucket.append(index)
    return sorted(i for bucket in chosen.values() for i in bucket)


def _numbered_classes(model: nn.Module, x: Tensor) -> list[str]:
    with frozen_eval(model), torch.no_grad():
        return [str(i) for i in range(model(x).shape[1])]


def explanation_suite(model: nn.Module, samples: Samples, *, explainer: MapExplainer | TCAV, settings: Mapping,
                      out_dir: str | Path, adversarial: Tensor | None = None, attack: dict | None = None,
                      logger=None, prefix: str = "xai/", corrupted: Mapping[str, Tensor] | None = None,
                      corruption: dict | None = None) -> dict[str, float]:
    """Explain ``samples``, score the maps, write ``explanations.json``/``.md`` and ``figures/xai_*.png``.

    ``explainer``: a target of the ``explainer`` group; ``settings``: the ``explanation`` group (target,
    batch size, metrics, gallery). ``adversarial``: the samples under the evaluation attack (described by
    ``attack``) for the stability metrics, None skips them. ``corrupted``: the samples under each corruption
    (described by ``corruption``) for stability under corruption (``corruption_ssim/_spearman``). ``logger``: a Lightning logger; figures go to it
    when it can ``log_image`` (W&B). Returns ``{prefix + metric: mean}``.
    """
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    class_names = tuple(getattr(model, "class_names", None) or _numbered_classes(model, samples.images[:1]))
    if isinstance(explainer, TCAV):
        from trixai.suites.tcav import tcav_suite

        return tcav_suite(model, samples, explainer, out_dir, class_names=class_names, prefix=prefix)
    report = _map_suite(model, samples, explainer, settings, adversarial, attack, out_dir, class_names,
                        corrupted, corruption)
    flat = {f"{prefix}{key}": value["mean"] for key, value in report["metrics"].items()}
    if report.get("sanity"):
        flat[f"{prefix}sanity_passed"] = float(report["sanity"]["passed"])
    flat[f"{prefix}degenerate"] = float(report["degeneracy"]["degenerate"])
    atomic_write_json(out_dir / "explanations.json", json_safe(report))
    atomic_write_text(out_dir / "explanations.md", markdown_report(report))
    if logger is not None and hasattr(logger, "log_image"):
        for figure in report["figures"]:
            logger.log_image(key=f"{prefix}{Path(figure).stem}", images=[str(out_dir / figure)])
    log.info("explanations (%s, n=%d) written to %s", explainer.name, report["n_samples"], out_dir)
    return flat


def _faithfulness(model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, cfg: Mapping, task: str
                  ) -> tuple[dict[str, dict], dict[str, dict], dict]:
    """Metrics, mean curves per deletion/insertion protocol, and the variants used (for the report)."""
    metrics_cfg = cfg.get("metrics") or {}
    steps = metrics_cfg.get("steps")
    metrics, curves, protocols = {}, {}, {}
    for name in _as_list(metrics_cfg.get("faithfulness", ["rise"])):
        chosen = protocol(name, steps=None if steps is None else int(steps))
        scores = deletion_insertion(model, x, maps, targets, variant=chosen, task=task,
                                    batch_size=int(cfg.get("batch_size", 16)) * 16)
        curves[chosen.name], protocols[chosen.name] = scores, chosen.settings()
        metrics[f"deletion_auc_{chosen.name}"] = summary(scores["deletion_auc"])
        metrics[f"insertion_auc_{chosen.name}"] = summary(scores["insertion_auc"])
    space = str(metrics_cfg.get("confidence_space", "normalised"))
    change = confidence_change(model, x, maps, targets, task=task, space=space)
    metrics["average_drop"] = summary(change["average_drop"])
    metrics["increase_in_confidence"] = summary(change["increase_in_confidence"])
    return metrics, curves, {"deletion_insertion": protocols, "confidence_space": space}


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _localization(maps: Tensor, masks: Tensor, valid: Tensor, metrics_cfg: Mapping) -> tuple[dict[str, dict], dict]:
    m, g = maps[valid], masks[valid]
    reference = metrics_cfg.get("tolerance_at", POINTING_REFERENCE_SIZE)
    tolerance = float(metrics_cfg.get("tolerance", POINTING_TOLERANCE))
    pixels = scaled_tolerance(tolerance, min(maps.shape[-2:]), None if reference is None else int(reference))
    metrics = {
        "pointing_game": summary(pointing_game(m, g, pixels)),
        "pointing_game_chance": summary(area_fraction(g, pixels)),
        "energy_pointing_game": summary(energy_pointing_game(m, g)),
        "topk_iou": summary(topk_iou(m, g, float(metrics_cfg.get("topk", 0.15)))),
        "mask_area_fraction": summary(area_fraction(g)),
    }
    return metrics, {"tolerance": tolerance, "tolerance_at": reference, "tolerance_px": pixels}


def _stability(model: nn.Module, explainer: MapExplainer, x: Tensor, labels: Tensor, result: Explanation,
               x_adv: Tensor, attack: dict, mode, cfg: Mapping) -> tuple[dict[str, dict], Tensor]:
    """CAM(x) vs CAM(x_adv) for the same targets, and vs CAM(x + random +-eps signs) as a reference."""
    maps_adv = _explain_all(model, explainer, x_adv, labels, mode, cfg, targets=result.targets).maps
    metrics = {"stability_ssim": summary(ssim(result.maps, maps_adv)),
               "stability_spearman": summary(spearman(result.maps, maps_adv))}
    eps = attack.get("eps")
    if eps and attack.get("norm", "linf") == "linf":
        signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(0)).to(x.device) * 2 - 1
        maps_noise = _explain_all(model, explainer, (x + eps * signs).clamp(0, 1), labels, mode, cfg, targets=result.targets).maps
        metrics["noise_ssim"] = summary(ssim(result.maps, maps_noise))
        metrics["noise_spearman"] = summary(spearman(result.maps, maps_noise))
    return metrics, maps_adv


def _corruption_stability(model: nn.Module, explainer: MapExplainer, x: Tensor, labels: Tensor, result: Explanation,
                          corrupted: Mapping[str, Tensor], mode, cfg: Mapping) -> dict[str, dict]:
    """CAM(x) vs CAM(corrupted x) for the same targets, per corruption and pooled over the corruptions."""
    metrics, pooled = {}, {"ssim": [], "spearman": []}
    for name, images in corrupted.items():
        maps = _explain_all(model, explainer, images.to(x.device), labels, mode, cfg, targets=result.targets).maps
        for key, fn in (("ssim", ssim), ("spearman", spearman)):
            values = fn(result.maps, maps)
            metrics[f"corruption_{key}_{name}"] = summary(values)
            pooled[key].append(values)
    for key, values in pooled.items():
        metrics[f"corruption_{key}"] = summary(torch.cat(values))
    return metrics


def _sanity(model: nn.Module, explainer: MapExplainer, x: Tensor, result: Explanation, cfg: Mapping) -> dict:
    metrics_cfg = cfg.get("metrics") or {}
    k = min(int(metrics_cfg.get("sanity_samples", 16)), len(x))
    rows = parameter_randomisation(model, x[:k], result.targets[:k],
                                   lambda mdl, xb, tb: explainer(mdl, xb, tb).maps, reference=result.maps[:k])
    threshold = float(metrics_cfg.get("sanity_max_spearman", 0.5))
    final = rows[-1]
    if math.isfinite(final["spearman"]):
        passed = final["spearman"] < threshold
    else:  # the randomised model's maps are constant: compare structure instead
        passed = final["ssim"] < 0.5
    return {"stages": rows, "max_spearman": threshold, "passed": bool(passed), "final_ssim": final["ssim"],
            "final_spearman": final["spearman"], "n": k}


def _map_suite(model: nn.Module, samples: Samples, explainer: MapExplainer, cfg: Mapping, adversarial: Tensor | None,
               attack: dict | None, out_dir: Path,
               class_names: tuple[str, ...], corrupted: Mapping[str, Tensor] | None = None,
               corruption: dict | None = None) -> dict:
    task = getattr(model, "task", "multiclass")
    metrics_cfg = cfg.get("metrics") or {}
    mode = resolve_target(cfg.get("target", "predicted"), class_names)
    x, labels = samples.images, samples.labels
    result = _explain_all(model, explainer, x, labels, mode, cfg)
    maps, targets = result.maps, result.targets
    metrics, curves, variants = _faithfulness(model, x, maps, targets, cfg, task)
    located = target_masks(samples, targets)
    if located is not None and bool(located[1].any()):
        localization, variants["pointing_game"] = _localization(maps, *located, metrics_cfg)
        metrics.update(localization)
    degenerate = degeneracy(result.logits, task)
    maps_adv = None
    if adversarial is not None and attack is not None and metrics_cfg.get("stability", True):
        stability, maps_adv = _stability(model, explainer, x, labels, result, adversarial.to(x.device), attack, mode,
                                         cfg)
        metrics.update(stability)
    if corrupted and metrics_cfg.get("stability", True):
        metrics.update(_corruption_stability(model, explainer, x, labels, result, corrupted, mode, cfg))
    sanity = _sanity(model, explainer, x, result, cfg) if metrics_cfg.get("sanity", True) else None
    if sanity:
        metrics["sanity_final_ssim"] = {"mean": sanity["final_ssim"], "std": float("nan"), "n": sanity["n"]}
        metrics["sanity_final_spearman"] = {"mean": sanity["final_spearman"], "std": float("nan"), "n": sanity["n"]}

    chosen = _gallery_indices(labels, targets, int(cfg.get("gallery_per_class", 2)))
    titles = [f"#{samples.names[i]} " + (f"y={class_names[int(labels[i])]} " if not labels.is_floating_point() else "")
              + f"cam={class_names[int(targets[i])]}" for i in chosen]
    figures.save_gallery(out_dir / "figures" / "xai_gallery.png", x[chosen], maps[chosen], titles,
                         masks=located[0][chosen] if located is not None else None,
                         maps_adv=maps_adv[chosen] if maps_adv is not None else None)
    figures.save_curves(out_dir / "figures" / "xai_curves.png", curves)
    report = {
        "explainer": {**explainer.settings(), **{k: v for k, v in cfg.items() if k != "metrics"}},
        "metric_settings": dict(cfg.get("metrics") or {}),
        "model": getattr(model, "name", type(model).__name__),
        "class_names": list(class_names),
        "n_samples": len(x),
        "attack": attack if maps_adv is not None else None,
        "corruption": corruption if corrupted else None,
        "metrics": metrics,
        "variants": variants,
        "degeneracy": degenerate,
        "uninformative": _uninformative(metrics, degenerate),
        "curves": {b: {k: c[f"{k}_curve"].mean(dim=0).tolist() for k in ("deletion", "insertion")}
                   for b, c in curves.items()},
        "sanity": sanity,
        "figures": ["figures/xai_gallery.png", "figures/xai_curves.png"],
    }
    if "gates" in result.extras:
        report["se_attention"] = gate_statistics(result.extras["gates"])
        figures.save_se_gates(out_dir / "figures" / "xai_se_gates.png", report["se_attention"])
        report["figures"].append("figures/xai_se_gates.png")
    return report


LOWER_IS_BETTER = ("deletion_auc", "average_drop")
#: Metrics that a degenerate model (trixai.xai.metrics.degeneracy) makes meaningless.
DEGENERACY_SENSITIVE = ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence", "pointing_game",
                        "energy_pointing_game", "topk_iou")


def _uninformative(metrics: Mapping, degenerate: Mapping) -> dict | None:
    """The faithfulness and localisation metrics marked uninformative, with the reason, for a degenerate model."""
    if not degenerate["degenerate"]:
        return None
    keys = [k for k in metrics if k.startswith(DEGENERACY_SENSITIVE) and not k.endswith("_chance")]
    return {"metrics": keys, "reason": f"degenerate model: {degenerate['reason']}"}


def _variant_lines(variants: Mapping) -> list[str]:
    """One line per metric family naming the variant used (docs/explanations.md defines them)."""
    lines = []
    for name, p in (variants.get("deletion_insertion") or {}).items():
        steps = "one image row per step" if p["steps"] is None else f"{p['steps']} steps"
        words = {"mean": "the mean colour (normalised zero)", "black": "black",
                 "blur": f"a {p['blur']} blur ({p['kernel']} px, sigma {p['sigma']})"}
        lines.append(f"- deletion/insertion `{name}`: deletion to {words[p['deletion']]}, insertion from "
                     f"{words[p['insertion']]}, {steps}, trapezoid AUC over the normalised step axis")
    if "confidence_space" in variants:
        lines.append(f"- average drop / increase in confidence: image ⊙ map in the {variants['confidence_space']} "
                     "input space")
    if "pointing_game" in variants:
        v = variants["pointing_game"]
        scale = "absolute" if v["tolerance_at"] is None else f"{v['tolerance']} px at {v['tolerance_at']} px, scaled"
        lines.append(f"- pointing game: tolerance {v['tolerance_px']:.2f} px ({scale})")
    return ["Variants:", "", *lines] if lines else []


def markdown_report(report: dict) -> str:
    """explanations.md: settings, one row per metric (mean +- std, n), sanity stages, figures."""
    explainer = report["explainer"]
    lines = [f"# Explanations: {explainer.get('name')} on {report['model']}", "",
             f"{report['n_samples']} images; target: {explainer.get('target', 'predicted')}; "
             f"attack: {report['attack'] or 'none'}.", "",
             "| metric | mean ± std | 95 % CI of the mean (bootstrap) | n |", "|---|---|---|---|"]
    flagged = report.get("uninformative") or {"metrics": []}
    if flagged["metrics"]:
        lines[-2:-2] = [f"**Uninformative: {flagged['reason']}.** The metrics marked † describe the model's bias, "
                        "not its explanations.", ""]
    for key, value in report["metrics"].items():
        hint = " (lower is better)" if key.startswith(LOWER_IS_BETTER) else ""
        hint += " † uninformative" if key in flagged["metrics"] else ""
        std = "" if not math.isfinite(value["std"]) else f" ± {value['std']:.4f}"
        mean = f"{value['mean']:.4f}" if math.isfinite(value["mean"]) else "undefined"
        interval = value.get("mean_ci95")
        ci = f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "—"
        lines.append(f"| {key}{hint} | {mean}{std} | {ci} | {value['n']} |")
    lines += ["", *_variant_lines(report.get("variants") or {})]
    if "mask_area_fraction" in report["metrics"]:
        lines += ["", "Chance levels: pointing_game_chance (the grown mask's area) for the pointing game, "
                      "mask_area_fraction for the energy pointing game."]
    sanity = report.get("sanity")
    if sanity:
        lines += ["", f"## Parameter randomisation ({'passed' if sanity['passed'] else 'FAILED'}: "
                      f"final Spearman {sanity['final_spearman']:.3f} < {sanity['max_spearman']})", "",
                  "| randomised down to | SSIM vs trained | Spearman vs trained |", "|---|---|---|"]
        lines += [f"| {row['stage']} | {row['ssim']:.4f} | {row['spearman']:.4f} |" for row in sanity["stages"]]
    if "se_attention" in report:
        lines += ["", "## SE gates per module", "", "| module | channels | mean | std | min | max |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {n} | {s['channels']} | {s['mean']:.4f} | {s['std']:.4f} | {s['min']:.4f} | {s['max']:.4f} |"
                  for n, s in report["se_attention"].items()]
    lines += ["", *[f"![{Path(f).stem}]({f})" for f in report["figures"]], ""]
    return "\n".join(lines)
