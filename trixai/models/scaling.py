"""EfficientNet compound scaling (Tan & Le 2019): depth α^φ, width β^φ, resolution γ^φ, for any φ.

The network is built by timm's EfficientNet builder (``decode_arch_def`` + ``round_channels``):
channels round to multiples of 8 (never more than 10% down), stage repeats are ``ceil(depth · repeats)``.
Importing this module (``trixai.models`` does) registers the timm model ``efficientnet_phi`` so that
``create_model("efficientnet_phi", num_classes, phi=1.5, se=False)`` works like any timm name.
:mod:`trixai.resolvers` exposes :func:`phi_resolution` and :func:`sweep_resolution` to the shipped configs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from timm.layers import make_divisible
from timm.models import register_model
from timm.models._efficientnet_builder import decode_arch_def, resolve_act_layer, resolve_bn_args, round_channels
from timm.models._registry import generate_default_cfgs
from timm.models.efficientnet import EfficientNet, _create_effnet
from torch import nn

from trixai.core.errors import TrixaiError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Stage:
    """One EfficientNet stage: block type (``ds`` depthwise-separable, ``ir`` inverted residual), expansion,
    kernel, stride, output channels and repeats."""

    block: str
    expand: int
    kernel: int
    stride: int
    channels: int
    repeats: int


#: EfficientNet-B0 stages (Tan & Le 2019, Table 1); stem 32 and head 1280 channels, SE ratio 0.25.
B0_STAGES: tuple[Stage, ...] = (
    Stage("ds", 1, 3, 1, 16, 1),
    Stage("ir", 6, 3, 2, 24, 2),
    Stage("ir", 6, 5, 2, 40, 2),
    Stage("ir", 6, 3, 2, 80, 3),
    Stage("ir", 6, 5, 1, 112, 3),
    Stage("ir", 6, 5, 2, 192, 4),
    Stage("ir", 6, 3, 1, 320, 1),
)
B0_STEM = 32
B0_HEAD = 1280
SE_RATIO = 0.25
CHANNEL_DIVISOR = 8


@dataclass(frozen=True)
class Published:
    """A published EfficientNet variant: width and depth multipliers, resolution, dropout."""

    width: float
    depth: float
    resolution: int
    dropout: float


PUBLISHED: dict[str, Published] = {
    "b0": Published(1.0, 1.0, 224, 0.2),
    "b1": Published(1.0, 1.1, 240, 0.2),
    "b2": Published(1.1, 1.2, 260, 0.3),
    "b3": Published(1.2, 1.4, 300, 0.3),
    "b4": Published(1.4, 1.8, 380, 0.4),
    "b5": Published(1.6, 2.2, 456, 0.4),
    "b6": Published(1.8, 2.6, 528, 0.5),
    "b7": Published(2.0, 3.1, 600, 0.5),
}


@dataclass(frozen=True)
class Multipliers:
    """Depth, width and resolution multipliers for one φ, the rounded resolution and the FLOP factor."""

    phi: float
    depth: float
    width: float
    resolution_mult: float
    resolution: int
    flops_factor: float


@dataclass(frozen=True)
class CompoundScaling:
    """The compound-scaling rule. ``flops_factor(φ) = (α·β²·γ²)^φ`` (≈ 1.92^φ with the defaults).

    ``resolution(φ)`` is ``base_resolution · γ^φ`` rounded to the nearest multiple of ``resolution_divisor``.
    """

    alpha: float = 1.2
    beta: float = 1.1
    gamma: float = 1.15
    base_resolution: int = 224
    resolution_divisor: int = 8

    def __post_init__(self) -> None:
        for key in ("alpha", "beta", "gamma"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 1.0):
                raise TrixaiError(f"model.{key}={value!r}: compound-scaling coefficients must be finite and >= 1")
        if self.base_resolution < 8 or self.resolution_divisor < 1:
            raise TrixaiError(
                f"model.base_resolution={self.base_resolution} / resolution_divisor={self.resolution_divisor}: "
                "need base_resolution >= 8 and resolution_divisor >= 1"
            )

    def multipliers(self, phi: float) -> Multipliers:
        phi = check_phi(phi)
        resolution_mult = self.gamma**phi
        divisor = self.resolution_divisor
        resolution = max(divisor, int(round(self.base_resolution * resolution_mult / divisor)) * divisor)
        return Multipliers(
            phi=phi,
            depth=self.alpha**phi,
            width=self.beta**phi,
            resolution_mult=resolution_mult,
            resolution=resolution,
            flops_factor=(self.alpha * self.beta**2 * self.gamma**2) ** phi,
        )


def check_phi(phi: float) -> float:
    """``phi`` as a float, or a :class:`TrixaiError` naming ``model.phi`` and the allowed range."""
    try:
        value = float(phi)
    except (TypeError, ValueError):
        raise TrixaiError(f"model.phi={phi!r} is not a number; use e.g. model.phi=1 or model.phi=1.5") from None
    if not math.isfinite(value) or not -4.0 <= value <= 8.0:
        raise TrixaiError(f"model.phi={phi!r}: allowed is a finite number in [-4, 8]")
    return value


def scaled_stages(width: float, depth: float) -> list[Stage]:
    """B0's stages with channels rounded like timm (multiple of 8, at most 10% down) and ceil'd repeats."""
    return [
        Stage(s.block, s.expand, s.kernel, s.stride, make_divisible(s.channels * width, CHANNEL_DIVISOR),
              int(math.ceil(s.repeats * depth)))
        for s in B0_STAGES
    ]


def arch_def(*, se: bool = True) -> list[list[str]]:
    """B0's stages in timm's block-string notation, with or without squeeze-and-excitation."""
    suffix = f"_se{SE_RATIO}" if se else ""
    return [[f"{s.block}_r{s.repeats}_k{s.kernel}_s{s.stride}_e{s.expand}_c{s.channels}{suffix}"] for s in B0_STAGES]


def build_efficientnet(variant: str, width: float, depth: float, *, se: bool = True, pretrained: bool = False,
                       **kwargs) -> EfficientNet:
    """An EfficientNet with B0's stages scaled by ``width``/``depth`` through timm's builder (swish, BN).

    ``se=False`` decodes the same stages without squeeze-and-excitation blocks (the SE ablation).
    """
    if not (width > 0 and depth > 0):
        raise TrixaiError(f"width={width} and depth={depth} multipliers must be positive")
    round_chs_fn = partial(round_channels, multiplier=width, divisor=CHANNEL_DIVISOR)
    return _create_effnet(
        variant, pretrained,
        block_args=decode_arch_def(arch_def(se=se), depth),
        num_features=round_chs_fn(B0_HEAD),
        stem_size=B0_STEM,
        round_chs_fn=round_chs_fn,
        act_layer=resolve_act_layer(kwargs, "swish"),
        norm_layer=kwargs.pop("norm_layer", None) or partial(nn.BatchNorm2d, **resolve_bn_args(kwargs)),
        **kwargs,
    )


def phi_multipliers(phi: float = 0.0, variant: str | None = None, *, alpha: float = 1.2, beta: float = 1.1,
                    gamma: float = 1.15, base_resolution: int = 224) -> tuple[float, float, int]:
    """(width, depth, resolution) for a published ``variant`` ("b0".."b7") or else for ``phi`` by the rule."""
    if variant is not None:
        if variant not in PUBLISHED:
            raise TrixaiError(f"model.variant={variant!r} is not one of {list(PUBLISHED)} (or null to use model.phi)")
        published = PUBLISHED[variant]
        return published.width, published.depth, published.resolution
    scaled = CompoundScaling(alpha, beta, gamma, base_resolution).multipliers(phi)
    return scaled.width, scaled.depth, scaled.resolution


def phi_resolution(phi: float = 0.0, variant: str | None = None, base_resolution: int = 224, alpha: float = 1.2,
                   beta: float = 1.1, gamma: float = 1.15) -> int:
    """Input resolution for ``efficientnet_phi`` (used by ``conf/model/efficientnet_phi.yaml``)."""
    return phi_multipliers(phi, variant, alpha=alpha, beta=beta, gamma=gamma, base_resolution=base_resolution)[2]


default_cfgs = generate_default_cfgs({
    "efficientnet_phi": {
        "input_size": (3, 224, 224), "pool_size": (7, 7), "interpolation": "bicubic", "crop_pct": 0.875,
        "mean": IMAGENET_MEAN, "std": IMAGENET_STD, "num_classes": 1000,
        "first_conv": "conv_stem", "classifier": "classifier",
    },
})


@register_model
def efficientnet_phi(pretrained: bool = False, *, phi: float = 0.0, se: bool = True, variant: str | None = None,
                     alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15, base_resolution: int = 224,
                     **kwargs) -> EfficientNet:
    """EfficientNet at compound coefficient ``phi`` (or a published ``variant``), optionally without SE.

    No hub weights exist for arbitrary φ: ``pretrained`` needs a local file
    (``pretrained_cfg_overlay={"file": PATH}``, which ``model.weights=PATH`` passes).
    """
    if pretrained and "file" not in (kwargs.get("pretrained_cfg_overlay") or {}):
        raise TrixaiError(
            "efficientnet_phi has no hub weights; train from scratch with model.pretrained=false or pass a local "
            "file built for the same phi with model.weights=/path/to/weights.safetensors"
        )
    width, depth, resolution = phi_multipliers(phi, variant, alpha=alpha, beta=beta, gamma=gamma,
                                               base_resolution=base_resolution)
    model = build_efficientnet("efficientnet_phi", width, depth, se=bool(se), pretrained=pretrained, **kwargs)
    in_chans = kwargs.get("in_chans", 3)
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (in_chans, resolution, resolution),
                            "pool_size": (math.ceil(resolution / 32),) * 2}
    model.default_cfg = model.pretrained_cfg
    return model


def sweep_resolution(name: str, phi: float = 0.0, variant: str | None = None, quick: bool = False,
                     quick_base_resolution: int = 48) -> int:
    """Input resolution of a model in a scaling sweep, by model name.

    Full size: the published resolution for ``efficientnet_b0``..``b7``, the compound-scaling rule for
    ``efficientnet_phi`` (``phi``/``variant``), 224 otherwise. ``quick``: the full resolution times
    ``quick_base_resolution / 224`` rounded to a multiple of 4, so quick sweeps keep the ratios between models.
    """
    if name == "efficientnet_phi":
        full = phi_resolution(phi, variant)
    elif name.startswith("efficientnet_") and name.removeprefix("efficientnet_") in PUBLISHED:
        full = PUBLISHED[name.removeprefix("efficientnet_")].resolution
    else:
        full = 224
    if not quick:
        return full
    return max(8, int(round(full * quick_base_resolution / 224 / 4)) * 4)
