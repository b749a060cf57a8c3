"""Model factory: normalisation inside, grayscale, embeddings, CAM presets, local weights, clear errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from trixai.core.errors import TrixaiError
from trixai.models import create_model


def test_normalisation_lives_inside_the_model():
    model = create_model("test_efficientnet", 4, resolution=32).eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone((x - mean) / std), atol=1e-6)


def test_grayscale_model_averages_normalisation():
    model = create_model("test_efficientnet", 2, in_chans=1, resolution=32).eval()
    assert model.in_chans == 1 and model.mean.shape == (1, 1, 1, 1)
    assert model.mean.item() == pytest.approx((0.485 + 0.456 + 0.406) / 3)
    assert model(torch.rand(3, 1, 32, 32)).shape == (3, 2)


@pytest.mark.parametrize(("name", "dim", "family", "final"), [
    ("efficientnet_b0", 1280, "efficientnet", "backbone.bn2"),
    ("resnet50", 2048, "resnet", "backbone.layer4"),
])
def test_embeddings_and_cam_presets(name, dim, family, final):
    model = create_model(name, 7, resolution=64).eval()
    with torch.no_grad():
        assert model.embed(torch.rand(2, 3, 64, 64)).shape == (2, dim)
    assert model.family == family and model.cam_layers["final"] == final
    modules = dict(model.named_modules())
    assert all(path in modules for path in model.cam_layers.values())
    if family == "efficientnet":
        assert [model.cam_layers[k] for k in ("low", "mid", "high")] == [
            "backbone.blocks.1", "backbone.blocks.3", "backbone.blocks.5"]


def test_local_weights_file_is_loaded(tmp_path):
    torch.manual_seed(0)
    source = create_model("test_efficientnet", 10, resolution=32)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, str(path))
    loaded = create_model("test_efficientnet", 3, weights=str(path), resolution=32)  # other head size
    src, dst = source.backbone.state_dict(), loaded.backbone.state_dict()
    body = [k for k in src if not k.startswith("classifier")]
    assert body and all(torch.equal(src[k], dst[k]) for k in body)
    assert dst["classifier.weight"].shape == (3, src["classifier.weight"].shape[1])


def test_missing_weights_file_and_unknown_name():
    with pytest.raises(TrixaiError, match="model.weights='/nope.safetensors': no such file"):
        create_model("test_efficientnet", 2, weights="/nope.safetensors")
    with pytest.raises(TrixaiError, match=r"model.name='efficientnet_bo' is not a timm model.*efficientnet_b0"):
        create_model("efficientnet_bo", 2)


def test_pretrained_offline_gives_one_clear_message():
    """With the hub unreachable (offline here; forced with HF_HUB_OFFLINE), the message names both ways out."""
    code = ("from trixai.models import create_model\n"
            "create_model('test_efficientnet', 2, pretrained=True)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert "could not fetch pretrained weights for 'test_efficientnet'" in proc.stderr
    assert "model.weights=" in proc.stderr and "model.pretrained=false" in proc.stderr
