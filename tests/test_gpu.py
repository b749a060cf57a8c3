"""CUDA checks (``pytest -m gpu``): attacks, Grad-CAM, objectives and bf16 autocast on the GPU.

Every test skips without CUDA ("needs CUDA"). Tiny models (timm ``test_efficientnet``) at 64 px. The CPU/CUDA
comparisons run with TF32 off, so they measure trixai's code rather than TF32 rounding; bf16 autocast is
compared with fp32 within the tolerances stated below.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import state_snapshot

from trixai.models import create_model
from trixai.robust.attacks import FGSM, PGD
from trixai.training.objectives import PGDAT, TRADES, Standard
from trixai.xai.gradcam import grad_cam

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

SIZE = 64
EPS = 8 / 255
# bf16 keeps 8 mantissa bits (relative rounding 2^-9 per operation): logits within 5% of their largest magnitude,
# Grad-CAM maps (min-max normalised to [0, 1]) within 0.05 on average and per-image Pearson r >= 0.95 of fp32.
BF16_LOGIT_RTOL = 0.05
BF16_CAM_MEAN_ABS = 0.05
BF16_CAM_MIN_PEARSON = 0.95


@pytest.fixture
def cuda() -> torch.device:
    """The GPU, with TF32 off for the test (plain fp32 on both devices); the flags are restored afterwards."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tiny_model(num_classes: int = 4, scale: float = 1.0, seed: int = 0):
    """timm ``test_efficientnet`` on the CPU; ``scale`` multiplies the classifier so Grad-CAM maps are not flat."""
    torch.manual_seed(seed)
    model = create_model("test_efficientnet", num_classes, resolution=SIZE)
    with torch.no_grad():
        model.backbone.get_classifier().weight.mul_(scale)
    return model


def smooth_images(n: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images in [0, 1] (upsampled 8 x 8 noise) on the CPU."""
    generator = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, SIZE // 8, SIZE // 8, generator=generator)
    return F.interpolate(low, size=(SIZE, SIZE), mode="bilinear", align_corners=False)


def pearson_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


@pytest.mark.parametrize("attack", [FGSM(eps=EPS), PGD(eps=EPS, alpha=EPS / 4, steps=5),
                                    PGD(eps=EPS, alpha=EPS / 4, steps=5, early_stop=True)],
                         ids=["fgsm", "pgd5", "pgd5-early-stop"])
def test_attacks_stay_in_eps_ball_and_box_and_restore_the_model(cuda, attack):
    model = tiny_model().to(cuda).train()
    before, modes = state_snapshot(model)
    x = torch.rand(8, 3, SIZE, SIZE, device=cuda)
    y = torch.randint(0, 4, (8,), device=cuda)
    x_adv = attack(model, x, y)
    assert x_adv.device.type == "cuda" and x_adv.shape == x.shape and not x_adv.requires_grad
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0
    assert bool((x_adv != x).any())
    after, modes_after = state_snapshot(model)
    assert modes_after == modes
    assert all(torch.equal(before[key], after[key]) for key in before)  # BatchNorm statistics did not move
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_grad_cam_on_cuda_equals_cpu(cuda):
    model = tiny_model(scale=20.0).eval()
    x = smooth_images(6)
    targets = torch.tensor([0, 1, 2, 3, 0, 1])
    on_cpu = grad_cam(model, x, targets, ["mid", "final"])
    on_cuda = grad_cam(copy.deepcopy(model).to(cuda), x.to(cuda), targets.to(cuda), ["mid", "final"])
    torch.testing.assert_close(on_cuda.logits.cpu(), on_cpu.logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(on_cuda.targets.cpu(), on_cpu.targets)
    for layer in ("mid", "final"):
        assert on_cuda.maps[layer].device.type == "cuda"
        torch.testing.assert_close(on_cuda.maps[layer].cpu(), on_cpu.maps[layer], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("objective", [Standard(), PGDAT(), TRADES()], ids=["standard", "pgd_at", "trades"])
def test_objective_loss_on_cuda_is_finite_and_close_to_cpu(cuda, objective, monkeypatch):
    """fp32 on CUDA: loss, terms and parameter gradients finite. CUDA vs CPU in float64, with the same weights,
    batch and adversary start (PGD without random start; TRADES' x + 0.001 N(0, 1) drawn once for both): losses
    within rtol 1e-7. (In fp32 a sign step flips wherever a pixel's gradient is ~0, and TRADES starts where the KL
    gradient is ~0: a 1e-6 relative change of the weights moves the TRADES loss by up to ~1e-3.)"""
    noise = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    monkeypatch.setattr(torch, "randn_like", lambda t: noise.to(device=t.device, dtype=t.dtype))
    x = smooth_images(8, seed=1)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    attack = PGD(eps=2 / 255, alpha=1 / 255, steps=3, random_start=False)
    model = tiny_model().train()
    model_cuda = copy.deepcopy(model).to(cuda)
    out = objective(model_cuda, x.to(cuda), y.to(cuda), attack=attack)
    assert out.loss.device.type == "cuda" and torch.isfinite(out.loss)
    assert all(torch.isfinite(term).all() for term in out.terms.values())
    out.loss.backward()
    assert model_cuda.training
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model_cuda.parameters())
    model = model.double()  # the attacks run in eval mode: the copy must be taken before BatchNorm statistics move
    model_cuda = copy.deepcopy(model).to(cuda)
    on_cpu = objective(model, x.double(), y, attack=attack).loss.detach()
    on_cuda = objective(model_cuda, x.double().to(cuda), y.to(cuda), attack=attack).loss.detach()
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-7, atol=0.0)


def test_bf16_autocast_within_tolerance_of_fp32(cuda):
    model = tiny_model(scale=20.0).to(cuda).eval()
    x = smooth_images(8, seed=2).to(cuda)
    with torch.no_grad():
        logits = model(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits_bf16 = model(x).float()
    assert float((logits_bf16 - logits).abs().max()) <= BF16_LOGIT_RTOL * float(logits.abs().max())
    targets = logits.argmax(1)
    maps = grad_cam(model, x, targets, "mid").maps["mid"]
    with torch.autocast("cuda", dtype=torch.bfloat16):
        maps_bf16 = grad_cam(model, x, targets, "mid").maps["mid"].float()
    assert float((maps_bf16 - maps).abs().mean()) <= BF16_CAM_MEAN_ABS
    assert float(pearson_per_image(maps_bf16, maps).min()) >= BF16_CAM_MIN_PEARSON
