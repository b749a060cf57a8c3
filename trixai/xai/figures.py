"""Figures for explanation reports: heatmap overlays, the gallery, deletion/insertion curves, SE gate plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def _image(x: Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) float for display (grayscale replicated)."""
    array = x.detach().float().cpu().clamp(0, 1).numpy().transpose(1, 2, 0)
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array


def overlay(image: Tensor, cam: Tensor, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8: the image blended with the ``jet``-coloured map (map in [0, 1])."""
    heat = matplotlib.colormaps["jet"](cam.detach().float().cpu().clamp(0, 1).numpy())[..., :3]
    blended = (1 - alpha) * _image(image) + alpha * heat
    return np.round(np.clip(blended, 0, 1) * 255).astype(np.uint8)


def save_overlay(path: str | Path, image: Tensor, cam: Tensor, title: str) -> None:
    """Image | heatmap overlay side by side with a title (prediction and confidence)."""
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.3))
    axes[0].imshow(_image(image))
    axes[1].imshow(overlay(image, cam))
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_gallery(path: str | Path, images: Tensor, maps: Tensor, titles: Sequence[str], *,
                 masks: Tensor | None = None, maps_adv: Tensor | None = None, images_adv: Tensor | None = None,
                 stage_maps: Mapping[str, Tensor] | None = None) -> None:
    """One row per sample: image, adversarial image (if any), mask (if any), map, overlay, each stage's map of a
    multi-scale map (if any), the adversarial image's map (if any)."""
    columns = ["image"] + (["adversarial image"] if images_adv is not None else [])
    columns += (["mask"] if masks is not None else []) + ["CAM", "overlay"]
    columns += [f"CAM {stage}" for stage in (stage_maps or {})]
    columns += ["adversarial CAM"] if maps_adv is not None else []
    rows = len(images)
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.1 * len(columns), 2.1 * rows + 0.3), squeeze=False)
    for i in range(rows):
        panels = {"image": _image(images[i]), "CAM": maps[i].cpu().numpy(), "overlay": overlay(images[i], maps[i])}
        if images_adv is not None:
            panels["adversarial image"] = _image(images_adv[i])
        if masks is not None:
            panels["mask"] = masks[i].float().cpu().numpy()
        for stage, stage_map in (stage_maps or {}).items():
            panels[f"CAM {stage}"] = stage_map[i].cpu().numpy()
        if maps_adv is not None:
            panels["adversarial CAM"] = maps_adv[i].cpu().numpy()
        for j, column in enumerate(columns):
            ax = axes[i, j]
            kwargs = {"cmap": "jet", "vmin": 0, "vmax": 1} if "CAM" in column else {}
            ax.imshow(panels[column], **({"cmap": "gray", "vmin": 0, "vmax": 1} if column == "mask" else kwargs))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column, fontsize=9)
            if j == 0:
                ax.set_ylabel(titles[i], fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def save_curves(path: str | Path, curves: Mapping[str, Mapping[str, Tensor]]) -> None:
    """Mean deletion and insertion curves per baseline (``curves[baseline][kind]`` is (N, steps + 1))."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, kind in zip(axes, ("deletion", "insertion"), strict=True):
        for baseline, pair in curves.items():
            curve = pair[f"{kind}_curve"].float().mean(dim=0).cpu().numpy()
            fractions = np.linspace(0, 1, len(curve))
            auc = float(pair[f"{kind}_auc"].float().mean())
            ax.plot(fractions, curve, label=f"{baseline} (AUC {auc:.3f})")
        ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "inserted"))
        ax.set_ylabel("target probability")
        ax.set_title(kind)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_se_gates(path: str | Path, stats: Mapping[str, Mapping[str, float]]) -> None:
    """Per-SE-module gate mean +- std and range, in network order."""
    names = list(stats)
    mean = np.array([stats[n]["mean"] for n in names])
    std = np.array([stats[n]["std"] for n in names])
    low = np.array([stats[n]["min"] for n in names])
    high = np.array([stats[n]["max"] for n in names])
    fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(names) + 2), 3.5))
    x = np.arange(len(names))
    ax.fill_between(x, low, high, alpha=0.2, label="min..max")
    ax.errorbar(x, mean, yerr=std, fmt="o-", label="mean +- std")
    ax.set_xticks(x, [n.replace("backbone.blocks.", "b").replace(".se", "") for n in names], rotation=60, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("SE gate value")
    ax.set_title("Squeeze-and-excitation channel attention per block")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
