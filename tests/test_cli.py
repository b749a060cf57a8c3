"""The console scripts as a user runs them: from any directory, with one clear message on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
FAST = ["model.resolution=32", "dataset.n_train=40", "dataset.n_val=14", "dataset.n_test=14",
        "dataset.min_per_class=2", "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false",
        "attack.steps=1", "data.batch_size=8"]


def run(tmp_path: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "TRIXAI_DATA_DIR": str(tmp_path / "data")}
    return subprocess.run([str(BIN / "trixai-train"), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_cfg_job_from_any_directory(tmp_path):
    proc = run(tmp_path, "--cfg", "job", "model=resnet50")
    assert proc.returncode == 0, proc.stderr
    assert "name: resnet50" in proc.stdout and "_target_: torch.optim.SGD" in proc.stdout


def test_unknown_group_option_lists_allowed(tmp_path):
    proc = run(tmp_path, "attack=pgd11")
    assert proc.returncode != 0
    assert "Could not find 'attack/pgd11'" in proc.stderr
    for option in ("fgsm", "none", "pgd10", "pgd20", "pgd7"):
        assert option in proc.stderr


def test_unknown_timm_name_is_one_message(tmp_path):
    proc = run(tmp_path, "model.name=efficientnet_bzero", *FAST)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("trixai: error: model.name='efficientnet_bzero'")
    assert "Traceback" not in proc.stderr


def test_bad_override_names_the_key(tmp_path):
    proc = run(tmp_path, "model.resolutoin=64")
    assert proc.returncode != 0 and "model.resolutoin" in proc.stderr


@pytest.mark.slow
def test_multirun_gives_one_run_per_value(tmp_path):
    proc = run(tmp_path, "-m", "model=efficientnet_b0,efficientnet_b1", *FAST, "logger=wandb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted((tmp_path / "outputs" / "train" / "multiruns").glob("*/[0-9]"))
    assert [r.name for r in runs] == ["0", "1"]
    names = [json.loads((r / "model.json").read_text())["timm_name"] for r in runs]
    assert names == ["efficientnet_b0", "efficientnet_b1"]
    groups = {json.loads((r / "model.json").read_text())["config"]["logger"]["wandb"]["group"] for r in runs}
    assert len(groups) == 1 and groups.pop().startswith("train-")  # one W&B group per sweep
    assert all(list((r / "wandb").glob("offline-run-*")) for r in runs)


@pytest.mark.parametrize("script", ["trixai-eval", "trixai-explain", "trixai-report", "trixai-profile"])
def test_other_entry_points_exist(script):
    assert (BIN / script).exists()


@pytest.mark.parametrize(("arg", "expected"), [
    ("explainer=null", "'explainer' is a config group, chosen by name (explainer=none switches it off); options: "),
    ("attack@eval_attack=null", "(attack@eval_attack=none switches it off)"),
    ("model=null", "options: efficientnet_b0, efficientnet_b1"),
    ("hydra/launcher=null", "--hydra-help lists the options"),
    ("robustness=null", "(robustness=none switches it off); options: cpu, full, none"),
    ("+quick=true", "'quick' is a config group, chosen by name; options: smoke"),
])
def test_a_config_group_set_to_null_gets_one_message(capsys, arg, expected):
    from trixai.cli import check_group_overrides

    with pytest.raises(SystemExit) as exit_info:
        check_group_overrides(["seed=1", arg])
    assert exit_info.value.code == 2
    assert expected in capsys.readouterr().err


def test_null_for_a_plain_key_passes_through():
    from trixai.cli import check_group_overrides

    check_group_overrides(["eval_attack=null", "profile=null", "explainer=gradcam", "ckpt_path=null", "test=false"])
