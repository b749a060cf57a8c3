"""Explanation metrics on hand-made inputs with hand-computed answers."""

import math

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.xai.gradcam import grad_cam
from trixai.xai.metrics.faithfulness import confidence_change, deletion_insertion, make_baseline, step_masks
from trixai.xai.metrics.localization import (
    area_fraction,
    energy_pointing_game,
    pointing_game,
    topk_iou,
)
from trixai.xai.metrics.sanity import parameter_randomisation
from trixai.xai.metrics.stability import K1, K2, spearman, ssim


class MeanProbability(nn.Module):
    """Two classes with p(class 0) = 0.1 + 0.8 * mean pixel value (softmax of log-probabilities)."""

    def forward(self, x):
        p = 0.1 + 0.8 * x.mean(dim=(1, 2, 3))
        return torch.stack([p.log(), (1 - p).log()], dim=1)


IMAGE = torch.tensor([0.8, 0.4, 0.2, 0.0]).view(1, 1, 2, 2)
MAP = torch.tensor([[4.0, 3.0], [2.0, 1.0]]).unsqueeze(0)  # ranks the pixels in raster order


def test_deletion_insertion_auc_hand_computed():
    # Deletion to 0, 4 steps: pixel means 0.35, 0.15, 0.05, 0, 0 -> p = 0.1 + 0.8 m = .38 .22 .14 .1 .1
    # AUC (trapezoid, dx = 1/4) = 0.25 * (.38/2 + .22 + .14 + .1 + .1/2) = 0.25 * 0.70 = 0.175.
    # Insertion from 0: means 0, .2, .3, .35, .35 -> p = .1 .26 .34 .38 .38;
    # AUC = 0.25 * (.05 + .26 + .34 + .38 + .19) = 0.25 * 1.22 = 0.305.
    out = deletion_insertion(MeanProbability(), IMAGE, MAP, torch.tensor([0]), steps=4, baseline="constant")
    torch.testing.assert_close(out["deletion_curve"], torch.tensor([[0.38, 0.22, 0.14, 0.10, 0.10]]))
    torch.testing.assert_close(out["insertion_curve"], torch.tensor([[0.10, 0.26, 0.34, 0.38, 0.38]]))
    assert float(out["deletion_auc"]) == pytest.approx(0.175, abs=1e-6)
    assert float(out["insertion_auc"]) == pytest.approx(0.305, abs=1e-6)


def test_batched_steps_equal_a_per_image_loop():
    torch.manual_seed(0)
    model = create_model("test_resnet", 3, resolution=32).eval()
    x, maps = torch.rand(3, 3, 32, 32), torch.rand(3, 32, 32)
    targets = torch.tensor([0, 2, 1])
    batched = deletion_insertion(model, x, maps, targets, steps=5, baseline="blur", batch_size=7)  # channels_last
    conv = model.backbone.conv1[0].weight  # 3 x 3
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)  # layout restored
    base = make_baseline(x, "blur")
    with torch.no_grad():
        for i in range(3):  # reference: every step image composed and run on its own
            order = maps[i].flatten().argsort(descending=True, stable=True)
            for k in range(6):
                m = torch.zeros(32 * 32)
                m[order[:round(k / 5 * 32 * 32)]] = 1.0
                m = m.view(1, 1, 32, 32)
                p_del = model(x[i:i + 1] * (1 - m) + base[i:i + 1] * m).softmax(1)[0, targets[i]]
                p_ins = model(base[i:i + 1] * (1 - m) + x[i:i + 1] * m).softmax(1)[0, targets[i]]
                torch.testing.assert_close(batched["deletion_curve"][i, k], p_del, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(batched["insertion_curve"][i, k], p_ins, atol=1e-5, rtol=1e-4)
    one_step = deletion_insertion(model, x, maps, targets, steps=1, baseline="blur")  # end points only
    torch.testing.assert_close(one_step["deletion_curve"], batched["deletion_curve"][:, [0, -1]], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(one_step["insertion_curve"], batched["deletion_curve"][:, [-1, 0]], atol=1e-5,
                               rtol=1e-4)


def test_step_masks_from_one_ranking():
    masks = step_masks(MAP, 4)
    assert masks.shape == (1, 5, 2, 2)
    assert masks.flatten(2).sum(-1).tolist() == [[0, 1, 2, 3, 4]]
    assert masks[0, 1].flatten().tolist() == [True, False, False, False]
    with pytest.raises(TrixaiError, match="steps"):
        step_masks(MAP, 0)


def test_baselines():
    x = torch.full((1, 3, 8, 8), 0.3)
    torch.testing.assert_close(make_baseline(x, "blur", blur_sigma=2.0), x)  # blur of a constant is the constant
    assert float(make_baseline(x, "constant").abs().max()) == 0.0
    with pytest.raises(TrixaiError, match="blur"):
        make_baseline(x, "noise")


def test_average_drop_and_increase_hand_computed():
    # Full image p = 0.1 + 0.8 * 0.35 = 0.38. Map [1, .5, 0, 0] keeps mean (0.8 + 0.2) / 4 = 0.25 -> p = 0.3:
    # drop = (0.38 - 0.3) / 0.38. A map of ones keeps p: drop 0, no increase.
    maps = torch.stack([torch.tensor([[1.0, 0.5], [0.0, 0.0]]), torch.ones(2, 2)])
    out = confidence_change(MeanProbability(), IMAGE.expand(2, -1, -1, -1), maps, torch.tensor([0, 0]))
    torch.testing.assert_close(out["average_drop"], torch.tensor([0.08 / 0.38, 0.0]))
    assert out["increase_in_confidence"].tolist() == [0.0, 0.0]


MASK = torch.zeros(1, 4, 4, dtype=torch.bool)
MASK[0, :2, :2] = True  # top-left quarter


def test_pointing_game_hand_made():
    inside, outside, zero = torch.zeros(3, 4, 4).unbind(0)
    inside[1, 1], outside[2, 2], outside[0, 0] = 1.0, 1.0, 0.5
    maps = torch.stack([inside, outside, zero])
    masks = MASK.expand(3, -1, -1)
    assert pointing_game(maps, masks).tolist() == [1.0, 0.0, 0.0]  # an all-zero map points nowhere
    assert pointing_game(maps, masks, tolerance=1).tolist() == [1.0, 1.0, 0.0]  # (2, 2) touches the grown mask


def test_energy_pointing_game_and_topk_iou_hand_made():
    cam = torch.zeros(1, 4, 4)
    cam[0, 0, 0], cam[0, 1, 1], cam[0, 3, 3], cam[0, 3, 2] = 0.5, 0.25, 0.2, 0.05
    assert float(energy_pointing_game(cam, MASK)) == pytest.approx(0.75)
    # top 25% = 4 pixels: (0,0), (1,1), (3,3), (3,2); 2 of them in the 4-pixel mask -> IoU 2 / 6.
    assert float(topk_iou(cam, MASK, 0.25)) == pytest.approx(1 / 3)
    assert float(energy_pointing_game(torch.zeros(1, 4, 4), MASK)) == 0.0
    assert float(area_fraction(MASK)) == 0.25
    with pytest.raises(TrixaiError, match="topk"):
        topk_iou(cam, MASK, 0.0)


def test_ssim_hand_values_and_gradient():
    a, b = torch.full((1, 16, 16), 0.2), torch.full((1, 16, 16), 0.6)
    c1 = K1**2
    # constant maps: zero variances, so SSIM = luminance term * c2 / c2.
    assert float(ssim(a, b)) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1), rel=1e-5)
    x = torch.rand(2, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert float(ssim(x, noisy).max()) < 0.9
    y = x.clone().requires_grad_(True)
    (1 - ssim(y, noisy)).mean().backward()  # usable as a loss
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0
    with pytest.raises(TrixaiError, match="one shape"):
        ssim(a, torch.zeros(1, 8, 8))


def test_ssim_window_is_configurable():
    x = torch.rand(2, 9, 9, generator=torch.Generator().manual_seed(0))
    y = torch.rand(2, 9, 9, generator=torch.Generator().manual_seed(1))
    c1, c2 = K1**2, K2**2
    # a 1 x 1 window: zero local variances, so SSIM is the mean per-pixel luminance term.
    pixelwise = ((2 * x * y + c1) / (x**2 + y**2 + c1)).flatten(1).mean(dim=1)
    torch.testing.assert_close(ssim(x, y, window_size=1), pixelwise)
    # a window as large as the map with a huge sigma is the global (uniform-window) SSIM.
    mx, my = x.mean(dim=(1, 2)), y.mean(dim=(1, 2))
    vx, vy = x.var(dim=(1, 2), unbiased=False), y.var(dim=(1, 2), unbiased=False)
    cov = ((x - mx[:, None, None]) * (y - my[:, None, None])).mean(dim=(1, 2))
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    torch.testing.assert_close(ssim(x, y, window_size=9, window_sigma=1e6), expected)
    assert not torch.allclose(ssim(x, y, window_size=3), ssim(x, y))
    for bad in ({"window_size": 4}, {"window_size": 0}, {"window_sigma": 0.0}):
        with pytest.raises(TrixaiError, match="window"):
            ssim(x, y, **bad)


def test_spearman_matches_scipy_with_ties():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 6, 6, generator=g).round(decimals=1)  # many ties
    b = (a + 0.3 * torch.rand(3, 6, 6, generator=g)).round(decimals=1)
    expected = [spearmanr(a[i].flatten(), b[i].flatten()).statistic for i in range(3)]
    torch.testing.assert_close(spearman(a, b), torch.tensor(expected, dtype=torch.float32))
    assert math.isnan(float(spearman(torch.zeros(1, 3, 3), b[:1, :3, :3])[0]))


def test_parameter_randomisation_changes_maps_and_keeps_the_model():
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 3, resolution=64).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1, 2, 0])
    rows = parameter_randomisation(model, x, targets, lambda m, xb, tb: grad_cam(m, xb, tb, "high").maps["high"])
    assert rows[0]["stage"] == "backbone.classifier" and rows[-1]["stage"] == "backbone.conv_stem"
    assert rows[-1]["ssim"] < 0.9 and rows[-1]["spearman"] < 0.9
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
