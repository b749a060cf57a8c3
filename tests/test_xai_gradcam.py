"""Grad-CAM, multi-scale Grad-CAM and SE attention: closed forms, batching, hooks, model state."""

import pytest
import torch
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.xai.gradcam import grad_cam
from trixai.xai.multiscale import multiscale_grad_cam
from trixai.xai.se_attention import se_attention


class GapLinear(nn.Module):
    """features (conv + ReLU) -> global average pool -> linear: Grad-CAM has a closed form here."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)
        self.act = nn.ReLU(inplace=inplace)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean(dim=(2, 3)))


def _minmax(cam):
    flat = cam.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1), flat.max(1).values.view(-1, 1, 1)
    return (cam - low) / (high - low)


@pytest.fixture
def gap_model():
    torch.manual_seed(0)
    return GapLinear().eval()


def test_gap_linear_equals_closed_form_cam(gap_model):
    x = torch.rand(3, 3, 6, 7)
    targets = torch.tensor([0, 3, 1])
    result = grad_cam(gap_model, x, targets, "act", size=None)
    features = gap_model.act(gap_model.conv(x)).detach()
    weights = gap_model.fc.weight[targets].detach()  # (N, C): dY_c / dA_k = W_ck / (h w)
    expected = _minmax(torch.relu(torch.einsum("nk,nkhw->nhw", weights, features)))
    torch.testing.assert_close(result.maps["act"], expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(result.targets, targets)


def test_inplace_activation_after_the_layer(gap_model):
    """The conv output is overwritten in place by ReLU(inplace=True); the map must not see that."""
    inplace = GapLinear(inplace=True).eval()
    inplace.load_state_dict(gap_model.state_dict())
    x = torch.rand(2, 3, 6, 6)
    a = grad_cam(gap_model, x, 2, "conv", size=None).maps["conv"]
    b = grad_cam(inplace, x, 2, "conv", size=None).maps["conv"]
    pre = gap_model.conv(x).detach()
    grads = gap_model.fc.weight[2].detach().view(1, -1, 1, 1) * (pre > 0) / 36  # ReLU gate, GAP over 6 x 6
    expected = _minmax(torch.relu((grads.mean(dim=(2, 3), keepdim=True) * pre).sum(1)))
    torch.testing.assert_close(a, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(b, expected, atol=1e-6, rtol=1e-5)


def test_default_target_is_the_predicted_class(gap_model):
    x = torch.rand(4, 3, 6, 6)
    result = grad_cam(gap_model, x, None, "act")
    assert torch.equal(result.targets, gap_model(x).argmax(1))
    assert result.maps["act"].shape == (4, 6, 6)


@pytest.fixture(scope="module")
def tiny_effnet():
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 3, resolution=64)
    with torch.no_grad():  # non-trivial BatchNorm statistics so eval differs from train
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


def test_sample_alone_equals_sample_in_batch(tiny_effnet):
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2, 1, 0])
    batch = grad_cam(tiny_effnet, x, targets, ["mid", "final"])
    for i in range(5):
        alone = grad_cam(tiny_effnet, x[i:i + 1], targets[i:i + 1], ["mid", "final"])
        for layer in ("mid", "final"):
            torch.testing.assert_close(alone.maps[layer][0], batch.maps[layer][i], atol=1e-5, rtol=1e-4)


def test_hooks_removed_and_model_state_unchanged(tiny_effnet):
    model = tiny_effnet.train()
    model.backbone.blocks[1].eval()  # a mixed-mode model must come back mixed
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    grad_cam(model, torch.rand(4, 3, 64, 64), None, ["low", "mid", "high", "final"])
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BN running stats too
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    with pytest.raises(TrixaiError, match="out of range"):
        grad_cam(model, torch.rand(2, 3, 32, 32), 7, "final")
    assert all(not m._forward_hooks for m in model.modules())  # removed after an error too
    model.eval()


def test_zero_maps_stay_zero_without_nan(gap_model):
    with torch.no_grad():
        gap_model.fc.weight.zero_()
    maps = grad_cam(gap_model, torch.rand(2, 3, 5, 5), 1, "act").maps["act"]
    assert torch.equal(maps, torch.zeros(2, 5, 5))


def test_several_layers_in_one_backward_equal_separate_calls(tiny_effnet):
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    together = grad_cam(tiny_effnet, x, 1, ["low", "high"])
    for layer in ("low", "high"):
        torch.testing.assert_close(together.maps[layer], grad_cam(tiny_effnet, x, 1, layer).maps[layer])


def test_differentiable_mode_matches_and_reaches_parameters(gap_model):
    x = torch.rand(2, 3, 6, 6)
    detached = grad_cam(gap_model, x, 1, "act").maps["act"]
    result = grad_cam(gap_model, x, 1, "act", create_graph=True)
    cam = result.maps["act"]
    assert cam.requires_grad and gap_model.conv.weight.grad is None
    torch.testing.assert_close(cam.detach(), detached, atol=1e-5, rtol=1e-4)  # eps only in the denominator
    (grad,) = torch.autograd.grad(cam.sum(), gap_model.conv.weight)
    assert grad.abs().sum() > 0


def test_differentiable_mode_keeps_the_callers_mode(tiny_effnet):
    tiny_effnet.train()
    try:
        cam = grad_cam(tiny_effnet, torch.rand(2, 3, 64, 64), 0, "high", create_graph=True).maps["high"]
        assert tiny_effnet.training and cam.requires_grad
    finally:
        tiny_effnet.eval()


def test_layer_errors_name_the_culprit(gap_model):
    with pytest.raises(TrixaiError, match="'nope' is neither a preset"):
        grad_cam(gap_model, torch.rand(1, 3, 5, 5), 0, "nope")
    with pytest.raises(TrixaiError, match="shape"):
        grad_cam(gap_model, torch.rand(2, 3, 5, 5), torch.tensor([0, 1, 2]), "act")
    with pytest.raises(TrixaiError, match="inference_mode"), torch.inference_mode():
        grad_cam(gap_model, torch.rand(1, 3, 5, 5), 0, "act")


def test_resnet_presets_resolve():
    model = create_model("test_resnet", 2, resolution=32).eval()
    maps = grad_cam(model, torch.rand(2, 3, 32, 32), None, ["low", "mid", "high"]).maps
    assert set(maps) == {"low", "mid", "high"} and all(m.shape == (2, 32, 32) for m in maps.values())


def test_multiscale_fuses_stage_maps_with_weights(tiny_effnet):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    result = multiscale_grad_cam(tiny_effnet, x, 2)
    stages = grad_cam(tiny_effnet, x, 2, ["low", "mid", "high"]).maps
    expected = 0.3 * stages["low"] + 0.4 * stages["mid"] + 0.3 * stages["high"]
    torch.testing.assert_close(result.maps["fused"], expected)
    custom = multiscale_grad_cam(tiny_effnet, x, 2, {"low": 1.0, "high": 3.0}).maps["fused"]
    torch.testing.assert_close(custom, 0.25 * stages["low"] + 0.75 * stages["high"])
    with pytest.raises(TrixaiError, match="weights"):
        multiscale_grad_cam(tiny_effnet, x, 2, {"low": -1.0, "high": 1.0})


def test_se_attention_gates_and_map(tiny_effnet):
    x = torch.rand(3, 3, 64, 64)
    result = se_attention(tiny_effnet, x)
    se = tiny_effnet.backbone.blocks[3][0].se
    name = "backbone.blocks.3.0.se"
    assert result.gates[name].shape == (3, se.conv_expand.out_channels)
    captured = {}
    handle = se.register_forward_hook(lambda m, i, o: captured.update(inp=i[0].detach()))
    with torch.no_grad():
        tiny_effnet(x)
    handle.remove()
    pooled = captured["inp"].mean((2, 3), keepdim=True)
    expected = torch.sigmoid(se.conv_expand(se.act1(se.conv_reduce(pooled)))).flatten(1)
    torch.testing.assert_close(result.gates[name], expected)
    (cam,) = result.maps.values()
    assert cam.shape == (3, 64, 64) and float(cam.max()) == pytest.approx(1.0)
    stats = result.block_stats()[name]
    assert stats["min"] <= stats["mean"] <= stats["max"] and stats["channels"] == se.conv_expand.out_channels
    assert all(not m._forward_hooks for m in tiny_effnet.modules())


def test_se_attention_on_resnet_says_there_are_no_se_modules():
    model = create_model("test_resnet", 2, resolution=32).eval()
    with pytest.raises(TrixaiError, match="has no squeeze-and-excitation modules"):
        se_attention(model, torch.rand(1, 3, 32, 32))
