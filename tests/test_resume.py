"""A run killed with ``kill -9`` in epoch 2 and resumed from ``last.ckpt`` ends with exactly the metrics of the
uninterrupted run: training, validation and every test-phase number (test/rob_* and the suites)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
RUN = ["model.name=test_efficientnet", "model.resolution=32", "dataset.n_train=96", "dataset.n_val=28",
       "dataset.n_test=40", "dataset.min_per_class=2", "data.batch_size=16", "data.eval_batch_size=16",
       "trainer.max_epochs=3", "trainer.enable_progress_bar=false", "objective=trades", "attack=pgd7",
       "attack.steps=2", "robustness.attacks=[clean,fgsm]", "robustness.masking.points=8",
       "robustness.masking.steps=2", "explanation.max_points=8", "explanation.metrics.steps=3",
       "explanation.metrics.sanity_samples=4", "profile=null", "logger=csv", "threads=1"]


def _train(tmp_path: Path, run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "TRIXAI_DATA_DIR": str(tmp_path / "data")}
    return subprocess.Popen([str(BIN / "trixai-train"), *RUN, f"hydra.run.dir={run_dir}", *extra], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(process: subprocess.Popen, timeout: int = 900) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


@pytest.mark.slow
def test_kill_9_in_epoch_2_then_resume_gives_identical_metrics(tmp_path):
    _finish(_train(tmp_path, tmp_path / "whole"))
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())

    killed = _train(tmp_path, tmp_path / "killed")
    last = tmp_path / "killed" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 600
    while not last.exists():  # written at the end of epoch 1: epoch 2 is running
        assert killed.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.communicate()
    assert not (tmp_path / "killed" / "metrics.json").exists()

    _finish(_train(tmp_path, tmp_path / "resumed", f"ckpt_path={last}"))
    resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert resumed["epochs"] == whole["epochs"] == 3
    assert resumed["test"] == whole["test"] and "rob_auroc" in whole["test"]
    assert resumed["extra"] == whole["extra"] and "robust/pgd2/8_255/accuracy" in whole["extra"]
    assert resumed["val"] == whole["val"] and resumed["best_score"] == whole["best_score"]
    suite = json.loads((tmp_path / "whole" / "robustness.json").read_text())
    # the evaluation attack (attack=pgd7 with steps=2: PGD-2) is the suite's pgd2 entry, from the same pass
    assert suite["results"]["pgd2"]["8/255"]["accuracy"] == pytest.approx(whole["test"]["rob_acc"], abs=1e-6)
