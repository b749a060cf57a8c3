"""Local weight files: safe reading, wrapper layouts, classifier and first-conv adaptation, explained mismatches."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.models.weights import apply_weights, read_state_dict


def _timm_state(name: str = "test_efficientnet", **kwargs) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {k: v.clone() for k, v in timm.create_model(name, **kwargs).state_dict().items()}


def test_timm_state_dict_saved_to_disk_loads_into_the_model(tmp_path):
    state = _timm_state(num_classes=1000)
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = create_model("test_efficientnet", 7, weights=str(path), resolution=32)
    loaded = model.backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("classifier"))
    assert loaded["classifier.weight"].shape[0] == 7  # re-initialised for 7 classes


def test_pickle_layouts_nested_and_prefixed(tmp_path):
    state = _timm_state(num_classes=5)
    path = tmp_path / "ddp.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    read = read_state_dict(path)
    assert read.keys() == state.keys() and all(torch.equal(read[k], state[k]) for k in state)
    model = create_model("test_efficientnet", 5, weights=str(path), resolution=32)
    assert torch.equal(model.backbone.state_dict()["classifier.weight"], state["classifier.weight"])


def test_trixai_model_state_dict_loads_back(tmp_path):
    source = create_model("test_efficientnet", 3, resolution=32)
    path = tmp_path / "trix.pth"
    torch.save(source.state_dict(), path)  # backbone.* plus the mean/std buffers, as model.safetensors holds
    loaded = create_model("test_efficientnet", 3, weights=str(path), resolution=32)
    assert all(torch.equal(v, loaded.backbone.state_dict()[k]) for k, v in source.backbone.state_dict().items())


def test_python_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"state_dict": _timm_state(), "optimizer": torch.optim.SGD}, path)
    with pytest.raises(TrixaiError, match=r"holds Python objects besides tensors.*state_dict\(\)"):
        read_state_dict(path)


def test_grayscale_first_conv_is_summed_over_rgb(tmp_path):
    state = _timm_state(num_classes=2)
    path = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = create_model("test_efficientnet", 2, in_chans=1, weights=str(path), resolution=32)
    expected = state["conv_stem.weight"].sum(dim=1, keepdim=True)
    assert torch.allclose(model.backbone.conv_stem.weight, expected)


def test_torchvision_resnet_weights_fit_timm_resnet():
    torch.manual_seed(0)
    tv = torchvision.models.resnet18(num_classes=4).state_dict()
    backbone = timm.create_model("resnet18", num_classes=4)
    assert apply_weights(backbone, dict(tv), source="tv") == []
    assert all(torch.equal(backbone.state_dict()[k], v) for k, v in tv.items())


def test_other_architecture_is_named_with_counts(tmp_path):
    path = tmp_path / "resnet.safetensors"
    save_file({k: v.contiguous() for k, v in _timm_state("test_resnet").items()}, str(path))
    with pytest.raises(TrixaiError) as err:
        create_model("test_efficientnet", 2, weights=str(path), resolution=32)
    message = str(err.value)
    own = len(timm.create_model("test_efficientnet").state_dict())
    assert "does not fit test_efficientnet:" in message and f"of {own} keys" in message
    assert "\n  missing: blocks." in message and "\n  unexpected: " in message
    assert "likely cause: weights of another architecture: check model.name" in message


def test_misshaped_body_is_listed_with_shapes():
    state = _timm_state(num_classes=2)
    state["conv_stem.weight"] = torch.zeros(4, 3, 3, 3)
    with pytest.raises(TrixaiError, match=r"(?s)1 misshaped .*conv_stem.weight \(4, 3, 3, 3\) vs .*another width or depth"):
        apply_weights(timm.create_model("test_efficientnet", num_classes=2), state, source="file")


def test_unknown_format_is_refused(tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"\0")
    with pytest.raises(TrixaiError, match=r"unknown weights format '.h5'"):
        read_state_dict(path)


def test_deeper_variant_of_the_same_family_is_named():
    state = _timm_state("efficientnet_b1")
    with pytest.raises(TrixaiError, match=r"(?s)0 missing, 148 unexpected .*another width or depth"):
        apply_weights(timm.create_model("efficientnet_b0"), state, source="b1")
