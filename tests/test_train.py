"""End-to-end ``trixai-train`` on the real composed config with tiny models: run files, reload, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import trixai
from trixai.core.errors import TrixaiError
from trixai.tasks.train import train
from trixai.training.objectives import Standard


def test_train_writes_run_files_and_reloads_exactly(compose_cfg, tmp_path):
    cfg = compose_cfg("objective=trades", "logger=wandb")
    metrics = train(cfg)
    run = Path(cfg.paths.output_dir)
    for name in ("model.safetensors", "model.json", "metrics.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
                 "csv/metrics.csv", "report.html"):
        assert (run / name).is_file(), name
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb")), "offline W&B run files"
    meta = json.loads((run / "model.json").read_text())
    assert meta["class_names"] == ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    assert meta["task"] == "multiclass" and meta["timm_name"] == "test_efficientnet" and meta["input_size"] == 32
    assert meta["seed"] == 42 and meta["config"]["objective"]["beta"] == 6.0
    assert set(meta["versions"]) >= {"torch", "timm", "lightning", "trixai"} and "commit" in meta["git"]
    assert meta["metrics"]["test"] == metrics["test"]
    assert {"acc", "rob_acc", "bal_acc", "top2", "f1", "auroc"} <= set(metrics["test"])
    assert metrics["monitor"] == "val/rob_acc" and metrics["eval_attack"]["settings"]["steps"] == 2 and metrics["eval_attack"]["name"] == "pgd2"

    x = torch.rand(5, 3, 32, 32)
    reference = trixai.load_model(run)
    with torch.no_grad():
        expected = reference(x)
        for source in (run / "model.safetensors", run / "checkpoints" / "best.ckpt"):
            model = trixai.load_model(source)
            assert not model.training and model.class_names == reference.class_names
            assert torch.equal(model(x), expected), source


def test_same_seed_same_metrics(compose_cfg, tmp_path):
    first = train(compose_cfg("seed=7", "hydra.run.dir=unused"))
    (tmp_path / "run").rename(tmp_path / "run1")
    second = train(compose_cfg("seed=7"))
    assert first["test"] == second["test"] and first["val"] == second["val"]


def test_multilabel_dataset_trains_with_auroc_monitor(compose_cfg):
    metrics = train(compose_cfg("dataset=synthetic_cxr", "objective=pgd_at", "dataset.n_train=40",
                                "dataset.n_val=20", "dataset.n_test=20"))
    assert metrics["monitor"] == "val/rob_auroc"
    assert {"auroc", "auprc", "rob_auroc"} <= set(metrics["test"])
    per_label = metrics["test"]["auroc_per_label"]
    assert list(per_label) == ["Cardiomegaly", "Effusion", "Nodule", "Pneumothorax", "Consolidation"]
    defined = [v for v in per_label.values() if v is not None]
    assert metrics["test"]["auroc"] == pytest.approx(sum(defined) / len(defined), abs=1e-5)
    scalars = {k: v for k, v in metrics["test"].items() if isinstance(v, float)}
    assert {f"{k}_ci95" for k in scalars} <= set(metrics["test"])  # an interval beside every metric
    for key, value in scalars.items():
        low, high = metrics["test"][f"{key}_ci95"]
        assert 0 <= low <= high <= 1, key
    low, high = metrics["test"]["acc_ci95"]  # a mean: its percentile interval holds the point estimate
    assert low <= metrics["test"]["acc"] <= high


def test_no_attack_monitors_clean_accuracy(compose_cfg):
    metrics = train(compose_cfg("attack=none", "data.class_weighting=inverse", "data.balanced_sampler=true"))
    assert metrics["monitor"] == "val/acc" and "rob_acc" not in metrics["test"]


def test_nan_loss_stops_with_the_step(compose_cfg, monkeypatch):
    original = Standard.__call__

    def poisoned(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(Standard, "__call__", poisoned)
    with pytest.raises(TrixaiError, match=r"non-finite training loss .* epoch 0, global step 0, batch 0"):
        train(compose_cfg("attack=none"))


def test_trades_without_attack_is_refused(compose_cfg):
    with pytest.raises(TrixaiError, match=r"objective=trades cannot use attack=none: choose attack=fgsm\|pgd7\|pgd10"):
        train(compose_cfg("objective=trades", "attack=none"))


def test_a_callback_set_to_null_is_dropped(compose_cfg):
    cfg = compose_cfg("attack=none", "callbacks.model_checkpoint=null")
    assert cfg.callbacks.model_checkpoint is None
    assert "acc" in train(cfg)["test"]


def test_progress_bar_off_needs_no_callback_override(compose_cfg):
    cfg = compose_cfg("attack=none", "test=false")
    assert not cfg.trainer.enable_progress_bar and cfg.callbacks.progress_bar is not None
    assert "acc" in train(cfg)["val"]


def test_threads_sets_the_job_s_cpu_threads(compose_cfg):
    before = torch.get_num_threads()
    try:
        train(compose_cfg("attack=none", "threads=1", "test=false"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("threads", [0, -2, "two"])
def test_a_bad_thread_count_names_the_key(compose_cfg, threads):
    with pytest.raises(TrixaiError, match="threads="):
        train(compose_cfg("attack=none", f"threads={threads}"))
