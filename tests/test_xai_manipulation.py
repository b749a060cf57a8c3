"""Attacks on explanations (Ghorbani top-k, Dombrowski targeted): planted models with closed-form optima,
the acceptance rule and the output penalty, the softplus surrogate, model state, batching, a real tiny timm model."""

import pytest
import torch
from helpers import tiny_timm
from scipy.stats import spearmanr
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.xai.gradcam import grad_cam
from trixai.xai.manipulation import (
    TargetedManipulation,
    TopKManipulation,
    sum_normalize,
    topk_intersection,
    topk_members,
)

EPS, ALPHA = 1 / 16, 1 / 64  # dyadic: every iterate of a dyadic image is exact in float32


class ChannelCam(nn.Module):
    """A = x[:, 0] (1 x 1 conv ``cam``, weight (1, 0, 0)) -> spatial mean m -> logits (m + b0, 2 m + b1).

    The class-0 Grad-CAM at ``cam`` is ReLU(1/(H W) * x[:, 0]): the image's first channel, up to scale; the
    prediction is class 0 while m < b0 - b1.
    """

    def __init__(self, threshold: float = 5.0) -> None:
        super().__init__()
        self.cam = nn.Conv2d(3, 1, 1, bias=False)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.cam.weight.copy_(torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0], [2.0]]))
            self.fc.bias.copy_(torch.tensor([threshold, 0.0]))

    def forward(self, x):
        return self.fc(self.cam(x).mean(dim=(2, 3)))


def dyadic_image(seed: int, low: int = 1, high: int = 128) -> torch.Tensor:
    """(1, 3, 8, 8): channel 0 holds 64 distinct values k/128, k in [low, high]; channels 1, 2 are noise.

    ``low`` >= 1: at a zero pixel the map's ReLU has derivative 0 and no gradient step can raise it.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, 8, 8, generator=g)
    x[0, 0] = ((torch.randperm(high - low + 1, generator=g)[:64] + low).float() / 128).view(8, 8)
    return x


def ranked(values: list[float]) -> list[int]:
    """Pixel indices by decreasing value, ties by index."""
    return sorted(range(len(values)), key=lambda j: (-values[j], j))


def corner(values: list[float], top: list[int], amount: float) -> list[float]:
    """Move the ``top`` pixels down and the others up by ``amount``, inside [0, 1]."""
    return [max(v - amount, 0.0) if j in top else min(v + amount, 1.0) for j, v in enumerate(values)]


def test_topk_attack_reaches_the_analytic_optimum():
    """Map ∝ x0: the clean top-k mass sum_K x / sum x is minimised in the ball by K down eps, the rest up eps."""
    x = torch.cat([dyadic_image(seed) for seed in (0, 1, 2)])
    k = 10
    result = TopKManipulation(eps=EPS, alpha=ALPHA, steps=6, topk=k, layer="cam")(ChannelCam(), x)
    g = torch.Generator().manual_seed(9)
    for i in range(3):
        values = x[i, 0].flatten().tolist()
        top = ranked(values)[:k]
        best = corner(values, top, EPS)
        expected = x[i].clone()
        expected[0] = torch.tensor(best).view(8, 8)
        assert torch.equal(result.x_adv[i], expected)
        optimum = sum(best[j] for j in top) / sum(best)
        assert result.metrics["topk_mass"][i].item() == pytest.approx(optimum, rel=1e-6)
        assert result.metrics["topk_mass_clean"][i].item() == pytest.approx(
            sum(values[j] for j in top) / sum(values), rel=1e-6)
        assert result.metrics["topk_intersection"][i].item() == pytest.approx(len(set(top) & set(ranked(best)[:k])) / k)
        assert result.metrics["spearman"][i].item() == pytest.approx(spearmanr(values, best)[0], abs=1e-6)
        # no point of the ball does better (the optimum is the corner of the box, by monotonicity)
        clean = torch.tensor(values)
        feasible = (clean + (torch.rand(2000, 64, generator=g) * 2 - 1) * EPS).clamp(0, 1)
        assert feasible[:, top].sum(1).div(feasible.sum(1)).min().item() >= optimum - 1e-7
    assert result.metrics["topk_intersection"].max() < 1
    assert result.kept.all() and torch.equal(result.metrics["accepted"], torch.ones(3))


def test_acceptance_rule_returns_the_best_iterate_that_keeps_the_class():
    """Iterate n raises the mean by n * d (54 pixels up, 10 down): with the class boundary between iterates 2
    and 3 the result is iterate 2; with it before iterate 1 no iterate qualifies and the clean image stays."""
    x = dyadic_image(3, low=8, high=120)  # no clamping within 2 eps
    values, k = x[0, 0].flatten().tolist(), 10
    top = ranked(values)[:k]
    mean, d = x[0, 0].mean().item(), ALPHA * (64 - 2 * k) / 64
    attack = TopKManipulation(eps=EPS, alpha=ALPHA, steps=6, topk=k, layer="cam")

    model = ChannelCam(threshold=mean + 2.5 * d)
    result = attack(model, x)
    expected = x.clone()
    expected[0, 0] = torch.tensor(corner(values, top, 2 * ALPHA)).view(8, 8)
    assert torch.equal(result.x_adv, expected)
    assert result.metrics["accepted"].item() == 1 and result.kept.item()
    assert model(expected).argmax(1).item() == 0  # iterate 2 keeps class 0 ...
    third = x.clone()
    third[0, 0] = torch.tensor(corner(values, top, 3 * ALPHA)).view(8, 8)
    assert model(third).argmax(1).item() == 1  # ... iterate 3 does not

    model = ChannelCam(threshold=mean + 0.5 * d)
    result = attack(model, x)
    assert torch.equal(result.x_adv, x)
    assert result.metrics["accepted"].item() == 0 and result.kept.item()
    assert result.metrics["topk_intersection"].item() == 1.0
    assert result.metrics["ssim"].item() == pytest.approx(1.0, abs=1e-6)


def test_targeted_attack_descends_to_a_reachable_target():
    """Target t = x0 + eps s with balanced signs s: every sign step moves x0 by alpha towards t (the sum, hence
    the output, stays fixed), so after n steps the sum-1 map distance is ((eps - n alpha) / sum t)^2 per pixel."""
    x = torch.cat([dyadic_image(seed, low=8, high=120) for seed in (4, 5)])
    g = torch.Generator().manual_seed(6)
    signs = torch.stack([torch.tensor([1.0, -1.0]).repeat(32)[torch.randperm(64, generator=g)].view(8, 8)
                         for _ in range(2)])
    goal = x[:, 0] + EPS * signs
    total = goal.sum(dim=(1, 2))
    model, distances, similarities = ChannelCam(), [], []
    for n in range(1, 5):
        result = TargetedManipulation(eps=EPS, alpha=ALPHA, steps=n, layer="cam")(model, x, target_maps=3 * goal)
        assert torch.equal(result.x_adv[:, 0], x[:, 0] + n * ALPHA * signs)
        assert torch.equal(result.x_adv[:, 1:], x[:, 1:])
        torch.testing.assert_close(result.metrics["mse_before"], (EPS / total) ** 2, rtol=1e-5, atol=0)
        torch.testing.assert_close(result.metrics["mse_after"], ((EPS - n * ALPHA) / total) ** 2, rtol=1e-4,
                                   atol=1e-16)
        assert result.kept.all() and result.metrics["output_change"].max().item() == 0.0
        distances.append(result.metrics["mse_after"])
        similarities.append(result.metrics["ssim_after"])
    assert all((a > b).all() for a, b in zip(distances, distances[1:]))
    assert all((a < b).all() for a, b in zip(similarities, similarities[1:]))
    assert distances[-1].max().item() < 1e-14
    torch.testing.assert_close(similarities[-1], torch.ones(2), atol=1e-5, rtol=0)


def test_targeted_prediction_kept_is_measured_and_the_penalty_keeps_it():
    """A uniformly brighter target pulls the mean up: the point 1e-4 below the class boundary changes class
    without the output penalty (gamma = 0) and keeps it with a strong one; the point far below keeps it."""
    x = torch.cat([dyadic_image(7, low=8, high=120), dyadic_image(8, low=8, high=80)])
    model = ChannelCam(threshold=x[0, 0].mean().item() + 1e-4)
    goal = x[:, 0] + EPS
    kept = {}
    for gamma in (0.0, 1.0):
        result = TargetedManipulation(eps=EPS, alpha=ALPHA, steps=8, layer="cam", gamma=gamma)(
            model, x, target_maps=goal)
        assert torch.equal(result.kept, model(result.x_adv).argmax(1) == model(x).argmax(1))
        assert (result.metrics["mse_after"] < result.metrics["mse_before"]).all()
        kept[gamma] = result.kept.tolist()
    assert kept == {0.0: [False, True], 1.0: [True, True]}


class ReluCam(nn.Module):
    """conv -> ReLU -> mean -> linear: the Grad-CAM channel weights at ``conv`` depend on which units are on."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def _reference_direction(model: ReluCam, x, targets, members, beta: float | None):
    """sign of d(-clean top-k mass)/dx with Grad-CAM written out: dY/dA = W_c * act'(A) / (H W)."""
    x = x.clone().requires_grad_(True)
    a = model.conv(x)
    slope = torch.sigmoid(beta * a) if beta is not None else (a > 0).float()
    weights = (slope * model.fc.weight[targets][:, :, None, None] / a[0, 0].numel()).mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * a).sum(dim=1))
    mass = (cam / cam.sum(dim=(1, 2), keepdim=True) * members).sum()
    return torch.autograd.grad(-mass, x)[0].sign()


def test_softplus_surrogate_gives_the_direction_and_the_original_model_the_maps():
    model = ReluCam().eval()
    relu = model.act
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(10))
    clean = grad_cam(model, x, None, "conv", normalize=False)
    k = 12
    members = torch.zeros(3, 64, dtype=torch.bool)
    members.scatter_(1, clean.maps["conv"].flatten(1).argsort(dim=1, descending=True, stable=True)[:, :k], True)
    members = members.view(3, 8, 8)
    attack = TopKManipulation(eps=4 / 255, alpha=1 / 255, steps=1, topk=k, layer="conv", softplus_beta=5.0)
    result = attack(model, x)
    assert model.act is relu and not any(isinstance(m, nn.Softplus) for m in model.modules())
    assert torch.equal(result.metrics["accepted"], torch.ones(3))
    direction = _reference_direction(model, x, clean.targets, members, beta=5.0)
    torch.testing.assert_close(result.x_adv, (x + attack.alpha * direction).clamp(0, 1))
    assert (direction != _reference_direction(model, x, clean.targets, members, beta=None)).any()
    torch.testing.assert_close(result.clean_maps, grad_cam(model, x, None, "conv").maps["conv"])
    torch.testing.assert_close(result.maps, grad_cam(model, result.x_adv, clean.targets, "conv").maps["conv"])
    with pytest.raises(TrixaiError, match="no nn.ReLU"):
        TopKManipulation(topk=5, layer="cam", softplus_beta=5.0)(ChannelCam(), dyadic_image(0))


@pytest.fixture(scope="module")
def tiny_effnet():
    """timm's test_efficientnet (3 classes, 32 px) with non-trivial BatchNorm statistics (eval != train)."""
    model = tiny_timm(num_classes=3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model.eval()


ATTACKS = [
    TopKManipulation(eps=4 / 255, alpha=3 / 255, steps=2, topk=50, layer="low"),
    TopKManipulation(eps=4 / 255, alpha=3 / 255, steps=2, topk=50, explainer="multiscale_gradcam"),
    TargetedManipulation(eps=4 / 255, alpha=3 / 255, steps=2, layer="low"),
    TargetedManipulation(eps=4 / 255, alpha=3 / 255, steps=2, explainer="multiscale_gradcam"),
]


def test_topk_attack_follows_algorithm_1(tiny_effnet):
    """Ghorbani et al.'s Algorithm 1 written out: keep every iterate, then pick among those that keep the class
    the lowest top-k intersection, ties by the larger dissimilarity, then the earliest. Steps of 6/255 in an
    8/255 ball make the intersection go up and down, so the pick is not always the last iterate."""
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(16))
    attack = TopKManipulation(eps=8 / 255, alpha=6 / 255, steps=6, topk=100, layer="low")
    result = attack(tiny_effnet, x)
    with frozen_eval(tiny_effnet):
        clean, logits, targets = attack.saliency(tiny_effnet, x, None, create_graph=False)
        members = topk_members(clean, 100).view_as(clean)

        def mass(maps):
            return (sum_normalize(maps) * members).flatten(1).sum(dim=1)

        iterates, x_adv = [], x
        for _ in range(attack.steps):
            grad, _, _ = attack.gradient(tiny_effnet, x_adv, targets, lambda maps, _: -mass(maps))
            x_adv = (x + (x_adv + attack.alpha * grad.sign() - x).clamp(-attack.eps, attack.eps)).clamp(0, 1)
            maps, logits_adv, _ = attack.saliency(tiny_effnet, x_adv, targets, create_graph=False)
            iterates.append((x_adv, topk_intersection(clean, maps, 100), mass(maps), logits_adv.argmax(1)))
    picks = []
    for i in range(4):
        keys = [(overlap[i].item(), topk[i].item(), n) for n, (_, overlap, topk, pred) in enumerate(iterates)
                if pred[i] == logits[i].argmax()]
        picks.append(min(keys)[2])
        assert torch.equal(result.x_adv[i], iterates[picks[-1]][0][i])
    assert any(pick != attack.steps - 1 for pick in picks), picks


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: f"{a.name}-{a.explainer}")
def test_threat_model_and_model_state(tiny_effnet, attack):
    model = tiny_effnet.train()
    model.backbone.blocks[1].eval()  # a mixed-mode model must come back mixed
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    extra = {"target_maps": torch.rand(2, 32, 32)} if isinstance(attack, TargetedManipulation) else {}
    result = attack(model, x, **extra)
    assert (result.x_adv - x).abs().max().item() <= attack.eps + 1e-7  # the second step (3 + 3) / 255 is projected
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert (result.x_adv != x).any()
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    model.eval()


@pytest.mark.parametrize("attack", [ATTACKS[0], ATTACKS[2]], ids=lambda a: a.name)
def test_one_batch_equals_two(tiny_effnet, attack):
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(12))
    goals = torch.rand(4, 32, 32, generator=torch.Generator().manual_seed(13))

    def run(rows: slice):
        extra = {"target_maps": goals[rows]} if isinstance(attack, TargetedManipulation) else {}
        return attack(tiny_effnet, x[rows], **extra)

    together, halves = run(slice(0, 4)), [run(slice(0, 2)), run(slice(2, 4))]
    assert torch.equal(together.x_adv, torch.cat([h.x_adv for h in halves]))
    assert torch.equal(together.kept, torch.cat([h.kept for h in halves]))
    for name, value in together.metrics.items():
        torch.testing.assert_close(value, torch.cat([h.metrics[name] for h in halves]), atol=1e-6, rtol=1e-5,
                                   equal_nan=True)


@pytest.mark.parametrize("explainer", ["gradcam", "multiscale_gradcam"])
def test_attack_beats_random_sign_noise_on_test_efficientnet(tiny_effnet, explainer):
    """Weak but real: the top-k attack lowers the top-k intersection below that of random +-eps sign noise."""
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(14))
    attack = TopKManipulation(eps=8 / 255, alpha=2 / 255, steps=4, topk=100, explainer=explainer, layer="low")
    result = attack(tiny_effnet, x)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(15)).sign()
    noisy = (x + attack.eps * noise).clamp(0, 1)
    clean, _, targets = attack.saliency(tiny_effnet, x, None, create_graph=False)
    baseline = topk_intersection(clean, attack.saliency(tiny_effnet, noisy, targets, create_graph=False)[0], 100)
    attacked = result.metrics["topk_intersection"]
    assert (attacked < baseline).all(), (attacked, baseline)
    assert attacked.mean() < baseline.mean() - 0.2
    assert result.kept.all()


def test_errors_name_the_setting(tiny_effnet):
    x = dyadic_image(0)
    with pytest.raises(TrixaiError, match="topk=64 must be smaller than the 64 pixels"):
        TopKManipulation(topk=64, layer="cam")(ChannelCam(), x)
    with pytest.raises(TrixaiError, match="explainer='se_attention'"):
        TopKManipulation(explainer="se_attention")
    with pytest.raises(TrixaiError, match="eps >= 0, alpha > 0"):
        TargetedManipulation(alpha=0.0)
    with pytest.raises(TrixaiError, match="gamma=-1"):
        TargetedManipulation(gamma=-1.0)
    with pytest.raises(TrixaiError, match="target_maps has shape"):
        TargetedManipulation(layer="cam")(ChannelCam(), x, target_maps=torch.rand(1, 4, 4))
    with pytest.raises(TrixaiError, match="non-negative"):
        TargetedManipulation(layer="cam")(ChannelCam(), x, target_maps=-torch.rand(1, 8, 8))
    multilabel = tiny_timm(num_classes=3, task="multilabel")
    with pytest.raises(TrixaiError, match="multiclass model"):
        TopKManipulation(topk=10)(multilabel, torch.rand(1, 3, 32, 32))


def test_settings_pin_the_reference_codes_defaults():
    """amiratag/InterpretationFragility ``iterative_attack``: k_top 1000, 100 iterations of 1 (of 255), eps 8;
    pankessel/adv_explanation_ref ``run_attack.py``: prefactors 1e11 (map) and 1e6 (output), gamma = 1e-5."""
    topk = TopKManipulation().settings()
    assert topk == {"attack": "topk_manipulation", "eps": 8 / 255, "alpha": 1 / 255, "steps": 100,
                    "explainer": "gradcam", "layer": "final", "weights": {"low": 0.3, "mid": 0.4, "high": 0.3},
                    "softplus_beta": None, "topk": 1000}
    assert TargetedManipulation().settings()["gamma"] == pytest.approx(1e6 / 1e11)
