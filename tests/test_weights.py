"""Local weight files: safe reading, wrapper layouts, classifier and first-conv adaptation, explained mismatches,
files without BatchNorm counters, program archives (TorchScript, torch.export) told apart from state dicts."""

from __future__ import annotations

import logging
import warnings

import pytest
import timm
import torch
import torchvision
from helpers import tiny_cnn
from safetensors.torch import load_file, save_file

import trixai
from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.models.weights import apply_weights, program_format, read_state_dict
from trixai.tasks.train import train


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


def _without_counters(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``net``'s state dict as a file converted from another framework has it: every ``num_batches_tracked`` left
    out (deleted from an OrderedDict that keeps its ``_metadata``, as a pruned ``model.state_dict()`` is pickled);
    the running statistics first set far from their initial 0/1 and the counters to 17."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.num_batches_tracked.fill_(17)
    state = net.state_dict()
    for key in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[key]
    return state


def test_efficientnet_b0_file_without_batchnorm_counters_loads_exactly(tmp_path, caplog):
    torch.manual_seed(0)
    net = timm.create_model("efficientnet_b0", pretrained=False, num_classes=7).eval()
    state = _without_counters(net)
    assert len(net.state_dict()) - len(state) == 49  # B0's 49 BatchNorm layers
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "b0.safetensors"))
    torch.save(state, tmp_path / "b0.pth")
    reference = timm.create_model("efficientnet_b0", num_classes=7)
    reference.load_state_dict(load_file(str(tmp_path / "b0.safetensors")), strict=True)  # PyTorch accepts it too
    x = torch.rand(2, 3, 32, 32)
    for path in (tmp_path / "b0.safetensors", tmp_path / "b0.pth"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trixai.models.weights"):
            model = create_model("efficientnet_b0", 7, weights=str(path), resolution=32).eval()
        notes = [r.getMessage() for r in caplog.records if "num_batches_tracked" in r.getMessage()]
        assert len(notes) == 1 and "49 BatchNorm num_batches_tracked counters absent" in notes[0], notes
        counters = [v for k, v in model.backbone.state_dict().items() if k.endswith("num_batches_tracked")]
        assert len(counters) == 49 and all(int(c) == 0 for c in counters)  # the new model's, not the source's 17
        with torch.no_grad():
            assert torch.equal(model(x), net(model.normalize(x))), path


def test_file_without_batchnorm_counters_fine_tunes_through_the_config(compose_cfg, tmp_path):
    torch.manual_seed(0)
    state = _without_counters(timm.create_model("test_efficientnet", num_classes=7))
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "converted.safetensors"))
    cfg = compose_cfg(f"model.weights={tmp_path / 'converted.safetensors'}", "attack=none", "test=false",
                      "profile=null")
    train(cfg)  # a real Lightning fit of the 7-class synthetic lesions from the file's weights
    tuned = trixai.load_model(cfg.paths.output_dir).backbone.state_dict()
    steps = cfg.trainer.max_epochs * cfg.trainer.limit_train_batches
    counters = [int(v) for k, v in tuned.items() if k.endswith("num_batches_tracked")]
    assert steps == 2 and counters and set(counters) == {steps}  # counted from 0, one per training step
    assert not torch.equal(tuned["conv_stem.weight"], state["conv_stem.weight"])  # the weights moved
    assert all(torch.isfinite(v).all() for v in tuned.values() if v.is_floating_point())


def test_missing_running_statistics_are_still_refused(tmp_path):
    state = {k: v for k, v in _timm_state(num_classes=2).items()
             if not k.endswith("num_batches_tracked") and k != "bn1.running_var"}
    path = tmp_path / "no_var.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(TrixaiError) as err:
        create_model("test_efficientnet", 2, weights=str(path), resolution=32)
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"model.weights={str(path)!r} does not fit test_efficientnet: 1 missing, 0 unexpected")
    assert lines[1:] == ["  missing: bn1.running_var",
                         "  likely cause: BatchNorm buffers absent: the file was saved without buffers"]


def test_program_archives_are_told_apart_from_state_dicts(tmp_path):
    net, x = tiny_cnn().eval(), torch.rand(2, 3, 8, 8)
    torch.save(net.state_dict(), tmp_path / "state.pth")  # a zip archive too
    save_file(net.state_dict(), str(tmp_path / "state.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(net, x), str(tmp_path / "scripted.pt"))
    torch.export.save(torch.export.export(net, (x,)), str(tmp_path / "exported.pt2"))
    names = ("state.pth", "state.safetensors", "scripted.pt", "exported.pt2")
    assert [program_format(tmp_path / name) for name in names] == [None, None, "TorchScript", "ExportedProgram"]
    with pytest.raises(TrixaiError, match=r"scripted.pt' is a TorchScript file \(a model with its own architecture\), "
                                          r"not a state dict: save its tensors, torch.save\(torch.jit.load\(path\)"):
        create_model("test_efficientnet", 2, weights=str(tmp_path / "scripted.pt"), resolution=32)
    with pytest.raises(TrixaiError, match=r"exported.pt2' is an ExportedProgram \(torch.export\) file .*"
                                          r"torch.export.load\(path\).module\(\).state_dict\(\)"):
        read_state_dict(tmp_path / "exported.pt2")
