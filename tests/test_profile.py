"""Profiling: exact FLOPs/bytes on hand-made models, published B0-B3 params/FLOPs, profile fields, trixai-profile."""

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_module
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.models import create_model
from trixai.tasks.profile import run_profile
from trixai.training.profiling import count_flops, model_bytes, peak_memory_bytes, profile_model

# Tan & Le 2019 (Table 1) and He et al. 2016: published params / FLOPs (multiply-adds) at 1000 classes and the published resolution.
PUBLISHED = {"efficientnet_b0": (224, 5.3e6, 0.39e9), "efficientnet_b1": (240, 7.8e6, 0.70e9),
             "efficientnet_b2": (260, 9.2e6, 1.0e9), "efficientnet_b3": (300, 12e6, 1.8e9)}


def test_flops_on_meta_device_equal_real_count():
    model = create_model("test_efficientnet", 4, resolution=32)
    with torch.device("meta"):
        meta_model = create_model("test_efficientnet", 4, resolution=32)
    assert count_flops(meta_model, torch.empty(2, 3, 32, 32, device="meta")) == count_flops(model, torch.rand(2, 3, 32, 32))


def test_flops_and_bytes_exact_on_hand_made_model():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 10))
    # conv: 8*8 outputs x 4 channels x (3*3*3) MACs; linear: 256 x 10 MACs; 2 FLOPs per MAC.
    assert count_flops(model, torch.rand(1, 3, 8, 8)) == 2 * (8 * 8 * 4 * 27 + 256 * 10)
    assert count_flops(model, torch.rand(3, 3, 8, 8)) == 3 * 2 * (8 * 8 * 4 * 27 + 256 * 10)
    floats = 4 * 3 * 9 + 4 * 4 + 2570  # conv weight, BN weight/bias/running mean/var, linear
    assert model_bytes(model) == {"fp32": 4 * floats + 8, "fp16": 2 * floats + 8}  # + int64 num_batches_tracked


def test_cpu_peak_memory_counts_live_tensors():
    def allocate():
        a = torch.ones(250_000)  # 1,000,000 bytes
        b = torch.ones(250_000)
        del a
        c = torch.ones(100_000)
        return b, c

    assert peak_memory_bytes(allocate, device=torch.device("cpu")) == 2_000_000


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_params_and_flops_within_10_percent(name):
    resolution, params, macs = PUBLISHED[name]
    with torch.device("meta"):  # shapes only: FlopCounterMode counts the same FLOPs without computing
        model = create_model(name, 1000, resolution=resolution)
    assert math.isclose(sum(p.numel() for p in model.parameters()), params, rel_tol=0.10)
    flops = count_flops(model, torch.empty(1, 3, resolution, resolution, device="meta"))
    assert math.isclose(flops / 2, macs, rel_tol=0.10)


def test_profile_fields_positive_and_model_untouched():
    torch.manual_seed(0)
    model = create_model("test_efficientnet", 5, resolution=32).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    profile = profile_model(model, batch_sizes=(1, 4), train_batch=4, warmup=1, repeats=2, trades_steps=2)
    for key in ("params", "flops", "macs", "size_fp32_bytes", "size_fp16_bytes", "latency_ms_b1", "latency_ms_b4",
                "throughput_b1", "throughput_b4", "peak_mem_infer_bytes", "peak_mem_train_bytes"):
        assert profile[key] > 0, key
    assert profile["params"] == sum(p.numel() for p in model.parameters())
    assert profile["macs"] == profile["flops"] // 2
    assert profile["resolution"] == 32 and profile["batch_sizes"] == [1, 4]
    assert profile["peak_mem_train_bytes"] > profile["peak_mem_infer_bytes"]
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_channels_last_option_and_no_train_step():
    model = create_model("test_resnet", 3, resolution=32)
    profile = profile_model(model, batch_sizes=(2,), warmup=0, repeats=1, channels_last=True, train_step=False)
    assert profile["channels_last"] and "peak_mem_train_bytes" not in profile
    assert next(model.parameters()).is_contiguous()


@pytest.mark.parametrize("kwargs, culprit", [
    ({"device": "cuda"}, "CUDA is not available"),
    ({"resolution": 4}, "resolution"),
    ({"batch_sizes": ()}, "batch_sizes"),
])
def test_bad_profile_arguments(kwargs, culprit):
    if culprit.startswith("CUDA") and torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(TrixaiError, match=culprit):
        profile_model(create_model("test_efficientnet", 3, resolution=32), **kwargs)


def test_trixai_profile_writes_profile_json(tmp_path, capsys):
    with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
        cfg = compose("profile", overrides=[
            "model=efficientnet_phi", "model.phi=0.5", "model.base_resolution=32", "model.se=false", "num_classes=10",
            "batch_sizes=[1,2]", "train_step=false", "warmup=0", "repeats=1",
            f"paths.output_dir={tmp_path}"])
    run_profile(cfg)
    profile = json.loads((tmp_path / "profile.json").read_text())
    assert profile["model"] == "efficientnet_phi" and profile["resolution"] == 32  # 32 * 1.15^0.5 = 34.3 -> 32
    assert profile["model_config"]["se"] is False and profile["latency_ms_b2"] > 0
    assert "peak memory, inference batch 2" in capsys.readouterr().out
