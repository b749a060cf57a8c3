"""``benchmarks/gpu_check.py --cpu`` runs end to end on the CPU and writes a report that says it is CPU mode (slow)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("pytest_gpu", "train_standard", "train_pgd_at", "train_trades", "eval_pgd10", "eval_autoattack",
         "gradcam", "deletion_insertion")


@pytest.mark.slow
def test_gpu_check_cpu_mode_reports_every_step(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--cpu", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["mode"] == "cpu" and "no number here is a GPU result" in report["note"]
    assert report["environment"]["device"] == "cpu"
    assert tuple(report["steps"]) == STEPS
    for name, step in report["steps"].items():
        assert step["status"] == "ok", (name, step["error"])
        assert math.isfinite(step["seconds"]) and step["seconds"] > 0, name
        assert step["peak_gpu_mib"] is None, name
        assert all(math.isfinite(value) for value in step["values"].values()), (name, step["values"])
        assert all(math.isfinite(rate) and rate > 0 for rate in step["images_per_s"].values()), (name, step)
        assert step["images_per_s"] or name == "pytest_gpu", name
    gpu_tests = report["steps"]["pytest_gpu"]["values"]
    assert gpu_tests["skipped"] > 0 and gpu_tests["passed"] == gpu_tests["failed"] == gpu_tests["errors"] == 0
    table = (out / "gpu_check.md").read_text()
    assert "CPU mode" in table and table.strip() in proc.stdout
    assert (out / "pytest_gpu.log").read_text().count("needs CUDA") >= 1
