"""A user's own Hydra app composes trixai's configs through the installed search-path plugin, resolvers included."""

import json
import os
import subprocess
import sys
from pathlib import Path

APP = '''
import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    resolved = {"group": cfg.logger.wandb.group, "resolution": OmegaConf.select(cfg, "model.resolution")}
    Path(HydraConfig.get().runtime.output_dir, "resolved.json").write_text(json.dumps(resolved))


if __name__ == "__main__":
    main()
'''

# paths, model and logger come from pkg://trixai.conf (the plugin's search path), not from this conf dir
CONFIGS = {
    "config": "defaults: [{paths: default}, {model: efficientnet_phi}, {logger: wandb}, _self_]\n",
    "logger_only": "defaults: [{paths: default}, {logger: wandb}, _self_]\n",  # no model: no torch import
}


def _run_app(tmp_path: Path, *overrides: str) -> None:
    (tmp_path / "conf").mkdir(exist_ok=True)
    for name, text in CONFIGS.items():
        (tmp_path / "conf" / f"{name}.yaml").write_text(text)
    (tmp_path / "my_app.py").write_text(APP)
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run([sys.executable, "my_app.py", *overrides], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]


def _resolved(job_dir: Path) -> dict:
    return json.loads((job_dir / "resolved.json").read_text())


def test_single_run_resolves_wandb_group_and_phi_resolution(tmp_path):
    _run_app(tmp_path, "model.phi=1.5", f"hydra.run.dir={tmp_path / 'run'}")
    assert _resolved(tmp_path / "run") == {"group": None, "resolution": 280}  # 224 * 1.15^1.5 = 276.25 -> 280


def test_multirun_groups_jobs_by_sweep(tmp_path):
    sweep = tmp_path / "multirun" / "my-sweep"
    _run_app(tmp_path, "-m", "--config-name", "logger_only", "logger.wandb.project=a,b", f"hydra.sweep.dir={sweep}")
    assert [_resolved(sweep / job) for job in ("0", "1")] == [{"group": "my_app-my-sweep", "resolution": None}] * 2
