"""Time the test phase of ``make demo`` (test loop, robustness and explanation suites, export) on a trained run.

Resumes ``trixai-train experiment=demo`` from the run's final ``last.ckpt``: training is already complete, so
the job runs only the test phase, the suites and the export; the profile is switched off (timed elsewhere).
The time spent drawing bootstrap resamples and computing metrics on them (``trixai.core.bootstrap``: every
confidence interval of the test phase) is summed and printed as ``bootstrap_seconds`` (when that module exists).
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


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        return platform.processor() or "unknown CPU"


def time_bootstrap() -> list[float]:
    """Sum the seconds spent in ``Bootstrap.draw`` and ``Bootstrap.intervals`` into the returned one-item list."""
    spent = [0.0]
    try:
        from trixai.core.bootstrap import Bootstrap
    except ImportError:  # a version without confidence intervals
        return spent

    def timed(fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - start
        return wrapper

    Bootstrap.intervals = timed(Bootstrap.intervals)
    Bootstrap.draw = classmethod(timed(Bootstrap.draw.__func__))
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="last.ckpt of a finished `trixai-train experiment=demo` run")
    parser.add_argument("overrides", nargs="*", help="extra config overrides")
    args = parser.parse_args()
    import trixai
    from trixai.tasks.compose import compose_job
    from trixai.tasks.train import train

    os.environ.setdefault("WANDB_MODE", "offline")
    out = Path(tempfile.mkdtemp(prefix="bench_test_phase_"))
    overrides = ["experiment=demo", f"ckpt_path={Path(args.ckpt).resolve()}", "profile=null", "logger=csv",
                 "trainer.enable_progress_bar=false", *args.overrides]
    cfg = compose_job(overrides, out)
    bootstrap = time_bootstrap()
    start = time.perf_counter()
    metrics = train(cfg)
    seconds = time.perf_counter() - start
    test = metrics["test"]
    print(json.dumps({
        "trixai": str(Path(trixai.__file__).parent), "cpu": cpu_name(), "threads": torch.get_num_threads(),
        "seconds": round(seconds, 1), "bootstrap_seconds": round(bootstrap[0], 2),
        "bootstrap_share": round(bootstrap[0] / seconds, 4), "test": test,
        "robust_suite": {k: v for k, v in metrics.get("extra", {}).items() if k.startswith("robust/")},
    }, indent=1, default=str))


if __name__ == "__main__":
    main()
