"""The metric catalogue: one entry per reported metric (key, label, better direction, order, reading, citation).

Every renderer (console tables, markdown reports, report.html) takes labels, order and the better direction from
here, so a metric is named and ordered the same everywhere. Keys are the report keys (``balanced_accuracy``); the
test metrics of ``metrics.json`` use short aliases (``bal_acc``), which :func:`metric` resolves too. A key with a
variant suffix (``deletion_auc_rise``) finds its family's entry by prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """A reported metric: ``better`` is ``higher``, ``lower`` or ``""`` (a reference value, no direction)."""

    key: str
    label: str
    better: str = "higher"
    reading: str = ""
    citation: str = ""
    aliases: tuple[str, ...] = ()


_ENTRIES = (
    # classification, clean and under attack or corruption
    Metric("accuracy", "accuracy", reading="top-1 accuracy (multi-label: exact match, every label right)",
           aliases=("acc",)),
    Metric("top2", "top-2 accuracy", reading="the label among the two highest scores"),
    Metric("balanced_accuracy", "balanced accuracy", reading="mean of the per-class recalls", aliases=("bal_acc",)),
    Metric("label_accuracy_macro", "label accuracy", reading="mean over labels of the per-label accuracy"),
    Metric("macro_f1", "macro F1", reading="mean over classes/labels of F1", aliases=("f1",)),
    Metric("macro_auroc", "macro AUROC", reading="one-vs-rest AUROC averaged over the defined classes/labels",
           citation="Hanley & McNeil 1982", aliases=("auroc",)),
    Metric("macro_auprc", "macro AUPRC", reading="average precision averaged over the defined labels",
           aliases=("auprc",)),
    Metric("attack_success_rate", "success rate", "lower",
           reading="share of the initially correct points the attack makes wrong"),
    Metric("mean_margin", "mean margin", reading="mean logit margin of the true class (multi-label: signed, min over labels)"),
    Metric("ece", "ECE", "lower", reading="expected calibration error: |accuracy - confidence| over 15 equal-width "
           "confidence bins, weighted by the bins' shares (multi-label: mean over labels)", citation="Guo et al. 2017"),
    Metric("aurc", "AURC", "lower", reading="area under the risk-coverage curve of selective prediction by confidence",
           citation="Geifman & El-Yaniv 2017"),
    Metric("cam_ssim", "CAM SSIM clean vs attacked", reading="SSIM of the Grad-CAM maps of clean and attacked images"),
    # corruptions
    Metric("error", "error", "lower", reading="1 − accuracy"),
    Metric("balanced_error", "balanced error", "lower", reading="1 − balanced accuracy", citation="Di Salvo et al. 2024"),
    Metric("mean_accuracy", "mean accuracy", reading="mean over severities (and corruptions)"),
    Metric("mean_error", "mean error", "lower", reading="mean over severities (and corruptions) of 1 − accuracy"),
    Metric("relative_error", "rel. error", "lower", reading="mean over severities of E − E_clean"),
    Metric("mean_balanced_error", "balanced error", "lower", reading="mean over severities of 1 − balanced accuracy"),
    Metric("relative_balanced_error", "rel. balanced error", "lower", reading="mean balanced error − clean balanced error"),
    Metric("ce", "CE", "lower", reading="Σ_s E / Σ_s E_baseline", citation="Hendrycks & Dietterich 2019"),
    Metric("relative_ce", "rel. CE", "lower", reading="Σ_s (E − E_clean) / Σ_s (E_base − E_base,clean)",
           citation="Hendrycks & Dietterich 2019"),
    Metric("be", "BE", "lower", reading="mean_s B / mean_s B_baseline", citation="Di Salvo et al. 2024"),
    Metric("rbe", "rBE", "lower", reading="(mean_s B − B_clean) / (mean_s B_base − B_base,clean)",
           citation="Di Salvo et al. 2024"),
    Metric("mce", "mCE", "lower", reading="mean over corruptions of CE", citation="Hendrycks & Dietterich 2019"),
    Metric("relative_mce", "relative mCE", "lower", reading="mean over corruptions of the relative CE",
           citation="Hendrycks & Dietterich 2019"),
    Metric("auroc_mean", "mean AUROC", reading="mean over severities of macro AUROC"),
    Metric("balanced_accuracy_mean", "mean balanced accuracy", reading="mean over severities of balanced accuracy"),
    # explanations
    Metric("deletion_auc", "deletion AUC", "lower",
           reading="faithfulness: confidence left while the most salient pixels are removed",
           citation="Petsiuk et al. 2018"),
    Metric("insertion_auc", "insertion AUC",
           reading="faithfulness: confidence regained while the most salient pixels are restored",
           citation="Petsiuk et al. 2018"),
    Metric("average_drop", "average drop", "lower",
           reading="faithfulness: relative confidence lost on the map-masked image", citation="Chattopadhyay et al. 2018"),
    Metric("increase_in_confidence", "increase in confidence",
           reading="faithfulness: share of images more confident on the map-masked image",
           citation="Chattopadhyay et al. 2018"),
    Metric("pointing_game_chance", "pointing game, chance", "",
           reading="chance level of the pointing game (the grown mask's area)"),
    Metric("pointing_game", "pointing game", reading="localisation: the map's peak falls on the mask",
           citation="Zhang et al. 2016"),
    Metric("energy_pointing_game", "energy pointing game", reading="localisation: share of map energy inside the mask",
           citation="Wang et al. 2020"),
    Metric("topk_iou", "top-k IoU", reading="localisation: IoU of the top-k % pixels with the mask"),
    Metric("mask_area_fraction", "mask area", "", reading="chance level of the energy pointing game (mask area / image)"),
    Metric("stability_ssim", "stability SSIM", reading="stability: SSIM of the maps of clean and attacked images"),
    Metric("stability_spearman", "stability Spearman",
           reading="stability: rank correlation of the maps of clean and attacked images"),
    Metric("noise_ssim", "noise SSIM", reading="stability: SSIM under random sign noise of the same size"),
    Metric("noise_spearman", "noise Spearman", reading="stability: rank correlation under random sign noise"),
    Metric("corruption_ssim", "corruption SSIM", reading="stability: SSIM of the maps of clean and corrupted images"),
    Metric("corruption_spearman", "corruption Spearman",
           reading="stability: rank correlation of the maps of clean and corrupted images"),
    Metric("pointing_game_per_sample", "pointing game, per sample",
           reading="localisation: the mean over samples of the pointing-game hits (a variant)"),
    Metric("manipulation_topk_intersection", "top-k intersection under map manipulation",
           reading="explanation robustness: share of the clean map's top-k pixels still in the map of the image "
           "manipulated to move it (prediction kept)", citation="Ghorbani, Abid & Zou 2019"),
    Metric("manipulation_ssim", "map SSIM under manipulation",
           reading="explanation robustness: SSIM of the clean and manipulated maps", citation="Ghorbani et al. 2019"),
    Metric("manipulation_spearman", "map Spearman under manipulation",
           reading="explanation robustness: rank correlation of the clean and manipulated maps",
           citation="Ghorbani et al. 2019"),
    Metric("manipulation_kept", "prediction kept (untargeted)", "",
           reading="share of points whose predicted class the untargeted manipulation kept"),
    Metric("targeted_mse_before", "distance to the target map, before", "",
           reading="mean squared difference of the sum-1 map and the target map (Dombrowski et al. 2019)"),
    Metric("targeted_mse_after", "distance to the target map, after", "",
           reading="the same after the targeted manipulation: lower means the map was moved"),
    Metric("targeted_ssim_before", "SSIM to the target map, before", ""),
    Metric("targeted_ssim_after", "SSIM to the target map, after", ""),
    Metric("targeted_output_change", "output change (targeted)", "lower",
           reading="L2 norm of the change of the softmax output"),
    Metric("targeted_kept", "prediction kept (targeted)", "",
           reading="share of points whose predicted class the targeted manipulation kept"),
    Metric("sanity_final_ssim", "sanity SSIM", "lower", reading="sanity: similarity to the fully randomised model's maps",
           citation="Adebayo et al. 2018"),
    Metric("sanity_final_spearman", "sanity Spearman", "lower",
           reading="sanity: rank correlation with the fully randomised model's maps", citation="Adebayo et al. 2018"),
)

CATALOGUE: dict[str, Metric] = {m.key: m for m in _ENTRIES}
_BY_NAME: dict[str, Metric] = {**CATALOGUE, **{a: m for m in _ENTRIES for a in m.aliases}}
#: Prefix order for variant keys: longer keys first so ``pointing_game_chance`` is not read as ``pointing_game``.
_PREFIXES = sorted(_BY_NAME, key=len, reverse=True)


def metric(key: str) -> Metric | None:
    """The entry of ``key``, an alias (``bal_acc``) or a variant (``deletion_auc_rise``); None when unknown."""
    found = _BY_NAME.get(key)
    if found is not None:
        return found
    prefix = next((p for p in _PREFIXES if key.startswith(f"{p}_")), None)
    return None if prefix is None else _BY_NAME[prefix]


def label(key: str) -> str:
    """The display label of ``key`` (the key itself when unknown; a variant keeps its suffix)."""
    entry = metric(key)
    if entry is None:
        return key
    if key in _BY_NAME:
        return entry.label
    suffix = key.removeprefix(f"{next(p for p in _PREFIXES if key.startswith(f'{p}_'))}_")
    return f"{entry.label} ({suffix})"


def better(key: str) -> str:
    entry = metric(key)
    return "" if entry is None else entry.better


def order(keys: Iterable[str]) -> list[str]:
    """``keys`` in catalogue order (aliases by their entry's place); unknown keys after, alphabetically."""
    position = {m.key: i for i, m in enumerate(_ENTRIES)}

    def rank(key: str) -> tuple[int, str]:
        entry = metric(key)
        return (position[entry.key] if entry is not None else len(position), key)

    return sorted(keys, key=rank)
