"""The explanation suite: explain a sample of points, score every map, keep per-point records, report.

Used by ``trixai-explain`` and by the test phase of ``trixai-train`` through :class:`ExplanationPass`: it collects
the first ``max_points`` points as the batches go by; :meth:`ExplanationPass.finish` explains them, scores each map
(per-point records ``xai/<metric>``; NaN where a metric does not apply, e.g. localisation without a mask), draws the
gallery and the curves into ``out_dir`` and returns the :class:`~trixai.core.reports.ExplanationReport` computed
from the records (or TCAV's :class:`~trixai.core.reports.TcavReport`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.bootstrap import Bootstrap, strata
from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.core.records import RecordBuilder, Records
from trixai.core.reports import ExplanationReport, MetricSummary, TcavReport
from trixai.core.seeds import stable_seed
from trixai.core.settings import ExplanationMetricSettings, ExplanationSettings, ManipulationSettings, from_mapping
from trixai.suites.base import PointBatch, SuitePass, class_names_of
from trixai.suites.robustness import BatchResult
from trixai.xai import figures
from trixai.xai.explainers import TCAV, Explanation, GradCAM, MapExplainer, MultiScaleGradCAM
from trixai.xai.manipulation import TargetedManipulation, TopKManipulation
from trixai.xai.metrics.degeneracy import degeneracy
from trixai.xai.metrics.faithfulness import confidence_change, deletion_insertion, protocol
from trixai.xai.metrics.localization import (
    area_fraction,
    energy_pointing_game,
    pointing_game,
    pointing_game_per_category,
    scaled_tolerance,
    topk_iou,
)
from trixai.xai.metrics.sanity import parameter_randomisation, randomisation_stages
from trixai.xai.metrics.stability import spearman, ssim

log = logging.getLogger(__name__)


@dataclass
class Samples:
    """The explained points, on one device: images, targets, localisation masks, split indices and names."""

    images: Tensor
    labels: Tensor
    masks: Tensor | None
    has_mask: Tensor
    names: list[str]
    index: Tensor
    pixel_scale: Tensor | None = None


def stratified_points(targets: Tensor, count: int, seed: int = 0) -> Tensor:
    """``count`` point indices (sorted) drawn without replacement, stratified by class (multi-label: by the rarest
    positive label, as the bootstrap's strata): each stratum gets its proportional share (largest remainders; every
    stratum at least one point while ``count`` allows), drawn at random within it from ``seed``."""
    groups = strata(targets.cpu())
    values, sizes = groups.unique(sorted=True, return_counts=True)
    count = min(int(count), len(groups))
    share = sizes.double() * count / len(groups)
    quota = share.floor().long().clamp_min(1 if count >= len(values) else 0).minimum(sizes)
    while int(quota.sum()) > count:  # the floor of one point per stratum overshot: take from the largest
        quota[int((quota - share).argmax())] -= 1
    while int(quota.sum()) < count:  # largest remainders first
        room = torch.where(quota < sizes, share - quota.double(), torch.tensor(-math.inf, dtype=torch.float64))
        quota[int(room.argmax())] += 1
    generator = torch.Generator().manual_seed(int(seed))
    chosen = [(groups == v).nonzero().flatten()[torch.randperm(int(n), generator=generator)[:int(q)]]
              for v, n, q in zip(values, sizes, quota, strict=True)]
    return torch.cat(chosen).sort().values if chosen else torch.empty(0, dtype=torch.long)


def gallery_points(targets: Tensor, points: Tensor, per_class: int) -> Tensor:
    """The explained points the gallery shows: per class (multi-label: per rarest positive label) the first
    ``per_class`` of ``points`` in split order."""
    keys = strata(targets.cpu())[points]
    chosen, seen = [], {}
    for index, key in zip(points.tolist(), keys.tolist(), strict=True):
        if seen.get(key, 0) < per_class:
            seen[key] = seen.get(key, 0) + 1
            chosen.append(index)
    return torch.tensor(chosen, dtype=torch.long)


class SampleCollector:
    """Keeps the points to explain (the explanation pass hands over its chosen points) on the CPU as the suites
    pass over a loader. Its :meth:`records` are what a shard saves; :meth:`restore` takes every shard's, merged."""

    def __init__(self) -> None:
        self.builder = RecordBuilder()
        self.names: list[str] = []
        self.merged: Records | None = None

    def add(self, batch: PointBatch) -> None:
        fields = {"image": batch.image.cpu(), "target": batch.target.cpu()}
        if batch.mask is not None:
            fields |= {"mask": batch.mask.cpu(), "has_mask": batch.has_mask.cpu()}
        if batch.pixel_scale is not None:
            fields["pixel_scale"] = torch.as_tensor(batch.pixel_scale).double().cpu()
        self.builder.add(batch.index, fields)
        self.names.extend(batch.name if batch.name is not None else [str(int(i)) for i in batch.index])

    def records(self) -> Records:
        return self.merged if self.merged is not None else self.builder.records({"names": list(self.names)})

    def restore(self, records: Records) -> None:
        self.merged = records

    def samples(self, device: torch.device) -> Samples:
        records = self.records()
        if not len(records):
            raise TrixaiError("the explanation loader yielded no samples")
        masks = records.get("mask")
        return Samples(records["image"].to(device), records["target"].to(device),
                       None if masks is None else masks.to(device),
                       records["has_mask"].to(device) if masks is not None
                       else torch.zeros(len(records), dtype=torch.bool, device=device),
                       list(records.meta.get("names") or []), records.index, records.get("pixel_scale"))


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


def summary(values: Tensor) -> MetricSummary:
    """Mean, std (population) and n over the finite values, and the percentile-bootstrap 95 % interval of the
    mean over the points (1,000 resamples, seed 0, not stratified)."""
    values = values.detach().double().flatten().cpu()
    values = values[torch.isfinite(values)]
    n = int(values.numel())
    if n == 0:
        return MetricSummary(float("nan"), float("nan"), 0, None)
    boot = Bootstrap.draw(torch.zeros(n, dtype=torch.long))
    interval = boot.intervals(lambda w: {"mean": w.double() @ values / w.sum(1)})["mean_ci95"]
    return MetricSummary(float(values.mean()), float(values.std(unbiased=False)), n, interval)


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


def explain_all(model: nn.Module, explainer: MapExplainer, x: Tensor, labels: Tensor, mode: str | int,
                cfg: ExplanationSettings, targets: Tensor | None = None) -> Explanation:
    """The explainer over ``x`` in chunks of ``batch_size``; its extras (SE gates, multi-scale stage maps)
    concatenated too."""
    size = int(cfg.batch_size)
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
    extras = {key: {k: torch.cat([p.extras[key][k] for p in parts]) for k in parts[0].extras[key]}
              for key in ("gates", "stage_maps") if key in parts[0].extras}
    return Explanation(torch.cat([p.maps for p in parts]), torch.cat([p.logits for p in parts]),
                       torch.cat([p.targets for p in parts]), extras)


def samples_needed(explainer: MapExplainer | TCAV, explanation: ExplanationSettings | Mapping | None) -> int:
    """How many points the explanation suite explains: TCAV's own ``max_points``, else the ``explanation``
    group's ``max_points``."""
    settings = from_mapping(ExplanationSettings, explanation, key="explanation")
    return int(getattr(explainer, "max_points", 0) or settings.max_points)


#: The records an explanation pass keeps beside its points' (``records/explanations_<part>.safetensors``).
PARTS = ("predictions", "gallery", "manipulated")


class ExplanationPass(SuitePass):
    """The explanation suite as a pass over blocks of points: each block's explained points are explained and
    scored when the block comes by (one computation per block, so batch sizes and shards never change a number),
    every metric kept per point; :meth:`finish` computes the report from those records.

    ``explainer``: a target of the ``explainer`` group; ``settings``: the ``explanation`` group (target, batch
    size, metrics, gallery). ``points``: the split indices to explain (:func:`stratified_points`), ``gallery``: those
    the gallery shows (None: the first ``max_points`` points and the first of each class among them). ``attack``:
    the evaluation attack's settings, whose adversarial images of a block (from the robustness pass) give the
    stability metrics and whose eps the map manipulation uses (None skips both). ``corruptions``: the corruption
    suite whose corrupted copies give stability under corruption at its ``explanation_severity``. ``seed``: the
    noise baseline's draws. TCAV scores sets of images, not points: it collects its points and runs at the end.
    """

    name = "explanations"

    def __init__(self, model: nn.Module, explainer: MapExplainer | TCAV, settings: ExplanationSettings | Mapping | None,
                 *, attack: Mapping | None = None, corruptions=None, device: torch.device | str | None = None,
                 points: Tensor | None = None, gallery: Tensor | None = None, seed: int = 0) -> None:
        super().__init__(model, max_points=samples_needed(explainer, settings), device=device)
        self.explainer, self.attack, self.corruptions, self.seed = explainer, attack, corruptions, int(seed)
        self.settings = from_mapping(ExplanationSettings, settings, key="explanation")
        self.chosen = None if points is None else torch.as_tensor(points, dtype=torch.long).sort().values
        self.gallery_points = None if gallery is None else torch.as_tensor(gallery, dtype=torch.long)
        self.has_records = not isinstance(explainer, TCAV)  # TCAV scores sets of images, not points
        self.collector = SampleCollector() if not self.has_records else None
        self.gallery_keys: dict[int, int] = {}  # first-points mode: gallery entries per class so far
        self.builders = {part: RecordBuilder() for part in ("points", "predictions", "gallery", "manipulated")}
        self.part_names: dict[str, list[str]] = {"points": [], "gallery": [], "manipulated": []}
        self.variants: dict = {}
        self.stages = randomisation_stages(model) if self.settings.metrics.sanity else []

    @property
    def done(self) -> bool:
        """Never before the loader ends: degeneracy is judged on the predictions of the whole split."""
        return False

    def update(self, batch: PointBatch, robust: BatchResult | None = None, clean_logits: Tensor | None = None
               ) -> None:
        """The block's predictions and, for its explained points, every metric (``robust``: the robustness pass's
        result of the block, whose evaluation-attack images give stability under attack; ``clean_logits``: the
        block's clean logits where the caller has them)."""
        self.device = self.device or next(self.model.parameters()).device
        logits = clean_logits
        if logits is None and robust is not None and len(robust.index) == len(batch) \
                and torch.equal(robust.index, batch.index):
            logits = robust.clean_logits
        if logits is None:
            with frozen_eval(self.model), torch.no_grad():
                logits = self.model(self.to_device(batch))
        self.builders["predictions"].add(batch.index, {"logits": logits.detach().float().cpu()})
        rows = self._explained_rows(batch)
        if rows.numel():
            chosen = batch.take(rows)
            if self.collector is not None:
                self.collector.add(chosen)
            else:
                self._explain(chosen, self.block_of(batch), robust)
        self.count(batch)

    def process(self, batch: PointBatch) -> None:
        self.update(batch)

    def _explained_rows(self, batch: PointBatch) -> Tensor:
        wanted = torch.isin(batch.index, self.chosen) if self.chosen is not None else batch.index < self.max_points
        return wanted.nonzero().flatten()

    def _is_first(self, index: Tensor, count: int) -> Tensor:
        """Which of these explained points are among the first ``count`` explained points of the split."""
        return torch.isin(index, self.chosen[:count]) if self.chosen is not None else index < count

    def _in_gallery(self, samples: Samples) -> Tensor:
        if self.gallery_points is not None:
            return torch.isin(samples.index, self.gallery_points)
        keys = samples.labels.cpu() if not samples.labels.is_floating_point() else strata(samples.labels.cpu())
        chosen = torch.zeros(len(keys), dtype=torch.bool)
        for row, key in enumerate(keys.tolist()):
            if self.gallery_keys.get(int(key), 0) < self.settings.gallery_per_class:
                self.gallery_keys[int(key)] = self.gallery_keys.get(int(key), 0) + 1
                chosen[row] = True
        return chosen

    def _explain(self, batch: PointBatch, block: int, robust: BatchResult | None) -> None:
        samples = samples_of(batch, self.device)
        class_names = tuple(class_names_of(self.model, int(self.builders["predictions"].chunks["logits"][0].shape[1])))
        adversarial = None
        if robust is not None and robust.eval_images is not None:
            position = {int(i): r for r, i in enumerate(robust.index[:robust.rows].tolist())}
            if all(int(i) in position for i in samples.index):
                adversarial = robust.eval_images[[position[int(i)] for i in samples.index]].to(self.device)
        severity = None if self.corruptions is None else self.corruptions.explanation_severity
        corrupted = None if severity is None else self.corruptions.corrupt(samples.images, severity, block)
        out = _explain_points(
            self.model, samples, self.explainer, self.settings, class_names=class_names, adversarial=adversarial,
            attack=self.attack, corrupted=corrupted, noise_seed=stable_seed(self.seed, "explanation-noise", block),
            sanity=self._is_first(samples.index, self.settings.metrics.sanity_samples) if self.stages else None,
            manipulate=self._is_first(samples.index, self.settings.metrics.manipulation.points),
            gallery=self._in_gallery(samples), stages=self.stages)
        self.builders["points"].add(samples.index, out.fields)
        self.part_names["points"] += samples.names
        for part in ("gallery", "manipulated"):
            rows = getattr(out, part)
            if rows is not None and len(rows[0]):
                self.builders[part].add(*rows)
                self.part_names[part] += [samples.names[i] for i in getattr(out, f"{part}_rows")]
        self.variants |= out.variants
        if severity is not None:
            self.variants["corruption"] = {"set": self.corruptions.set, "severity": severity}

    def records(self) -> Records:
        if self.restored is not None:
            return self.restored[self.name]
        return self.builders["points"].records(self.meta())

    def part(self, name: str) -> Records:
        """The ``predictions``, ``gallery`` or ``manipulated`` records (saved beside the points' records)."""
        if self.restored is not None:
            return self.restored[f"{self.name}_{name}"]
        names = self.names if name == "predictions" else self.part_names[name]
        return self.builders[name].records({"names": list(names)})

    def parts(self) -> dict[str, Records]:
        if self.collector is not None:  # TCAV: the collected points
            return {f"{self.name}_samples": self.collector.records()}
        return {self.name: self.records(), **{f"{self.name}_{p}": self.part(p) for p in PARTS}}

    def restore(self, parts: Mapping[str, Records]) -> None:
        if self.collector is not None:
            self.collector.restore(parts[f"{self.name}_samples"])
        else:
            super().restore(parts)

    def meta(self) -> dict:
        return {**super().meta(), "names": self.part_names["points"], "variants": self.variants, "stages": self.stages}

    def finish(self, out_dir: Path) -> ExplanationReport | TcavReport:
        out_dir = Path(out_dir)
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        if self.collector is not None:
            from trixai.suites.tcav import tcav_suite

            samples = self.collector.samples(self.device)
            class_names = tuple(class_names_of(self.model, int(self.model(samples.images[:1]).shape[1])))
            return tcav_suite(self.model, samples, self.explainer, class_names=class_names)
        records, predictions = self.records(), self.part("predictions")
        if not len(records):
            raise TrixaiError("the explanation suite explained no points (empty split, or none of the chosen points "
                              "in this shard)")
        report = explanation_report(
            records, predictions, self.part("gallery"), self.part("manipulated"),
            explainer=self.explainer, settings=self.settings, model_name=getattr(self.model, "name",
                                                                                   type(self.model).__name__),
            class_names=class_names_of(self.model, int(predictions["logits"].shape[1])),
            task=getattr(self.model, "task", "multiclass"), attack=self.attack, out_dir=out_dir)
        log.info("explanations (%s, n=%d)", self.explainer.name, report.n_samples)
        return report


@dataclass
class _Explained:
    """One block's explained points: record fields, gallery and manipulation-figure rows, variants."""

    fields: dict[str, Tensor]
    variants: dict
    gallery: tuple[Tensor, dict[str, Tensor]] | None = None
    gallery_rows: list[int] | None = None
    manipulated: tuple[Tensor, dict[str, Tensor]] | None = None
    manipulated_rows: list[int] | None = None


def samples_of(batch: PointBatch, device: torch.device) -> Samples:
    """A block's explained points on ``device``."""
    masks = None if batch.mask is None else batch.mask.to(device)
    flags = (batch.has_mask.to(device) if batch.has_mask is not None and masks is not None
             else torch.zeros(len(batch), dtype=torch.bool, device=device))
    names = list(batch.name) if batch.name is not None else [str(int(i)) for i in batch.index]
    return Samples(batch.image.to(device), batch.target.to(device), masks, flags, names, batch.index.cpu(),
                   None if batch.pixel_scale is None else torch.as_tensor(batch.pixel_scale).double())


def _faithfulness(model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, cfg: ExplanationSettings, task: str
                  ) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]], dict]:
    """Per-point metrics, per-point curves per deletion/insertion protocol, and the variants used."""
    steps = cfg.metrics.steps
    values, curves, protocols = {}, {}, {}
    for name in _as_list(cfg.metrics.faithfulness):
        chosen = protocol(name, steps=None if steps is None else int(steps))
        scores = deletion_insertion(model, x, maps, targets, variant=chosen, task=task,
                                    batch_size=int(cfg.batch_size) * 16)
        curves[chosen.name], protocols[chosen.name] = scores, chosen.settings()
        values[f"deletion_auc_{chosen.name}"] = scores["deletion_auc"]
        values[f"insertion_auc_{chosen.name}"] = scores["insertion_auc"]
    space = str(cfg.metrics.confidence_space)
    change = confidence_change(model, x, maps, targets, task=task, space=space)
    values["average_drop"] = change["average_drop"]
    values["increase_in_confidence"] = change["increase_in_confidence"]
    return values, curves, {"deletion_insertion": protocols, "confidence_space": space}


def _as_list(value) -> list:
    return [value] if isinstance(value, str) else list(value)


def _on_valid(values: Tensor, valid: Tensor) -> Tensor:
    """Per-point values of the valid points scattered into NaN rows for the others."""
    out = torch.full(valid.shape, float("nan"), dtype=torch.float64, device=values.device)
    out[valid] = values.double()
    return out


def _localization(maps: Tensor, masks: Tensor, valid: Tensor, metrics_cfg: ExplanationMetricSettings,
                  pixel_scale: Tensor | None) -> tuple[dict[str, Tensor], dict]:
    """Per-point localisation metrics (NaN off the points with a mask) and the tolerance in input pixels per axis
    (``tolerance_rows``/``_cols``). The pointing game's tolerance is ``tolerance`` px at the image's own resolution
    (``pixel_scale``: model pixels per original pixel, per axis) when the dataset knows it, else ``tolerance`` px
    at ``tolerance_at`` px scaled to the input."""
    m, g = maps[valid], masks[valid]
    tolerance = float(metrics_cfg.tolerance)
    if pixel_scale is not None:
        pixels: Tensor = tolerance * pixel_scale.to(maps.device)[valid]
        variant = {"tolerance": tolerance, "at": "the image's own resolution"}
    else:
        reference = metrics_cfg.tolerance_at
        scaled = scaled_tolerance(tolerance, min(maps.shape[-2:]), None if reference is None else int(reference))
        pixels = torch.full((int(valid.sum()), 2), scaled, dtype=torch.float64, device=maps.device)
        variant = {"tolerance": tolerance, "at": "absolute" if reference is None else f"{reference} px, scaled"}
    values = {
        "pointing_game": pointing_game(m, g, pixels),
        "pointing_game_chance": area_fraction(g, pixels),
        "energy_pointing_game": energy_pointing_game(m, g),
        "topk_iou": topk_iou(m, g, float(metrics_cfg.topk)),
        "mask_area_fraction": area_fraction(g),
        "tolerance_rows": pixels[:, 0], "tolerance_cols": pixels[:, 1],
    }
    return {k: _on_valid(v, valid) for k, v in values.items()}, variant


def _stability(model: nn.Module, explainer: MapExplainer, x: Tensor, labels: Tensor, result: Explanation,
               x_adv: Tensor, attack: Mapping, mode, cfg: ExplanationSettings, seed: int
               ) -> tuple[dict[str, Tensor], Tensor]:
    """CAM(x) vs CAM(x_adv) for the same targets, and vs CAM(x + random +-eps signs, drawn from ``seed``) as a
    reference."""
    maps_adv = explain_all(model, explainer, x_adv, labels, mode, cfg, targets=result.targets).maps
    values = {"stability_ssim": ssim(result.maps, maps_adv), "stability_spearman": spearman(result.maps, maps_adv)}
    eps = attack.get("eps")
    if eps and attack.get("norm", "linf") == "linf":
        signs = torch.randint(0, 2, x.shape, generator=torch.Generator().manual_seed(seed)).to(x.device) * 2 - 1
        maps_noise = explain_all(model, explainer, (x + eps * signs).clamp(0, 1), labels, mode, cfg,
                                 targets=result.targets).maps
        values["noise_ssim"] = ssim(result.maps, maps_noise)
        values["noise_spearman"] = spearman(result.maps, maps_noise)
    return values, maps_adv


def _corruption_stability(model: nn.Module, explainer: MapExplainer, x: Tensor, labels: Tensor, result: Explanation,
                          corrupted: Mapping[str, Tensor], mode, cfg: ExplanationSettings) -> dict[str, Tensor]:
    """CAM(x) vs CAM(corrupted x) for the same targets, per corruption and, per point, the mean over the
    corruptions (``corruption_ssim`` / ``corruption_spearman``)."""
    values, pooled = {}, {"ssim": [], "spearman": []}
    for name, images in corrupted.items():
        maps = explain_all(model, explainer, images.to(x.device), labels, mode, cfg, targets=result.targets).maps
        for key, fn in (("ssim", ssim), ("spearman", spearman)):
            values[f"corruption_{key}_{name}"] = fn(result.maps, maps)
            pooled[key].append(values[f"corruption_{key}_{name}"].double())
    for key, parts in pooled.items():
        values[f"corruption_{key}"] = torch.stack(parts, 1).nanmean(1)
    return values


def _manipulation(model: nn.Module, explainer: MapExplainer, x: Tensor, result: Explanation, attack: Mapping,
                  located: tuple[Tensor, Tensor] | None, cfg: ManipulationSettings, rows: Tensor
                  ) -> tuple[dict[str, Tensor], dict, dict[str, Tensor]]:
    """Both attacks on the maps of the points ``rows`` at the evaluation attack's eps: per-point values (NaN on the
    other points), the settings, and the images and maps the figure shows."""
    n = len(x)
    eps = float(attack["eps"])
    common = {"eps": eps, "alpha": cfg.alpha_ratio * eps, "steps": int(cfg.steps)}
    if isinstance(explainer, GradCAM):
        common |= {"explainer": "gradcam", "layer": explainer.layer}
    else:
        common |= {"explainer": "multiscale_gradcam", "weights": dict(explainer.weights)}
    xs, targets = x[rows], result.targets[rows]
    pixels = max(1, int(round(cfg.topk * x.shape[-1] * x.shape[-2])))
    untargeted = TopKManipulation(**common, topk=pixels)(model, xs, targets)
    goal = result.maps.roll(-1, 0)[rows]  # the next explained image's map ...
    if located is not None:  # ... or, where the point has a lesion mask, the mask's complement (off the lesion)
        masks, valid = located
        goal = torch.where(valid[rows, None, None], (~masks[rows]).float(), goal)
    goal = torch.where(goal.flatten(1).sum(1)[:, None, None] > 0, goal, torch.ones_like(goal))
    targeted = TargetedManipulation(**common, gamma=cfg.gamma)(model, xs, targets, target_maps=goal)

    def padded(values: Tensor) -> Tensor:
        out = torch.full((n,), float("nan"), dtype=torch.float64)
        out[rows.cpu()] = values.detach().double().cpu()
        return out

    values = {f"manipulation_{m}": padded(untargeted.metrics[m]) for m in ("topk_intersection", "ssim", "spearman")}
    values["manipulation_kept"] = padded(untargeted.kept.float())
    values |= {f"targeted_{m}": padded(targeted.metrics[m])
               for m in ("mse_before", "mse_after", "ssim_before", "ssim_after", "output_change")}
    values["targeted_kept"] = padded(targeted.kept.float())
    shown = {"image": xs.cpu(), "map": untargeted.clean_maps.cpu(), "image_untargeted": untargeted.x_adv.cpu(),
             "untargeted": untargeted.maps.cpu(), "goal": goal.cpu(), "targeted": targeted.maps.cpu()}
    settings = {"untargeted": {**common, "topk_pixels": pixels, "acceptance": "iterates keeping the clean class; "
                               "the lowest top-k intersection among them (Ghorbani et al. 2019)"},
                "targeted": {**common, "gamma": cfg.gamma, "target": "the lesion mask's complement where the point "
                             "has a mask, else the next explained image's map"},
                "points": int(cfg.points)}
    return values, settings, shown


def _sanity(model: nn.Module, explainer: MapExplainer, x: Tensor, result: Explanation, rows: Tensor,
            stages: list[str]) -> dict[str, Tensor]:
    """Cascading parameter randomisation (Adebayo et al. 2018) on the points ``rows``: per stage each point's SSIM
    and Spearman against the trained model's map (NaN on the other points; the report averages them)."""
    n = len(x)
    values = {f"sanity/{k}/{m}": torch.full((n,), float("nan"), dtype=torch.float64)
              for k in range(len(stages)) for m in ("ssim", "spearman")}
    if rows.numel():
        cascade = parameter_randomisation(model, x[rows], result.targets[rows],
                                          lambda mdl, xb, tb: explainer(mdl, xb, tb).maps, reference=result.maps[rows])
        for k, row in enumerate(cascade):
            values[f"sanity/{k}/ssim"][rows.cpu()] = row["ssim_points"]
            values[f"sanity/{k}/spearman"][rows.cpu()] = row["spearman_points"]
    return values


def _se_moments(gates: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Per SE module and point: the gates' sum, sum of squares, min, max and count below 0.5 over the channels,
    from which the report's statistics over points and channels follow exactly."""
    out = {}
    for name, gate in gates.items():
        gate = gate.detach().double().cpu()
        out |= {f"se/{name}/sum": gate.sum(1), f"se/{name}/squares": (gate ** 2).sum(1),
                f"se/{name}/min": gate.amin(1), f"se/{name}/max": gate.amax(1),
                f"se/{name}/below": (gate < 0.5).double().sum(1),
                f"se/{name}/channels": torch.full((len(gate),), float(gate.shape[1]), dtype=torch.float64)}
    return out


def _explain_points(model: nn.Module, samples: Samples, explainer: MapExplainer, cfg: ExplanationSettings, *,
                    class_names: tuple[str, ...], adversarial: Tensor | None, attack: Mapping | None,
                    corrupted: Mapping[str, Tensor] | None, noise_seed: int, sanity: Tensor | None, manipulate: Tensor,
                    gallery: Tensor, stages: list[str]) -> _Explained:
    """Explain and score one block's explained points: every metric per point (NaN where it does not apply), and
    the rows of the gallery and of the manipulation figure."""
    task = getattr(model, "task", "multiclass")
    metrics_cfg = cfg.metrics
    mode = resolve_target(cfg.target, class_names)
    x, labels = samples.images, samples.labels
    result = explain_all(model, explainer, x, labels, mode, cfg)
    maps, targets = result.maps, result.targets
    values, curves, variants = _faithfulness(model, x, maps, targets, cfg, task)
    located = target_masks(samples, targets)
    if located is not None:
        localization, variants["pointing_game"] = _localization(maps, *located, metrics_cfg, samples.pixel_scale)
        values.update(localization)
    maps_adv = None
    if attack is not None and metrics_cfg.stability:
        if adversarial is not None:
            stability, maps_adv = _stability(model, explainer, x, labels, result, adversarial, attack, mode, cfg,
                                             noise_seed)
            variants["attack"] = dict(attack)
        else:  # points the robustness pass did not attack (beyond its max_points): the fields stay, as NaN
            keys = ["stability_ssim", "stability_spearman"]
            keys += ["noise_ssim", "noise_spearman"] if attack.get("eps") and attack.get("norm", "linf") == "linf" else []
            stability = {k: torch.full((len(x),), float("nan"), dtype=torch.float64) for k in keys}
            maps_adv = torch.full_like(maps, float("nan"))
        values.update(stability)
    if corrupted and metrics_cfg.stability:
        values.update(_corruption_stability(model, explainer, x, labels, result, corrupted, mode, cfg))
    manipulated = None
    if (attack is not None and attack.get("eps") and metrics_cfg.manipulation.points > 0
            and isinstance(explainer, (GradCAM, MultiScaleGradCAM)) and task == "multiclass"):
        rows = manipulate.nonzero().flatten().to(x.device)
        shown = None
        if rows.numel():
            manipulation, variants["manipulation"], shown = _manipulation(model, explainer, x, result, attack, located,
                                                                          metrics_cfg.manipulation, rows)
        else:
            manipulation = {k: torch.full((len(x),), float("nan"), dtype=torch.float64) for k in MANIPULATION_METRICS}
        values.update(manipulation)
        if shown is not None:
            manipulated = (samples.index[rows.cpu()], shown)
    if sanity is not None:
        values.update(_sanity(model, explainer, x, result, sanity.nonzero().flatten().to(x.device), stages))
    if "gates" in result.extras:
        values.update(_se_moments(result.extras["gates"]))
    # the class whose mask is scored: the label (multiclass: the lesion's class), else the explained label
    category = labels.long() if not labels.is_floating_point() else targets
    fields = {"targets": labels.cpu(), "explained": targets.cpu(), "category": category.cpu(),
              "logits": result.logits.detach().float().cpu(),
              **{_field(k): v.detach().double().cpu() for k, v in values.items()},
              **{f"curve/{protocol_name}/{k}": c[f"{k}_curve"].detach().cpu()
                 for protocol_name, c in curves.items() for k in ("deletion", "insertion")}}
    chosen = gallery.nonzero().flatten()
    shown = {"image": x[chosen].cpu(), "map": maps[chosen].cpu(), "target": labels[chosen].cpu(),
             "explained": targets[chosen].cpu()}
    if located is not None:
        shown["mask"] = located[0][chosen].float().cpu()
    if maps_adv is not None:
        shown["map_adversarial"] = maps_adv[chosen].cpu()
    for stage, stage_map in (result.extras.get("stage_maps") or {}).items():
        shown[f"stage/{stage}"] = stage_map[chosen].cpu()
    return _Explained(fields, variants, (samples.index[chosen.cpu()], shown), chosen.tolist(), manipulated,
                      [] if manipulated is None else manipulate.nonzero().flatten().tolist())


def _field(name: str) -> str:
    """The record field of a per-point value: metrics under ``xai/``, the rest (sanity cascade, SE moments,
    pointing-game tolerance) under their own prefix."""
    if name.startswith(("sanity/", "se/")):
        return name
    return f"tolerance/{name.removeprefix('tolerance_')}" if name.startswith("tolerance_") else f"xai/{name}"


MANIPULATION_METRICS = ("manipulation_topk_intersection", "manipulation_ssim", "manipulation_spearman",
                        "manipulation_kept", "targeted_mse_before", "targeted_mse_after", "targeted_ssim_before",
                        "targeted_ssim_after", "targeted_output_change", "targeted_kept")


def category_summary(hits: Tensor, categories: Tensor, class_names: list[str]) -> tuple[MetricSummary, dict]:
    """The mean over categories of each category's hit rate, with a bootstrap interval that resamples within each
    category (1,000 resamples, seed 0), and the per-category rates and counts."""
    aggregate = pointing_game_per_category(hits, categories, class_names)
    present = torch.unique(categories.long())
    hits = hits.double()

    def mean_of_rates(weights: Tensor) -> dict[str, Tensor]:
        weights = weights.double()
        rates = [(weights[:, categories == c] @ hits[categories == c]) / weights[:, categories == c].sum(1)
                 for c in present]
        return {"mean": torch.stack(rates, 1).mean(1)}

    interval = Bootstrap.draw(categories.long()).intervals(mean_of_rates)["mean_ci95"] if len(hits) else None
    rates = torch.tensor(list(aggregate["per_category"].values()), dtype=torch.float64)
    summary_ = MetricSummary(aggregate["mean"], float(rates.std(unbiased=False)) if len(rates) else float("nan"),
                             aggregate["n"], interval)
    return summary_, {"per_category": aggregate["per_category"], "counts": aggregate["counts"]}


def explanation_report(points: Records, predictions: Records, gallery: Records, manipulated: Records, *,
                       explainer: MapExplainer, settings: ExplanationSettings, model_name: str, class_names: list[str],
                       task: str, attack: Mapping | None, out_dir: Path) -> ExplanationReport:
    """The report of the explanation records: per-metric summaries, the pointing game per category, the degeneracy
    verdict (on the clean predictions of every point seen), mean curves, the sanity check, SE statistics, and the
    figures (gallery, curves, manipulation, SE gates) drawn into ``out_dir``."""
    meta = points.meta
    variants = dict(meta.get("variants") or {})
    metrics = {name.removeprefix("xai/"): summary(values) for name, values in points.fields.items()
               if name.startswith("xai/")}
    if "xai/pointing_game" in points:  # Zhang et al. / TorchRay: the mean over categories of their hit rates
        hits, category = points["xai/pointing_game"], points["category"]
        scored = torch.isfinite(hits)
        metrics["pointing_game_per_sample"] = metrics["pointing_game"]  # summary(hits), above
        metrics["pointing_game"], per_category = category_summary(hits[scored], category[scored], class_names)
        variants["pointing_game"] = {**variants.get("pointing_game", {}), "aggregate": "mean over categories",
                                     **per_category}
        variants["pointing_game"]["tolerance_px"] = [float(points[f"tolerance/{axis}"].nanmean())
                                                     for axis in ("rows", "cols")]
    sanity = _sanity_summary(points, list(meta.get("stages") or []), settings)
    if sanity:
        metrics["sanity_final_ssim"] = MetricSummary(sanity["final_ssim"], float("nan"), sanity["n"])
        metrics["sanity_final_spearman"] = MetricSummary(sanity["final_spearman"], float("nan"), sanity["n"])
    degenerate = degeneracy(predictions["logits"], task)
    curves: dict[str, dict[str, list[float]]] = {}
    curve_tensors: dict[str, dict[str, Tensor]] = {}
    for name, values in points.fields.items():
        if name.startswith("curve/"):
            _, protocol_name, kind = name.split("/")
            curves.setdefault(protocol_name, {})[kind] = values.mean(dim=0).tolist()
            curve_tensors.setdefault(protocol_name, {})[f"{kind}_curve"] = values
            curve_tensors[protocol_name][f"{kind}_auc"] = points[f"xai/{kind}_auc_{protocol_name}"]
    out_dir = Path(out_dir)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    figure_paths = ["figures/xai_gallery.png"]
    _save_gallery(out_dir / figure_paths[0], gallery, class_names)
    if curve_tensors:
        figures.save_curves(out_dir / "figures" / "xai_curves.png", curve_tensors)
        figure_paths.append("figures/xai_curves.png")
    if len(manipulated):
        shown = manipulated.take(torch.arange(min(4, len(manipulated))))
        figures.save_gallery(out_dir / "figures" / "xai_manipulation.png", shown["image"], shown["map"],
                             [f"#{n}" for n in shown.meta["names"][:len(shown)]],
                             images_adv=shown["image_untargeted"],
                             stage_maps={"manipulated (untargeted)": shown["untargeted"], "target map": shown["goal"],
                                         "manipulated (targeted)": shown["targeted"]})
        figure_paths.append("figures/xai_manipulation.png")
    se = _se_statistics(points)
    if se:
        figures.save_se_gates(out_dir / "figures" / "xai_se_gates.png", se)
        figure_paths.append("figures/xai_se_gates.png")
    uses_attack = attack is not None and "stability_ssim" in metrics
    return ExplanationReport(
        explainer={**explainer.settings(), **{k: v for k, v in asdict(settings).items() if k != "metrics"}},
        model=model_name, class_names=class_names, n_samples=len(points), metrics=metrics,
        variants={k: v for k, v in variants.items() if k not in ("attack", "corruption")}, degeneracy=degenerate,
        metric_settings=asdict(settings.metrics), attack=dict(attack) if uses_attack else None,
        corruption=variants.get("corruption"), uninformative=_uninformative(metrics, degenerate), curves=curves,
        sanity=sanity, se_attention=se or None, figures=figure_paths)


def _sanity_summary(points: Records, stages: list[str], settings: ExplanationSettings) -> dict | None:
    """The cascade's mean SSIM and Spearman per stage over the points it ran on, and the verdict."""
    if not stages or "sanity/0/ssim" not in points:
        return None
    rows = []
    for k, stage in enumerate(stages):
        ssim_points, rho = points[f"sanity/{k}/ssim"], points[f"sanity/{k}/spearman"]
        ran = torch.isfinite(ssim_points)
        finite = rho[ran][torch.isfinite(rho[ran])]
        rows.append({"stage": stage, "ssim": float(ssim_points[ran].mean()),
                     "spearman": float(finite.mean()) if finite.numel() else float("nan"), "n": int(ran.sum())})
    threshold = float(settings.metrics.sanity_max_spearman)
    final = rows[-1]
    passed = final["spearman"] < threshold if math.isfinite(final["spearman"]) else final["ssim"] < 0.5
    return {"stages": rows, "max_spearman": threshold, "passed": bool(passed), "final_ssim": final["ssim"],
            "final_spearman": final["spearman"], "n": final["n"]}


def _se_statistics(points: Records) -> dict[str, dict[str, float]]:
    """Per SE module, over the explained points and channels: mean, std, min, max and the share of gates < 0.5."""
    stats = {}
    for name in dict.fromkeys(field.split("/")[1] for field in points.fields if field.startswith("se/")):
        count = float(points[f"se/{name}/channels"].sum())
        mean = float(points[f"se/{name}/sum"].sum()) / count
        variance = float(points[f"se/{name}/squares"].sum()) / count - mean ** 2
        stats[name] = {"channels": int(points[f"se/{name}/channels"][0]), "mean": mean,
                       "std": math.sqrt(max(variance, 0.0)), "min": float(points[f"se/{name}/min"].min()),
                       "max": float(points[f"se/{name}/max"].max()),
                       "suppressed_fraction": float(points[f"se/{name}/below"].sum()) / count}
    return stats


def _save_gallery(path: Path, gallery: Records, class_names: list[str]) -> None:
    """The gallery of the chosen explained points (image, mask, map, overlay, stage maps, adversarial map)."""
    if not len(gallery):
        figures.save_gallery(path, torch.zeros(0, 3, 8, 8), torch.zeros(0, 8, 8), [])
        return
    names = gallery.meta.get("names") or [str(int(i)) for i in gallery.index]
    labels, explained = gallery["target"], gallery["explained"]
    titles = [f"#{names[i]} " + (f"y={class_names[int(labels[i])]} " if not labels.is_floating_point() else "")
              + f"cam={class_names[int(explained[i])]}" for i in range(len(gallery))]
    stages = {k.removeprefix("stage/"): v for k, v in gallery.fields.items() if k.startswith("stage/")}
    figures.save_gallery(path, gallery["image"], gallery["map"], titles, masks=gallery.get("mask"),
                         maps_adv=gallery.get("map_adversarial"), stage_maps=stages or None)


#: Metrics that a degenerate model (trixai.xai.metrics.degeneracy) makes meaningless.
DEGENERACY_SENSITIVE = ("deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence", "pointing_game",
                        "energy_pointing_game", "topk_iou")


def _uninformative(metrics: Mapping, degenerate: Mapping) -> dict | None:
    """The faithfulness and localisation metrics marked uninformative, with the reason, for a degenerate model."""
    if not degenerate["degenerate"]:
        return None
    keys = [k for k in metrics if k.startswith(DEGENERACY_SENSITIVE) and not k.endswith("_chance")]
    return {"metrics": keys, "reason": f"degenerate model: {degenerate['reason']}"}
