"""Ablation sweeps: composed configs (fast), a quick multirun + report and a submitit_local multirun (slow)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

FULL = {"efficientnet_b0": 224, "efficientnet_b1": 240, "efficientnet_b2": 260, "efficientnet_b3": 300,
        "resnet50": 224}
# quick: full * 48 / 224 to a multiple of 4 (240 -> 51.4 -> 52, 260 -> 55.7 -> 56, 300 -> 64.3 -> 64)
QUICK = {"efficientnet_b0": 48, "efficientnet_b1": 52, "efficientnet_b2": 56, "efficientnet_b3": 64, "resnet50": 48}


def _compose(*overrides: str):
    with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_scaling_ablation_sweeps_models_and_objectives():
    cfg = _compose("experiment=scaling_ablation")
    params = cfg.hydra.sweeper.params
    assert params.model.split(",") == list(FULL)
    assert params.objective.split(",") == ["standard", "trades"]
    assert cfg.task_name == "scaling_ablation"


@pytest.mark.parametrize("model", list(FULL))
@pytest.mark.parametrize("quick", [False, True])
def test_each_model_trains_at_its_own_resolution(model, quick):
    cfg = _compose("experiment=scaling_ablation", f"model={model}", *(["+quick=smoke"] if quick else []))
    expected = (QUICK if quick else FULL)[model]
    assert cfg.model.resolution == expected and cfg.dataset.image_size == expected
    assert cfg.data.batch_size == (16 if quick else 64)
    assert cfg.trainer.limit_train_batches == (2 if quick else 1.0)


def test_quick_overrides_the_experiment_and_the_command_line_overrides_quick():
    cfg = _compose("experiment=se_ablation", "+quick=smoke", "data.eval_batch_size=8")
    assert cfg.hydra.runtime.choices.quick == "smoke"
    assert (cfg.data.batch_size, cfg.data.eval_batch_size) == (16, 8)
    assert (cfg.trainer.max_steps, cfg.trainer.limit_val_batches, cfg.trainer.limit_test_batches) == (2, 1, 1)
    assert (list(cfg.profile.batch_sizes), cfg.profile.train_batch, cfg.profile.repeats) == ([1, 4], 2, 2)
    assert "quick" not in _compose("experiment=se_ablation").hydra.runtime.choices


def test_se_ablation_builds_variants_with_and_without_se():
    cfg = _compose("experiment=se_ablation", "model.variant=b2", "model.se=false")
    params = cfg.hydra.sweeper.params
    assert params["model.variant"].split(",") == ["b0", "b1", "b2", "b3"]
    assert params["model.se"].split(",") == ["true", "false"]
    assert cfg.model.name == "efficientnet_phi" and cfg.model.resolution == 260
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert _compose("experiment=se_ablation", "model.variant=b3", "+quick=smoke").model.resolution == 64
    from hydra.utils import instantiate

    model = instantiate(model_cfg, num_classes=7)
    assert not [m for m in model.modules() if type(m).__name__ == "SqueezeExcite"]


def test_launcher_configs_compose():
    for launcher, target in (("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher"),
                             ("submitit_slurm", "SlurmLauncher"), ("slurm_gpu", "SlurmLauncher")):
        cfg = _compose("experiment=scaling_ablation", f"hydra/launcher={launcher}")
        assert cfg.hydra.launcher._target_.endswith(target)
    assert _compose("hydra/launcher=slurm_gpu").hydra.launcher.gpus_per_node == 1


QUICK_JOBS = ["experiment=scaling_ablation", "+quick=smoke", "quick_base_resolution=32", "logger=csv",
              "model=efficientnet_b0", "objective=standard,trades", "attack.steps=2", "dataset.cache_dir=null"]


def _run(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def _script(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_quick_sweep_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    _run([_script("trixai-train"), "-m", *QUICK_JOBS, f"hydra.sweep.dir={sweep}"], tmp_path)
    runs = sorted(p.parent for p in sweep.rglob("metrics.json"))
    assert len(runs) == 2
    report = tmp_path / "report"
    _run([_script("trixai-report"), f"dir={sweep}", f"out_dir={report}", "wandb.mode=offline"], tmp_path)
    rows = _rows(report / "report.csv")
    assert len(rows) == 2
    assert sorted(r["objective"] for r in rows) == ["standard", "trades"]
    assert all(r["model"] == "efficientnet_b0" and r["resolution"] == "32" for r in rows)
    for row in rows:
        assert 0.0 <= float(row["test/rob_acc"]) <= float(row["test/acc"]) + 1e-9
        assert float(row["profile/flops"]) > 0
    for name in ("report.md", "summary.csv", "pareto_robust_acc_vs_flops.png"):
        assert (report / name).stat().st_size > 0
    assert (report / "report.md").read_text().count("| efficientnet_b0 |") == 2
    assert list((report / "wandb").glob("offline-run-*"))


@pytest.mark.slow
def test_submitit_local_multirun_of_two_quick_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    # two jobs at once on this machine: one thread each, or the oversubscribed CPU runs them 5x slower
    _run([_script("trixai-train"), "-m", *QUICK_JOBS, "threads=1", "hydra/launcher=submitit_local",
          "hydra.launcher.timeout_min=20", f"hydra.sweep.dir={sweep}"], tmp_path)
    metrics = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(metrics) == 2 and all("acc" in m["test"] for m in metrics)
    assert list(sweep.glob(".submitit/*/*_log.out"))  # the jobs ran through submitit


@pytest.mark.slow
def test_joblib_launcher_runs_two_quick_jobs_in_parallel(tmp_path):
    sweep = tmp_path / "sweep"
    _run([_script("trixai-train"), "-m", *QUICK_JOBS, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
          f"hydra.sweep.dir={sweep}"], tmp_path)
    metrics = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/metrics.json"))]
    assert len(metrics) == 2 and all("rob_acc" in m["test"] for m in metrics)
