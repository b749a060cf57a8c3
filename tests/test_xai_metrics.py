"""Explanation metrics on hand-made inputs with hand-computed answers."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve, gaussian_filter
from scipy.stats import spearmanr
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.xai.gradcam import grad_cam
from trixai.xai.metrics.degeneracy import degeneracy
from trixai.xai.metrics.faithfulness import (
    PROTOCOLS,
    Protocol,
    confidence_change,
    deletion_insertion,
    gaussian_blur,
    input_mean,
    rise_blur,
    rise_kernel,
    step_counts,
    step_masks,
    substrate,
)
from trixai.xai.metrics.localization import (
    area_fraction,
    energy_pointing_game,
    pointing_game,
    pointing_game_per_category,
    scaled_tolerance,
    topk_iou,
)
from trixai.xai.metrics.sanity import parameter_randomisation
from trixai.xai.metrics.stability import K1, K2, spearman, ssim


class MeanProbability(nn.Module):
    """Two classes with p(class 0) = 0.1 + 0.8 * mean pixel value (softmax of log-probabilities); ``mean`` is the
    colour its (notional) input normalisation maps to zero."""

    def __init__(self, mean: float | None = None) -> None:
        super().__init__()
        if mean is not None:
            self.register_buffer("mean", torch.tensor([mean]).view(1, 1, 1, 1))

    def forward(self, x):
        p = 0.1 + 0.8 * x.mean(dim=(1, 2, 3))
        return torch.stack([p.log(), (1 - p).log()], dim=1)


IMAGE = torch.tensor([0.8, 0.4, 0.2, 0.0]).view(1, 1, 2, 2)
MAP = torch.tensor([[4.0, 3.0], [2.0, 1.0]]).unsqueeze(0)  # ranks the pixels in raster order


def test_rise_deletion_and_insertion_auc_hand_computed():
    # RISE: one image row (W = 2 pixels) per step, so 2 steps; deletion to the normalised zero, mean colour 0.5.
    # Deletion: pixel means .35, (.5 + .5 + .2 + 0) / 4 = .3, .5 -> p = .38, .34, .50;
    # AUC (trapezoid, dx = 1/2) = 0.5 * (.19 + .34 + .25) = 0.39.
    model = MeanProbability(mean=0.5)
    out = deletion_insertion(model, IMAGE, MAP, torch.tensor([0]))
    torch.testing.assert_close(out["deletion_curve"], torch.tensor([[0.38, 0.34, 0.50]]))
    assert float(out["deletion_auc"]) == pytest.approx(0.39, abs=1e-6)
    # Insertion from RISE's blur (checked against scipy below): p(blur), then the top row restored, then x.
    blurred = substrate(IMAGE, "blur", PROTOCOLS["rise"], torch.tensor([0.5]))
    middle = blurred.clone()
    middle[0, 0, 0] = IMAGE[0, 0, 0]
    expected = 0.1 + 0.8 * torch.stack([blurred.mean(), middle.mean(), IMAGE.mean()])
    torch.testing.assert_close(out["insertion_curve"][0], expected)
    assert float(out["insertion_auc"]) == pytest.approx(float(0.5 * (expected[0] / 2 + expected[1] + expected[2] / 2)))


def test_custom_protocol_hand_computed():
    # Insertion from black, 4 equal steps: means 0, .2, .3, .35, .35 -> p = .1 .26 .34 .38 .38;
    # AUC = 0.25 * (.05 + .26 + .34 + .38 + .19) = 0.305. Deletion to black: p = .38 .22 .14 .1 .1 -> 0.175.
    out = deletion_insertion(MeanProbability(mean=0.5), IMAGE, MAP, torch.tensor([0]), variant="constant", steps=4)
    torch.testing.assert_close(out["deletion_curve"], torch.tensor([[0.38, 0.22, 0.14, 0.10, 0.10]]))
    torch.testing.assert_close(out["insertion_curve"], torch.tensor([[0.10, 0.26, 0.34, 0.38, 0.38]]))
    assert float(out["deletion_auc"]) == pytest.approx(0.175, abs=1e-6)
    assert float(out["insertion_auc"]) == pytest.approx(0.305, abs=1e-6)
    mixed = Protocol("t", deletion="mean", insertion="black", steps=2)
    # deletion to 0.5 in 2 steps = the RISE deletion above; insertion from 0: p = .1, .34, .38 -> 0.29
    out = deletion_insertion(MeanProbability(mean=0.5), IMAGE, MAP, torch.tensor([0]), variant=mixed)
    assert float(out["deletion_auc"]) == pytest.approx(0.39, abs=1e-6)
    assert float(out["insertion_auc"]) == pytest.approx(0.29, abs=1e-6)
    with pytest.raises(TrixaiError, match="protocol 'nope'"):
        deletion_insertion(MeanProbability(), IMAGE, MAP, torch.tensor([0]), variant="nope")


def test_rise_blur_equals_scipy():
    """RISE builds its kernel as gaussian_filter(delta, 5) in an 11 x 11 window and convolves the normalised image
    with zero padding; here the same in [0, 1] with the mean colour as the zero."""
    delta = np.zeros((11, 11))
    delta[5, 5] = 1.0
    kernel = gaussian_filter(delta, 5.0)
    taps = rise_kernel(11, 5.0)
    np.testing.assert_allclose(torch.outer(taps, taps).numpy(), kernel, rtol=1e-12, atol=1e-15)
    x = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean = torch.tensor([0.485, 0.456, 0.406])
    blurred = rise_blur(x, mean)
    for i in range(2):
        for c in range(3):
            shifted = x[i, c].numpy() - float(mean[c])
            reference = convolve(shifted, kernel, mode="constant", cval=0.0) + float(mean[c])
            np.testing.assert_allclose(blurred[i, c].numpy(), reference, rtol=1e-5, atol=1e-6)


def test_rise_steps_are_one_image_row():
    assert step_counts(224, 224, None).tolist() == [224 * k for k in range(225)]  # 224 steps at 224^2
    assert step_counts(3, 4, None).tolist() == [0, 4, 8, 12]
    assert step_counts(4, 3, None).tolist() == [0, 3, 6, 9, 12]
    assert step_counts(2, 2, 4).tolist() == [0, 1, 2, 3, 4]


def test_batched_steps_equal_a_per_image_loop():
    torch.manual_seed(0)
    model = create_model("test_resnet", 3, resolution=32).eval()
    x, maps = torch.rand(2, 3, 32, 32), torch.rand(2, 32, 32)
    targets = torch.tensor([0, 2])
    mean = input_mean(model, 3)
    assert torch.equal(mean, model.mean.flatten())
    batched = deletion_insertion(model, x, maps, targets, batch_size=7)  # rise, channels_last
    assert batched["deletion_curve"].shape == (2, 33)
    conv = model.backbone.conv1[0].weight  # 3 x 3
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)  # layout restored
    blurred = rise_blur(x, mean)
    with torch.no_grad():
        for i in range(2):  # reference: every step image composed and run on its own
            order = maps[i].flatten().argsort(descending=True, stable=True)
            for k in range(33):
                m = torch.zeros(32 * 32)
                m[order[:32 * k]] = 1.0
                m = m.view(1, 1, 32, 32)
                p_del = model(x[i:i + 1] * (1 - m) + mean.view(1, 3, 1, 1) * m).softmax(1)[0, targets[i]]
                p_ins = model(blurred[i:i + 1] * (1 - m) + x[i:i + 1] * m).softmax(1)[0, targets[i]]
                torch.testing.assert_close(batched["deletion_curve"][i, k], p_del, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(batched["insertion_curve"][i, k], p_ins, atol=1e-5, rtol=1e-4)


def test_step_masks_from_one_ranking():
    masks = step_masks(MAP, 4)
    assert masks.shape == (1, 5, 2, 2)
    assert masks.flatten(2).sum(-1).tolist() == [[0, 1, 2, 3, 4]]
    assert masks[0, 1].flatten().tolist() == [True, False, False, False]
    assert step_masks(MAP, None).flatten(2).sum(-1).tolist() == [[0, 2, 4]]
    with pytest.raises(TrixaiError, match="steps"):
        deletion_insertion(MeanProbability(), IMAGE, MAP, torch.tensor([0]), steps=0)


def test_substrates():
    x = torch.full((1, 3, 8, 8), 0.3)
    mean = torch.tensor([0.3, 0.3, 0.3])
    torch.testing.assert_close(gaussian_blur(x, 2.0), x)  # blur of a constant is the constant
    torch.testing.assert_close(substrate(x, "blur", PROTOCOLS["rise"], mean), x)  # ... also with mean padding
    assert float(substrate(x, "black", PROTOCOLS["rise"], mean).abs().max()) == 0.0
    assert substrate(x, "mean", PROTOCOLS["rise"], torch.tensor([0.1, 0.2, 0.7]))[0, :, 0, 0].tolist() == \
        pytest.approx([0.1, 0.2, 0.7])
    with pytest.raises(TrixaiError, match="substrate"):
        substrate(x, "noise", PROTOCOLS["rise"], mean)


def test_average_drop_and_increase_hand_computed():
    # Full image p = 0.1 + 0.8 * 0.35 = 0.38. Map [1, .5, 0, 0]:
    # normalised space (mean colour .5): E = .5 + (x - .5) * map = [.8, .45, .5, .5], mean .5625 -> p = .55 > .38:
    #   drop 0, increase 1.  raw: E = x * map = [.8, .2, 0, 0], mean .25 -> p = .3: drop (.38 - .3) / .38.
    # A map of ones keeps p in both: drop 0, no increase.
    maps = torch.stack([torch.tensor([[1.0, 0.5], [0.0, 0.0]]), torch.ones(2, 2)])
    images, targets = IMAGE.expand(2, -1, -1, -1), torch.tensor([0, 0])
    out = confidence_change(MeanProbability(mean=0.5), images, maps, targets)
    torch.testing.assert_close(out["average_drop"], torch.tensor([0.0, 0.0]))
    assert out["increase_in_confidence"].tolist() == [1.0, 0.0]
    out = confidence_change(MeanProbability(mean=0.5), images, maps, targets, space="raw")
    torch.testing.assert_close(out["average_drop"], torch.tensor([0.08 / 0.38, 0.0]))
    assert out["increase_in_confidence"].tolist() == [0.0, 0.0]
    with pytest.raises(TrixaiError, match="space"):
        confidence_change(MeanProbability(), images, maps, targets, space="pixel")


MASK = torch.zeros(1, 4, 4, dtype=torch.bool)
MASK[0, :2, :2] = True  # top-left quarter


def test_pointing_game_hand_made():
    inside, diagonal, zero, beside = torch.zeros(4, 4, 4).unbind(0)
    inside[1, 1], diagonal[2, 2], diagonal[0, 0], beside[0, 3] = 1.0, 1.0, 0.5, 1.0
    maps = torch.stack([inside, diagonal, zero, beside])
    masks = MASK.expand(4, -1, -1)
    assert pointing_game(maps, masks).tolist() == [1.0, 0.0, 0.0, 0.0]  # an all-zero map points nowhere
    # (2, 2) is sqrt(2) px from the mask's (1, 1); (0, 3) is 2 px from (0, 1): Euclidean distance
    assert pointing_game(maps, masks, tolerance=1).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert pointing_game(maps, masks, tolerance=1.5).tolist() == [1.0, 1.0, 0.0, 0.0]
    # strictly within, as TorchRay's (u - x)^2 + (v - y)^2 < tolerance^2: exactly 2 px away misses at 2
    assert pointing_game(maps, masks, tolerance=2).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert pointing_game(maps, masks, tolerance=2.01).tolist() == [1.0, 1.0, 0.0, 1.0]
    # chance level: the grown mask's area; radius 1.01 adds (0, 2), (1, 2), (2, 0), (2, 1) -> 8 / 16, radius 1.5
    # also (2, 2) at sqrt(2) -> 9 / 16; radius 1 adds nothing (no pixel is strictly closer than 1)
    assert float(area_fraction(MASK, 1.01)) == 0.5 and float(area_fraction(MASK, 1.5)) == 9 / 16
    assert float(area_fraction(MASK, 1)) == 0.25 and float(area_fraction(MASK)) == 0.25


def test_pointing_game_per_sample_tolerance():
    """A peak 3 px right of the mask's edge hits with tolerance 3.5 and misses with 2.5, in one call."""
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, 2:4, 0:2] = True  # columns 0..1
    maps = torch.zeros(2, 8, 8)
    maps[:, 3, 4] = 1.0  # column 4: 3 px from column 1
    assert pointing_game(maps, mask, torch.tensor([3.5, 2.5])).tolist() == [1.0, 0.0]
    assert pointing_game(maps, mask, torch.tensor([[0.5, 3.5], [3.5, 2.5]])).tolist() == [1.0, 0.0]  # (rows, cols)
    torch.testing.assert_close(area_fraction(mask, torch.tensor([3.5, 0.0])),
                               torch.stack([area_fraction(mask[:1], 3.5)[0], area_fraction(mask[1:])[0]]))
    for bad in (torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 1.0]), float("nan")):
        with pytest.raises(TrixaiError, match="tolerance"):
            pointing_game(maps, mask, bad)


def _torchray_hit(mask: np.ndarray, point: tuple[int, int], tolerance: float) -> bool:
    """TorchRay's PointingGame.evaluate: a hit when the mask meets the disk (x - u)^2 + (y - v)^2 < tolerance^2
    around the point (u, v) = (column, row)."""
    rows, cols = np.nonzero(mask)
    return bool((((cols - point[0]) ** 2 + (rows - point[1]) ** 2) < tolerance**2).any())


def test_pointing_game_equals_torchray_rule_and_chance_level():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(6, 12, 10, generator=g) > 0.93
    masks[0] = False
    masks[0, 5, 5] = True  # integer tolerances land exactly on its ring
    maps = torch.rand(6, 12, 10, generator=g)
    maps[0, 5, 7] = 2.0  # exactly 2 px from the mask: a miss at tolerance 2, a hit at 2.5
    for tolerance in (0.5, 1.0, 2.0, 2.5, 3.0, 4.2857):
        peaks = maps.flatten(1).argmax(dim=1)
        expected = [float(_torchray_hit(masks[i].numpy(), (int(p) % 10, int(p) // 10), tolerance))
                    for i, p in enumerate(peaks)]
        assert pointing_game(maps, masks, tolerance).tolist() == expected, tolerance
    # the chance level is the hit rate of a one-hot map at every pixel, also for per-axis radii
    radii = torch.tensor([[1.0, 2.5], [3.0, 1.5], [2.0, 2.0], [0.0, 0.0], [4.2, 0.7], [1.5, 1.5]])
    hits = torch.zeros(6)
    for pixel in range(120):
        one_hot = torch.zeros(6, 120)
        one_hot[:, pixel] = 1.0
        hits += pointing_game(one_hot.view(6, 12, 10), masks, radii)
    torch.testing.assert_close(hits / 120, area_fraction(masks, radii))


def test_tolerance_at_the_original_resolution():
    """15 px of a 450 x 600 original at a 64 x 64 input: squash scales rows by 64/450 and columns by 64/600,
    crop scales both by 64/450 (the shorter side); the dataset gives these pixel scales per image."""
    from trixai.data.images import pixel_scales

    sizes = np.array([[450, 600], [64, 64]])
    np.testing.assert_allclose(15 * pixel_scales(sizes, 64, "squash"), [[15 * 64 / 450, 15 * 64 / 600], [15, 15]])
    np.testing.assert_allclose(15 * pixel_scales(sizes, 64, "crop"), [[15 * 64 / 450] * 2, [15, 15]])
    mask = torch.zeros(3, 64, 64, dtype=torch.bool)
    mask[:, 30, 30] = True
    maps = torch.zeros(3, 64, 64)
    maps[0, 30, 32] = maps[1, 32, 30] = maps[2, 30, 32] = 1.0  # 2 px right, 2 px down, 2 px right
    squash = torch.from_numpy(15 * pixel_scales(np.array([[450, 600]] * 3), 64, "squash"))  # rows 2.13, cols 1.6 px
    crop = torch.from_numpy(15 * pixel_scales(np.array([[450, 600]] * 3), 64, "crop"))  # 2.13 px both ways
    assert pointing_game(maps, mask, squash).tolist() == [0.0, 1.0, 0.0]
    assert pointing_game(maps, mask, crop).tolist() == [1.0, 1.0, 1.0]


def test_pointing_game_per_category_hand_computed():
    """Categories a: 1/1 hits, b: 1/3, c: 0/2 -> mean over categories (1 + 1/3 + 0) / 3 = 4/9; per sample 2/6."""
    hits = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    categories = torch.tensor([5, 0, 2, 2, 5, 2])
    out = pointing_game_per_category(hits, categories, class_names=["a", "x", "b", "y", "z", "c"])
    assert out["mean"] == pytest.approx(4 / 9) and out["per_sample"] == pytest.approx(2 / 6)
    assert out["per_category"] == pytest.approx({"a": 1.0, "b": 1 / 3, "c": 0.0})
    assert out["counts"] == {"a": 1, "b": 3, "c": 2} and out["n"] == 6 and out["n_categories"] == 3
    assert list(pointing_game_per_category(hits, categories)["per_category"]) == ["0", "2", "5"]
    assert math.isnan(pointing_game_per_category(torch.zeros(0), torch.zeros(0))["mean"])
    with pytest.raises(TrixaiError, match="categories"):
        pointing_game_per_category(hits, categories[:5])


def test_pointing_tolerance_scales_with_the_image_side():
    assert scaled_tolerance(15, 224) == 15.0
    assert scaled_tolerance(15, 32) == pytest.approx(15 * 32 / 224)  # 2.14 px
    assert scaled_tolerance(15, 32, reference=None) == 15.0
    with pytest.raises(TrixaiError, match="tolerance"):
        scaled_tolerance(-1, 32)


def test_energy_pointing_game_and_topk_iou_hand_made():
    cam = torch.zeros(1, 4, 4)
    cam[0, 0, 0], cam[0, 1, 1], cam[0, 3, 3], cam[0, 3, 2] = 0.5, 0.25, 0.2, 0.05
    assert float(energy_pointing_game(cam, MASK)) == pytest.approx(0.75)
    # top 25% = 4 pixels: (0,0), (1,1), (3,3), (3,2); 2 of them in the 4-pixel mask -> IoU 2 / 6.
    assert float(topk_iou(cam, MASK, 0.25)) == pytest.approx(1 / 3)
    assert float(energy_pointing_game(torch.zeros(1, 4, 4), MASK)) == 0.0
    with pytest.raises(TrixaiError, match="topk"):
        topk_iou(cam, MASK, 0.0)


def test_degeneracy_flags_constant_and_saturated_models_only():
    constant = torch.tensor([[2.0, 0.0, -1.0]]).expand(40, -1)  # a constant-bias classifier: class 0 everywhere
    flagged = degeneracy(constant)
    assert flagged["degenerate"] and flagged["majority_class"] == 0 and flagged["majority_class_share"] == 1.0
    assert "class 0 is predicted for 100.0% of the 40 points" in flagged["reason"]
    saturated = torch.zeros(40, 2)
    saturated[::2, 0], saturated[1::2, 1] = 6.0, 6.0  # half the points per class, p = 1 / (1 + e^-6) = 0.9975
    assert not degeneracy(saturated)["degenerate"]
    saturated *= 8 / 6  # p = 1 / (1 + e^-8) = 0.99966 >= 0.999 everywhere
    flagged = degeneracy(saturated)
    assert flagged["degenerate"] and flagged["majority_class_share"] == 0.5 and flagged["saturated_share"] == 1.0
    spread = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    healthy = degeneracy(spread)
    assert not healthy["degenerate"] and healthy["reason"] is None
    # 38 of 40 on one class = 95%: flagged at the threshold; 37 of 40 is not
    almost = torch.zeros(40, 2)
    almost[:38, 0], almost[38:, 1] = 1.0, 1.0
    assert degeneracy(almost)["degenerate"]
    almost[37, 0], almost[37, 1] = 0.0, 1.0
    assert not degeneracy(almost)["degenerate"]


def test_degeneracy_is_not_judged_on_few_points():
    """4 points of one class predicted alike are no evidence (not judged); 100 points all on class 0 are."""
    few = torch.tensor([[2.0, 0.0, -1.0]]).expand(4, -1)
    verdict = degeneracy(few)
    assert not verdict["degenerate"] and not verdict["judged"] and verdict["n"] == 4
    assert verdict["reason"] == "not judged: too few points (n=4 < 30)"
    assert verdict["majority_class_share"] == 1.0  # the evidence is still reported
    many = torch.tensor([[2.0, 0.0, -1.0]]).expand(100, -1)
    verdict = degeneracy(many)
    assert verdict["degenerate"] and verdict["judged"] and "class 0 is predicted for 100.0% of the 100" in verdict["reason"]
    assert degeneracy(few, min_points=4)["degenerate"] and not degeneracy(many[:29])["judged"]
    assert degeneracy(many[:30])["degenerate"]
    # a saturated but class-balanced model: p = 1 / (1 + e^-8) = 0.99966 >= 0.999 for all 100 points
    saturated = torch.zeros(100, 2)
    saturated[::2, 0], saturated[1::2, 1] = 8.0, 8.0
    verdict = degeneracy(saturated)
    assert verdict["degenerate"] and verdict["majority_class_share"] == 0.5 and verdict["saturated_share"] == 1.0
    assert verdict["reason"].startswith("the top probability is >= 0.999 for 100.0% of the 100 points")
    assert not degeneracy(saturated[:10])["degenerate"]


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
