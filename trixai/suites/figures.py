"""Figures a suite draws from tensors it holds (the report-derived charts are trixai.render's): the corruption
gallery, one image under every corruption at the gallery severities."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

GALLERY = Path("figures") / "corruption_gallery.png"


def save_corruption_gallery(clean: Tensor, corrupted: dict[str, dict[int, Tensor]], path: Path) -> Path:
    """One row per corruption: the clean image, then the image at each gallery severity."""
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
