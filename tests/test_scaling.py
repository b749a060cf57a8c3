"""Compound scaling: multipliers, rounded widths/depths, B0-B3 equal timm's models, SE ablation, config resolvers."""

import math

import pytest
import timm
import torch
from omegaconf import OmegaConf
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.models.scaling import CompoundScaling, phi_resolution, scaled_stages
from trixai.resolvers import register

# Hand-computed: depth 1.2^phi, width 1.1^phi, resolution 224 * 1.15^phi to the nearest multiple of 8,
# FLOP factor (1.2 * 1.1^2 * 1.15^2)^phi = 1.92027^phi.
MULTIPLIERS = {
    0: (1.0, 1.0, 224, 1.0),
    1: (1.2, 1.1, 256, 1.92027),        # 257.6 -> 256
    2: (1.44, 1.21, 296, 3.6874368729),  # 296.24 -> 296
    3: (1.728, 1.331, 344, 7.0808744039),  # 340.676 -> 344
}
# Hand-computed with timm's rounding (nearest multiple of 8, bumped by 8 if more than 10% below c * w):
# stage output channels, stage repeats ceil(d * [1, 2, 2, 3, 3, 4, 1]), stem, head.
ARCH = {
    0: ([16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1], 32, 1280),
    1: ([16, 24, 48, 88, 120, 208, 352], [2, 3, 3, 4, 4, 5, 2], 32, 1408),
    2: ([24, 32, 48, 96, 136, 232, 384], [2, 3, 3, 5, 5, 6, 2], 40, 1552),
    3: ([24, 32, 56, 104, 152, 256, 424], [2, 4, 4, 6, 6, 7, 2], 40, 1704),
}


def _stage_channels(backbone: nn.Module) -> list[int]:
    return [[m for m in stage[-1].modules() if isinstance(m, nn.BatchNorm2d)][-1].num_features
            for stage in backbone.blocks]


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("phi", [0, 1, 2, 3])
def test_multipliers_match_hand_computed(phi):
    depth, width, resolution, flops = MULTIPLIERS[phi]
    m = CompoundScaling().multipliers(phi)
    assert m.depth == pytest.approx(depth, rel=1e-12)
    assert m.width == pytest.approx(width, rel=1e-12)
    assert m.resolution == resolution
    assert m.flops_factor == pytest.approx(flops, rel=1e-9)


@pytest.mark.parametrize("phi", [0, 1, 2, 3])
def test_rounded_widths_and_depths_match_hand_computed(phi):
    channels, repeats, stem, head = ARCH[phi]
    m = CompoundScaling().multipliers(phi)
    stages = scaled_stages(m.width, m.depth)
    assert [s.channels for s in stages] == channels
    assert [s.repeats for s in stages] == repeats
    backbone = timm.create_model("efficientnet_phi", phi=phi, num_classes=10)
    assert _stage_channels(backbone) == channels
    assert [len(stage) for stage in backbone.blocks] == repeats
    assert backbone.conv_stem.out_channels == stem
    assert backbone.conv_head.out_channels == head
    assert backbone.pretrained_cfg["input_size"] == (3, m.resolution, m.resolution)


def test_fractional_phi_builds_between_neighbours():
    model = create_model("efficientnet_phi", 7, phi=1.5, resolution=phi_resolution(1.5))
    assert phi_resolution(1.5) == 280  # 224 * 1.15^1.5 = 276.25 -> 280
    n1, n15, n2 = (_params(timm.create_model("efficientnet_phi", phi=p, num_classes=7)) for p in (1, 1.5, 2))
    assert n1 < _params(model) == n15 < n2
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 7)


def test_custom_coefficients():
    m = CompoundScaling(alpha=1.3, beta=1.05, gamma=1.0, base_resolution=32).multipliers(2)
    assert (m.depth, m.width, m.resolution) == (pytest.approx(1.69), pytest.approx(1.1025), 32)
    assert m.flops_factor == pytest.approx((1.3 * 1.05**2) ** 2)
    assert phi_resolution(1, base_resolution=32) == 40  # 36.8 -> 40


def test_config_resolvers_call_the_scaling_rule():
    register()
    register()  # idempotent
    cfg = OmegaConf.create({
        "phi": "${trixai.phi_resolution:1,null,32}",
        "full": "${trixai.sweep_resolution:efficientnet_b3}",
        "quick": "${trixai.sweep_resolution:efficientnet_b3,0,null,true,48}",
    })
    assert OmegaConf.to_container(cfg, resolve=True) == {"phi": 40, "full": 300, "quick": 64}


@pytest.mark.parametrize("variant", ["b0", "b1", "b2", "b3"])
def test_published_variants_equal_timm_reference(variant):
    ours = timm.create_model("efficientnet_phi", variant=variant)
    reference = timm.create_model(f"efficientnet_{variant}")
    assert _params(ours) == _params(reference)
    assert [len(s) for s in ours.blocks] == [len(s) for s in reference.blocks]
    assert _stage_channels(ours) == _stage_channels(reference)


@pytest.mark.parametrize("variant, published", [("b0", 5.3e6), ("b1", 7.8e6), ("b2", 9.2e6), ("b3", 12e6)])
def test_published_param_counts_within_10_percent(variant, published):
    assert math.isclose(_params(timm.create_model("efficientnet_phi", variant=variant)), published, rel_tol=0.10)


def test_se_ablation_removes_only_squeeze_excitation():
    with_se = create_model("efficientnet_phi", 5, phi=0)
    without = create_model("efficientnet_phi", 5, phi=0, se=False)
    se_modules = [m for m in with_se.modules() if type(m).__name__ == "SqueezeExcite"]
    assert len(se_modules) == 16  # one per B0 block
    assert not [m for m in without.modules() if type(m).__name__ == "SqueezeExcite"]
    se_params = sum(_params(m) for m in se_modules)
    assert _params(with_se) - _params(without) == se_params
    assert _stage_channels(with_se.backbone) == _stage_channels(without.backbone)
    assert without(torch.rand(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("kwargs, culprit", [
    ({"phi": "big"}, "model.phi"),
    ({"phi": float("nan")}, "model.phi"),
    ({"variant": "b9"}, "model.variant"),
    ({"alpha": 0.5}, "model.alpha"),
])
def test_bad_scaling_arguments_raise_clear_errors(kwargs, culprit):
    with pytest.raises(TrixaiError, match=culprit):
        create_model("efficientnet_phi", 3, **kwargs)


def test_no_hub_weights_for_phi_models():
    with pytest.raises(TrixaiError, match="model.weights"):
        create_model("efficientnet_phi", 3, phi=1, pretrained=True)
