"""Time the test phase of ``make demo`` (test loop, robustness and explanation suites, export) on a trained run.

Resumes ``trixai-train experiment=demo`` from the run's final ``last.ckpt``: training is already complete, so
the job runs only the test phase, the suites and the export; the profile is switched off (timed elsewhere).
Run it with the trixai of another checkout first on ``PYTHONPATH`` to compare versions on the same checkpoint:

    PYTHONPATH=/path/to/old/checkout python benchmarks/bench_test_phase.py --ckpt <run>/checkpoints/last.ckpt
    python benchmarks/bench_test_phase.py --ckpt <run>/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="last.ckpt of a finished `trixai-train experiment=demo` run")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()
    import trixai
    from trixai.tasks.train import train

    os.environ.setdefault("WANDB_MODE", "offline")
    out = Path(tempfile.mkdtemp(prefix="bench_test_phase_"))
    overrides = ["experiment=demo", f"ckpt_path={Path(args.ckpt).resolve()}", "profile=null", "logger=csv",
                 "trainer.enable_progress_bar=false", *args.overrides]
    with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.hydra.runtime.output_dir = str(out)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg.hydra
    start = time.perf_counter()
    metrics = train(cfg)
    seconds = time.perf_counter() - start
    test = metrics["test"]
    print(json.dumps({
        "trixai": str(Path(trixai.__file__).parent), "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1), "test": test,
        "robust_suite": {k: v for k, v in metrics.get("extra", {}).items() if k.startswith("robust/")},
    }, indent=1, default=str))


if __name__ == "__main__":
    main()
