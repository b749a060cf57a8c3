"""Faithfulness (Petsiuk et al. 2018, RISE; Chattopadhyay et al. 2018, Grad-CAM++).

Deletion replaces the most salient pixels first by a substrate and integrates the target probability over the
removed fraction (lower = more faithful); insertion starts from a substrate and restores the most salient pixels
first (higher = more faithful). A :class:`Protocol` names the substrates and the step size. The default, ``rise``,
is the published one: deletion to the model's normalised zero (the mean colour), insertion from a blurred copy
(RISE's 11 x 11 kernel, sigma 5, zero-padded in the normalised space), one image row of W pixels per step, AUC by
the trapezoid rule over the normalised step axis. Every step of a sample comes from one ranking of its pixels
(a single argsort); step images are composed on the fly and run through the model in batches.

Images are in [0, 1]; ``mean`` is the per-channel colour the model's input normalisation maps to zero (trixai
models normalise inside ``forward``, see :func:`input_mean`), so "zero in the normalised space" is ``mean`` here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval, memory_format

SUBSTRATES = ("mean", "black", "blur")


@dataclass(frozen=True)
class Protocol:
    """A deletion/insertion variant: the substrates, the blur and the step size.

    ``deletion``/``insertion``: ``mean`` (the normalised zero), ``black`` (0 in [0, 1]) or ``blur``.
    ``blur``: ``rise`` (RISE's kernel: scipy's Gaussian filter of a delta in a ``kernel`` x ``kernel`` window,
    applied with zero padding in the normalised space) or ``reflect`` (a sampled Gaussian of radius
    ceil(3 sigma), reflect padding). ``steps``: None = one image row (W pixels) per step, else that many
    equal steps.
    """

    name: str
    deletion: str
    insertion: str
    blur: str = "rise"
    kernel: int = 11
    sigma: float = 5.0
    steps: int | None = None

    def settings(self) -> dict:
        return asdict(self)


PROTOCOLS = {
    "rise": Protocol("rise", deletion="mean", insertion="blur"),
    # trixai 0.1's variants: both paths to/from the same substrate, 20 steps
    "blur": Protocol("blur", deletion="blur", insertion="blur", blur="reflect", kernel=31, sigma=5.0, steps=20),
    "constant": Protocol("constant", deletion="black", insertion="black", steps=20),
}


def protocol(spec: str | Protocol, *, steps: int | None = None) -> Protocol:
    """The named protocol (``rise``, ``blur``, ``constant``), optionally with ``steps`` overridden."""
    if isinstance(spec, Protocol):
        chosen = spec
    elif spec in PROTOCOLS:
        chosen = PROTOCOLS[spec]
    else:
        raise TrixaiError(f"faithfulness protocol {spec!r} is not one of {list(PROTOCOLS)}")
    if steps is not None:
        if steps < 1:
            raise TrixaiError(f"faithfulness steps={steps} must be >= 1")
        chosen = Protocol(**{**asdict(chosen), "steps": int(steps)})
    return chosen


def input_mean(model: nn.Module, channels: int) -> Tensor:
    """The colour (C,) in [0, 1] that the model's input normalisation maps to zero: its ``mean`` buffer, or 0
    for a model without one (its input space is then its normalised space)."""
    mean = getattr(model, "mean", None)
    if mean is None:
        return torch.zeros(channels)
    return torch.as_tensor(mean, dtype=torch.float32).flatten().detach().cpu()


def class_probability(logits: Tensor, targets: Tensor, task: str) -> Tensor:
    """Probability of each sample's target: softmax (multiclass) or sigmoid of that label (multi-label)."""
    chosen = logits.gather(1, targets[:, None]).squeeze(1)
    if task == "multilabel":
        return torch.sigmoid(chosen)
    return F.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1)


def rise_kernel(size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's 1-D blur taps (the 2-D kernel is their outer product): scipy.ndimage.gaussian_filter (truncate 4,
    ``reflect`` boundary) of a delta in the middle of ``size`` samples, i.e. the Gaussian folded into the window."""
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    position = (torch.arange(size)[:, None] + offsets.long()[None, :]) % (2 * size)
    position = torch.where(position >= size, 2 * size - 1 - position, position)  # half-sample reflection
    return (weights[None, :] * (position == size // 2)).sum(dim=1)


def sampled_kernel(sigma: float, radius: int) -> Tensor:
    """Normalised Gaussian taps exp(-d^2 / 2 sigma^2) for d = -radius..radius."""
    coords = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (coords / sigma) ** 2)
    return kernel / kernel.sum()


def _separable(x: Tensor, taps: Tensor) -> Tensor:
    c, taps = x.shape[1], taps.to(x.device, x.dtype)
    out = F.conv2d(x, taps.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, taps.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable sampled Gaussian blur (radius ceil(3 sigma), capped below the image size; reflect padding)."""
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1))
    return _separable(F.pad(x, (radius,) * 4, mode="reflect"), sampled_kernel(sigma, radius))


def rise_blur(x: Tensor, mean: Tensor, size: int = 11, sigma: float = 5.0) -> Tensor:
    """RISE's blur: :func:`rise_kernel` applied with zero padding in the normalised space (= ``mean`` here)."""
    shift = mean.to(x.device, x.dtype).view(1, -1, 1, 1)
    return shift + _separable(F.pad(x - shift, (size // 2,) * 4), rise_kernel(size, sigma))


def substrate(x: Tensor, kind: str, chosen: Protocol, mean: Tensor) -> Tensor:
    """The image that the ``kind`` substrate puts in place of removed pixels."""
    if kind == "mean":
        return mean.to(x.device, x.dtype).view(1, -1, 1, 1).expand_as(x)
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "blur":
        return rise_blur(x, mean, chosen.kernel, chosen.sigma) if chosen.blur == "rise" else gaussian_blur(x, chosen.sigma)
    raise TrixaiError(f"faithfulness substrate {kind!r} is not one of {list(SUBSTRATES)}")


def pixel_ranks(maps: Tensor) -> Tensor:
    """(N, H * W) rank of each pixel by descending saliency: one stable argsort per sample (ties keep raster order)."""
    n, h, w = maps.shape
    order = maps.flatten(1).argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=maps.device).expand(n, -1))
    return rank


def step_counts(h: int, w: int, steps: int | None) -> Tensor:
    """Pixels removed/restored after each step: k * W for k = 0..ceil(H W / W) (capped at H W), or
    round(k / steps * H W) for ``steps`` equal steps."""
    if steps is None:
        n_steps = -(-h * w // w)
        return (torch.arange(n_steps + 1) * w).clamp_max(h * w)
    return torch.round(torch.arange(steps + 1, dtype=torch.float64) / steps * (h * w)).long()


def step_masks(maps: Tensor, steps: int | None) -> Tensor:
    """(N, K + 1, H, W) boolean masks of the pixels changed after each step (for inspection; the metric itself
    composes them batch by batch from :func:`pixel_ranks`)."""
    counts = step_counts(*maps.shape[-2:], steps).to(maps.device)
    return (pixel_ranks(maps)[:, None, :] < counts[None, :, None]).view(maps.shape[0], len(counts), *maps.shape[-2:])


def _path(model: nn.Module, start: Tensor, end: Tensor, ranks: Tensor, counts: Tensor, targets: Tensor, task: str,
          batch_size: int, layout: torch.memory_format) -> Tensor:
    """(N, K + 1) target probabilities of ``start`` with its ``counts[k]`` top-ranked pixels taken from ``end``."""
    n, k = start.shape[0], counts.numel()
    h, w = start.shape[-2:]
    probs = torch.empty(n * k, device=start.device)
    for begin in range(0, n * k, batch_size):
        rows = torch.arange(begin, min(begin + batch_size, n * k), device=start.device)
        sample, step = rows // k, rows % k
        m = (ranks[sample] < counts[step, None]).view(-1, 1, h, w).to(start.dtype)
        images = (start[sample] * (1 - m) + end[sample] * m).contiguous(memory_format=layout)
        probs[rows] = class_probability(model(images), targets[sample], task).float()
    return probs.view(n, k)


def trapezoid_auc(curve: Tensor) -> Tensor:
    """Area under (N, K + 1) curves sampled at the normalised steps 0, 1/K, ..., 1 (trapezoid rule)."""
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


@torch.no_grad()
def deletion_insertion(
    model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, *, variant: str | Protocol = "rise",
    steps: int | None = None, mean: Tensor | Sequence[float] | None = None, task: str = "multiclass",
    batch_size: int = 256, channels_last: bool = True,
) -> dict[str, Tensor]:
    """Deletion and insertion curves (N, K + 1) and per-sample AUCs (N,) for saliency ``maps`` (N, H, W).

    ``variant``: a :data:`PROTOCOLS` name or a :class:`Protocol`; ``steps`` overrides its step count.
    ``mean``: the normalised zero in [0, 1] (default: :func:`input_mean` of ``model``). ``channels_last``: run the
    step images and the model in that memory format (the model's layout is restored afterwards).
    """
    if maps.shape != (x.shape[0], *x.shape[-2:]):
        raise TrixaiError(f"maps {tuple(maps.shape)} must be (N, H, W) at the image size {tuple(x.shape)}")
    chosen = protocol(variant, steps=steps)
    mean = input_mean(model, x.shape[1]) if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
    if mean.numel() != x.shape[1]:
        raise TrixaiError(f"faithfulness mean has {mean.numel()} values; the images have {x.shape[1]} channels")
    ranks = pixel_ranks(maps)
    counts = step_counts(*x.shape[-2:], chosen.steps).to(x.device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    with frozen_eval(model), memory_format(model, channels_last), torch.no_grad():
        deleted = substrate(x, chosen.deletion, chosen, mean)
        inserted = deleted if chosen.insertion == chosen.deletion else substrate(x, chosen.insertion, chosen, mean)
        deletion = _path(model, x, deleted, ranks, counts, targets, task, batch_size, layout)
        insertion = _path(model, inserted, x, ranks, counts, targets, task, batch_size, layout)
    return {"deletion_curve": deletion, "insertion_curve": insertion,
            "deletion_auc": trapezoid_auc(deletion), "insertion_auc": trapezoid_auc(insertion)}


EXPLANATION_SPACES = ("normalised", "raw")


@torch.no_grad()
def confidence_change(model: nn.Module, x: Tensor, maps: Tensor, targets: Tensor, *, task: str = "multiclass",
                      space: str = "normalised", mean: Tensor | Sequence[float] | None = None) -> dict[str, Tensor]:
    """Per-sample drop and increase in confidence (Grad-CAM++) for the explanation map E = image ⊙ map.

    ``space="normalised"`` (published): the product in the model's normalised space, i.e. ``mean + (x - mean) *
    map`` in [0, 1]; ``raw``: ``x * map`` in [0, 1] (trixai 0.1). ``drop = max(0, p(x) - p(E)) / p(x)`` and
    ``increase = 1[p(E) > p(x)]``; their means are the paper's Average Drop and Increase in Confidence (/ 100).
    """
    if space not in EXPLANATION_SPACES:
        raise TrixaiError(f"confidence space {space!r} is not one of {list(EXPLANATION_SPACES)}")
    mean = input_mean(model, x.shape[1]) if mean is None else torch.as_tensor(mean, dtype=torch.float32).flatten()
    shift = mean.to(x.device, x.dtype).view(1, -1, 1, 1) if space == "normalised" else torch.zeros_like(x[:1])
    with frozen_eval(model), torch.no_grad():
        full = class_probability(model(x), targets, task)
        masked = class_probability(model(shift + (x - shift) * maps.unsqueeze(1)), targets, task)
    return {"average_drop": (full - masked).clamp_min(0) / full.clamp_min(1e-12),
            "increase_in_confidence": (masked > full).float()}
