"""trainer=ddp on CPU (2 gloo processes) trains and scores exactly like one process on the same data.

Equal runs need the same global batch (2 x 14 = 28 = the whole training split, so there is one step per epoch
in both), no randomness in training (deterministic flip only, no dropout/drop-path, PGD without random start)
and a model without BatchNorm running statistics (timm's ``test_efficientnet_gn``; SyncBatchNorm is GPU-only).
Then gradients averaged across processes equal the full-batch gradient, and validation/test metrics that are
synchronised across processes equal the single-process ones.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

COMMON = [
    "model=efficientnet_b0", "model.name=test_efficientnet_gn", "model.resolution=32", "model.drop_rate=0",
    "model.drop_path_rate=0", "dataset.n_train=28", "dataset.n_val=28", "dataset.n_test=28", "dataset.balanced=true",
    "dataset.min_per_class=0", "dataset.cache_dir=null", "data.augment.random_resized_crop=null",
    "data.augment.vflip=0", "data.augment.rotation=0", "data.augment.color_jitter=null", "data.augment.hflip=1.0",
    "data.eval_batch_size=14", "objective=standard", "optimizer=sgd", "attack.random_start=false", "attack.steps=2",
    "trainer.max_epochs=2", "logger=csv",
]
VOLATILE = {"seconds", "images_per_s", "execution", "resumed_batches", "source", "figures", "seconds_per_image"}
DDP_CPU = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
           "trainer.benchmark=false", "trainer.sync_batchnorm=false"]


def _train(run_dir: Path, *overrides: str) -> dict:
    # one thread per process in both (Lightning gives each CPU DDP process cores // processes = 1 here): float sums
    # on the CPU depend on the thread count
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("trixai-train")), *COMMON, *overrides, f"hydra.run.dir={run_dir}"]
    result = subprocess.run(command, cwd=run_dir.parent, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    single = _train(tmp_path / "single", "data.batch_size=28")
    ddp = _train(tmp_path / "ddp", *DDP_CPU, "data.batch_size=14")
    assert single["epochs"] == ddp["epochs"] == 2
    for stage in ("val", "test"):
        assert single[stage].keys() == ddp[stage].keys() and "rob_acc" in single[stage]
        for name, value in single[stage].items():
            assert ddp[stage][name] == pytest.approx(value, abs=1e-5), name
    weights_single = load_file(str(tmp_path / "single" / "model.safetensors"))
    weights_ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    assert weights_single.keys() == weights_ddp.keys()
    for key, value in weights_single.items():
        assert torch.allclose(value, weights_ddp[key], atol=1e-5), key


def _numbers(report, prefix: str = "") -> dict:
    """The report's numbers by path, without times and where the files went."""
    if isinstance(report, dict):
        return {k: v for key, value in report.items() if key not in VOLATILE
                for k, v in _numbers(value, f"{prefix}/{key}").items()}
    if isinstance(report, list):
        return {k: v for i, value in enumerate(report) for k, v in _numbers(value, f"{prefix}[{i}]").items()}
    return {prefix: report} if isinstance(report, (int, float)) and not isinstance(report, bool) else {}


@pytest.mark.slow
def test_ddp_ranks_run_the_test_suites_on_their_shards(tmp_path):
    """Under DDP every rank runs the suites on its blocks of the test split and rank zero merges: the same reports
    as one process, number for number (untrained weights, so both hold the very same model)."""
    suites = ["trainer.max_epochs=0", "corruptions=generic", "corruptions.severities=[3]",
              "corruptions.only=[gaussian_noise]", "corruptions.explanation_severity=3", "explanation.max_points=12",
              "explanation.metrics.sanity_samples=4", "robustness.masking.points=8", "robustness.masking.steps=2",
              "block_size=4", "profile=null"]
    _train(tmp_path / "single", *suites, "data.batch_size=28")
    _train(tmp_path / "ddp", *DDP_CPU, *suites, "data.batch_size=14")
    assert (tmp_path / "ddp" / "shards" / "1-of-2" / "done.json").exists()
    for name in ("robustness.json", "corruptions.json", "explanations.json"):
        one = _numbers(json.loads((tmp_path / "single" / name).read_text()))
        assert one == _numbers(json.loads((tmp_path / "ddp" / name).read_text())), name
    execution = json.loads((tmp_path / "ddp" / "robustness.json").read_text())["execution"]
    assert execution["workers"] == 2 and sum(s["points"] for s in execution["shards"]) == 28
