"""One prepared GPU check (issue 19): trixai's GPU path measured in one run of a few minutes on one GPU.

Each step is timed and a failing step is recorded without stopping the others:

1. ``pytest -m gpu tests/test_gpu.py`` in a subprocess: pass / fail / skip counts.
2. Training throughput of trixai's ``Standard``, ``PGDAT`` and ``TRADES`` objectives (inner PGD-10, eps 8/255)
   under bf16 autocast and channels_last, as ``trainer=gpu`` trains (cudnn benchmark on).
3. Evaluation throughput of ``PGD`` (10 steps, early stop as ``trixai-eval`` runs it, and all 10 steps) and
   ``AutoAttack`` (standard) at eps 8/255, fp32 and channels_last as ``trixai-eval`` runs them.
4. ``grad_cam`` on a batch vs a per-image loop of the same function.
5. ``deletion_insertion`` on a batch vs a per-image loop of the same function (``batch_size=1``: one forward
   per step image); target >= 10x on a GPU, and the AUCs of both must agree.
6. Peak GPU memory of every step (``torch.cuda.max_memory_allocated``: every live tensor, model included).

Timings are medians of synchronised calls after warm-up calls. Models are random-init (no download); for
steps 3-5 the classifier is scaled x20 and the labels are the clean predictions (clean accuracy 1), so the
maps are not flat and the attacks have points to break. Writes ``gpu_check.json``, ``gpu_check.md`` and
``pytest_gpu.log`` to ``--out`` and prints the table.

``--cpu``: the same steps at tiny sizes (timm ``test_efficientnet``, 64 px, batch 8) on the CPU, < 2 minutes on
2 cores, to know the script works before GPU time is spent; the gpu tests then skip ("needs CUDA"). Its JSON
says ``"mode": "cpu"``: it is never a GPU result.

The GPU machine has torch, timm, lightning, torchmetrics, scipy and pytest but no network; hydra-core,
omegaconf and antlr4 travel as wheels (antlr4 4.9.3 is an sdist only, so ``pip wheel`` builds it here)::

    python -m pip wheel --no-deps -w .whl hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3
    python benchmarks/gpu_check.py --cpu --out /tmp/gpu_check          # here, first
    python benchmarks/gpu_check.py --wheels .whl --out "$OUT"          # on the GPU machine, .whl carried
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# trixai is imported inside the steps: it imports hydra, which ``--wheels`` may have to install first.
ROOT = Path(__file__).resolve().parents[1]
EPS = 8 / 255
NUM_CLASSES = 7
AUC_TOLERANCE = 0.02  # |AUC batched - AUC per image|: batch-size-dependent kernels (TF32 on a GPU) differ slightly
FAITHFULNESS_TARGET = 10.0


@dataclass(frozen=True)
class Sizes:
    """Model, image size, batches and iteration counts of one mode."""

    model: str
    size: int
    train_batch: int
    train_iters: tuple[int, int]  # warm-up, timed steps of standard training
    adv_iters: tuple[int, int]  # warm-up, timed steps of PGD-AT and TRADES
    eval_batch: int  # PGD-10
    autoattack_batch: int
    cam_batch: int
    faith_images: int
    faith_steps: int
    repeats: int  # timed calls of steps 3-5, after one warm-up call


GPU_SIZES = Sizes("efficientnet_b0", 224, 256, (10, 30), (2, 8), 256, 64, 64, 16, 20, 3)
CPU_SIZES = Sizes("test_efficientnet", 64, 8, (1, 3), (1, 2), 8, 8, 8, 4, 10, 2)


@dataclass
class Measured:
    """A step's throughputs (images/s), its other numbers, a note for the table and a failure, if any."""

    images_per_s: dict[str, float]
    values: dict[str, float]
    note: str
    failure: str | None = None


@dataclass
class Check:
    """What every step shares: device, sizes, output folder, subprocess environment and the eval batch."""

    device: torch.device
    sizes: Sizes
    out: Path
    env: dict[str, str]
    _eval: tuple[nn.Module, Tensor, Tensor] | None = field(default=None, init=False, repr=False)

    def eval_batch(self, n: int) -> tuple[nn.Module, Tensor, Tensor]:
        """The shared evaluation model (frozen use only) and the first ``n`` smooth images with their labels."""
        if self._eval is None:
            from trixai.models import create_model

            s = self.sizes
            torch.manual_seed(0)
            model = create_model(s.model, NUM_CLASSES, resolution=s.size).eval()
            with torch.no_grad():
                model.backbone.get_classifier().weight.mul_(20)
            model = model.to(self.device, memory_format=torch.channels_last)
            largest = max(s.eval_batch, s.autoattack_batch, s.cam_batch, s.faith_images)
            generator = torch.Generator().manual_seed(0)
            low = torch.rand(largest, 3, s.size // 8, s.size // 8, generator=generator)
            x = F.interpolate(low, size=(s.size, s.size), mode="bilinear", align_corners=False)
            x = x.to(self.device).contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                y = model(x).argmax(1)
            self._eval = model, x, y
        model, x, y = self._eval
        return model, x[:n], y[:n]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` synchronised calls after ``warmup`` calls; returns (seconds, last result)."""
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def pytest_gpu(check: Check) -> Measured:
    """Step 1: ``pytest -m gpu tests/test_gpu.py``; in CPU mode with no visible GPU, so every test must skip."""
    env = dict(check.env, **({"CUDA_VISIBLE_DEVICES": ""} if check.device.type == "cpu" else {}))
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-p", "no:cacheprovider",
                   f"--junitxml={junit}"]
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        (check.out / "pytest_gpu.log").write_text(f"$ {shlex.join(command)}\n\n{proc.stdout}\n{proc.stderr}")
        if not junit.is_file():
            raise RuntimeError(f"pytest exited {proc.returncode} without a report: {proc.stderr.strip()[-500:]}")
        suites = ET.parse(junit).getroot()
        suite = suites if suites.tag == "testsuite" else suites.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    values = {"passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
              "failed": counts["failures"], "errors": counts["errors"], "skipped": counts["skipped"]}
    note = ", ".join(f"{v} {k}" for k, v in values.items())
    failure = None
    if counts["tests"] == 0:
        failure = "no gpu tests collected"
    elif values["failed"] or values["errors"]:
        failure = f"{values['failed']} failed, {values['errors']} errors (see pytest_gpu.log)"
    elif check.device.type == "cuda" and values["skipped"]:
        failure = f"{values['skipped']} gpu tests skipped on a CUDA machine (see pytest_gpu.log)"
    if check.device.type == "cpu" and values["skipped"] == counts["tests"]:
        note = f"no CUDA: {note}"
    return Measured({}, values, note, failure)


def train_throughput(check: Check, objective_name: str) -> Measured:
    """Step 2: optimiser steps of one trixai objective under bf16 autocast, channels_last, cudnn benchmark."""
    from trixai.models import create_model
    from trixai.robust.attacks import PGD
    from trixai.training.objectives import PGDAT, TRADES, Standard

    s, device = check.sizes, check.device
    objective = {"standard": Standard, "pgd_at": PGDAT, "trades": TRADES}[objective_name]()
    attack = PGD(eps=EPS, alpha=EPS / 4, steps=10) if objective.attacks is not None else None
    torch.manual_seed(0)
    model = create_model(s.model, NUM_CLASSES, resolution=s.size).to(device, memory_format=torch.channels_last)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(s.train_batch, 3, s.size, s.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, NUM_CLASSES, (s.train_batch,), device=device)

    def step() -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = objective(model, x, y, attack=attack)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out.loss.detach()

    warmup, timed = s.adv_iters if attack is not None else s.train_iters
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        seconds, loss = median_time(step, device, warmup, timed)
    finally:
        torch.backends.cudnn.benchmark = benchmark
    inner = ", inner PGD-10 eps 8/255" if attack is not None else ""
    return Measured({"train": s.train_batch / seconds}, {"step_s": seconds, "loss": float(loss)},
                    f"bf16 autocast, channels_last, batch {s.train_batch}{inner}; median of {timed} steps")


def eval_pgd(check: Check) -> Measured:
    """Step 3a: PGD-10 at eps 8/255 on the eval batch, with early stop (trixai-eval's default) and without."""
    from trixai.robust.attacks import PGD

    model, x, y = check.eval_batch(check.sizes.eval_batch)
    rates, values = {}, {}
    for label, early_stop in (("early_stop", True), ("all_steps", False)):
        attack = PGD(eps=EPS, alpha=EPS / 4, steps=10, early_stop=early_stop)
        seconds, x_adv = median_time(lambda: attack(model, x, y), check.device, 1, check.sizes.repeats)
        rates[label] = len(x) / seconds
        values[f"robust_accuracy_{label}"] = accuracy(model, x_adv, y)
        values[f"max_linf_{label}"] = float((x_adv - x).abs().max())
    note = (f"batch {len(x)}, fp32; robust acc {values['robust_accuracy_early_stop']:.3f} (early stop) / "
            f"{values['robust_accuracy_all_steps']:.3f} (all steps)")
    return Measured(rates, values, note)


def eval_autoattack(check: Check) -> Measured:
    """Step 3b: AutoAttack standard (100 steps, 9 targets, 5,000 queries) at eps 8/255, one timed call."""
    from trixai.robust.attacks import AutoAttack
    from trixai.robust.attacks.autoattack import CLEAN_WRONG, ROBUST

    model, x, y = check.eval_batch(check.sizes.autoattack_batch)
    attack = AutoAttack(eps=EPS)
    attack.run(model, x[:4], y[:4])  # warm-up
    seconds, (x_adv, broken_by) = median_time(lambda: attack.run(model, x, y), check.device, 0, 1)
    components = [component.name for component in attack.components(NUM_CLASSES, multilabel=False)]
    values = {"seconds": seconds, "robust_accuracy": float((broken_by == ROBUST).float().mean()),
              "clean_wrong": int((broken_by == CLEAN_WRONG).sum()),
              **{f"fooled_by_{i}_{name}": int((broken_by == i).sum()) for i, name in enumerate(components)},
              "max_linf": float((x_adv - x).abs().max())}
    fooled = ", ".join(f"{name} {values[f'fooled_by_{i}_{name}']}" for i, name in enumerate(components))
    return Measured({"autoattack": len(x) / seconds}, values,
                    f"{len(x)} images, fp32; robust acc {values['robust_accuracy']:.3f}; fooled by {fooled}")


def gradcam(check: Check) -> Measured:
    """Step 4: ``grad_cam`` (final layer) on the batch vs one call per image."""
    from trixai.xai.gradcam import grad_cam

    model, x, y = check.eval_batch(check.sizes.cam_batch)
    n, repeats = len(x), check.sizes.repeats
    t_batch, batched = median_time(lambda: grad_cam(model, x, y, "final").maps["final"], check.device, 1, repeats)
    t_loop, looped = median_time(
        lambda: torch.cat([grad_cam(model, x[i:i + 1], y[i:i + 1], "final").maps["final"] for i in range(n)]),
        check.device, 1, repeats)
    values = {"speedup": t_loop / t_batch, "max_abs_map_diff": float((batched - looped).abs().max())}
    return Measured({"batched": n / t_batch, "per_image_loop": n / t_loop}, values,
                    f"batch {n}, fp32; batched {values['speedup']:.2f}x the loop, "
                    f"max abs map difference {values['max_abs_map_diff']:.1e}")


def deletion_insertion_check(check: Check) -> Measured:
    """Step 5: ``deletion_insertion`` on the batch vs one call per image with one forward per step image."""
    from trixai.xai.gradcam import grad_cam
    from trixai.xai.metrics.faithfulness import deletion_insertion

    s = check.sizes
    model, x, y = check.eval_batch(s.faith_images)
    maps = grad_cam(model, x, y, "final").maps["final"]
    n = len(x)

    def per_image() -> dict[str, Tensor]:
        runs = [deletion_insertion(model, x[i:i + 1], maps[i:i + 1], y[i:i + 1], variant="blur",
                                   steps=s.faith_steps, batch_size=1)
                for i in range(n)]
        return {key: torch.cat([run[key] for run in runs]) for key in ("deletion_auc", "insertion_auc")}

    t_batch, batched = median_time(lambda: deletion_insertion(model, x, maps, y, variant="blur", steps=s.faith_steps),
                                   check.device, 1, s.repeats)
    t_loop, looped = median_time(per_image, check.device, 1, s.repeats)
    diff = max(float((batched[key] - looped[key]).abs().max()) for key in ("deletion_auc", "insertion_auc"))
    values = {"speedup": t_loop / t_batch, "max_abs_auc_diff": diff, "target_speedup": FAITHFULNESS_TARGET,
              "target_met": t_loop / t_batch >= FAITHFULNESS_TARGET,
              "mean_deletion_auc": float(batched["deletion_auc"].mean()),
              "mean_insertion_auc": float(batched["insertion_auc"].mean())}
    failure = None if diff <= AUC_TOLERANCE else f"AUCs differ by {diff:.2e} (tolerance {AUC_TOLERANCE})"
    met = "met" if values["target_met"] else "not met"
    return Measured({"batched": n / t_batch, "per_image_loop": n / t_loop}, values,
                    f"{n} images x {s.faith_steps} steps, blur, fp32; batched {values['speedup']:.2f}x the loop "
                    f"(target >= {FAITHFULNESS_TARGET:.0f}x: {met}); max abs AUC difference {diff:.1e}", failure)


def run_step(name: str, fn: Callable[[], Measured], device: torch.device, in_process: bool = True) -> dict[str, Any]:
    """Run one step: status, wall seconds, peak GPU memory (MiB; None on the CPU and for a step that runs in a
    subprocess), its numbers or its error."""
    measure = device.type == "cuda" and in_process
    if measure:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    try:
        measured, error = fn(), None
    except Exception as err:  # noqa: BLE001 - a failing step is recorded and the next one runs
        measured, error = Measured({}, {}, ""), f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-3)}"
    synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if measure else None
    error = error or measured.failure
    result = {"status": "failed" if error else "ok", "seconds": seconds, "peak_gpu_mib": peak,
              **{key: value for key, value in asdict(measured).items() if key != "failure"}, "error": error}
    print(f"[{name}] {result['status']} in {seconds:.1f} s" + (f": {error.splitlines()[0]}" if error else ""),
          flush=True)
    return result


def install_wheels(folder: Path) -> tuple[list[str], Path]:
    """``pip install --no-index --no-deps`` every wheel of ``folder`` into a fresh folder put first on sys.path;
    the machine's own packages stay as they are. Returns the wheel names and that folder."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"--wheels {folder}: no .whl files there")
    target = Path(tempfile.mkdtemp(prefix="gpu_check_site_"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(target), *map(str, wheels)], check=True)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    return [wheel.name for wheel in wheels], target


def version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")]
    return names[0] if names else platform.processor() or "unknown"


def git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None


def environment(device: torch.device, wheels: list[str]) -> dict[str, Any]:
    import timm

    return {"device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
            "lightning": version("lightning") or version("pytorch-lightning"), "torchmetrics": version("torchmetrics"),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "tf32_conv": torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
            "git_commit": git_commit(), "wheels_installed": wheels}


def number(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.3g}"


def markdown(report: dict[str, Any]) -> str:
    """The report as a heading, the setup lines and one table row per measured throughput."""
    env, sizes = report["environment"], report["sizes"]
    label = "CPU mode (smoke run at tiny sizes, not a GPU result)" if report["mode"] == "cpu" else "GPU mode"
    lines = [f"# GPU check (issue 19): {label}", "",
             f"- device: {env['device_name']} ({env['device']}); CPU {env['cpu_model']}, {env['cpu_count']} cores, "
             f"{env['torch_threads']} torch threads",
             f"- torch {env['torch']}, timm {env['timm']}, lightning {env['lightning']}, "
             f"torchmetrics {env['torchmetrics']}, torch CUDA build {env['cuda']}, Python {env['python']}",
             f"- model {sizes['model']} (random init) at {sizes['size']} px, {NUM_CLASSES} classes; "
             f"eps 8/255; git {env['git_commit']}",
             f"- command: `{report['command']}`", f"- started {report['started']}, total {report['total_s']:.1f} s",
             "", "| step | measured | images/s | peak GPU MiB | step s | status | notes |",
             "|---|---|---:|---:|---:|---|---|"]
    for name, step in report["steps"].items():
        peak = "-" if step["peak_gpu_mib"] is None else f"{step['peak_gpu_mib']:.0f}"
        note = (step["note"] if step["status"] == "ok" else step["error"].splitlines()[0]).replace("|", "\\|")
        rates = step["images_per_s"] or {"-": None}
        for i, (what, rate) in enumerate(rates.items()):
            cells = [name, peak, f"{step['seconds']:.1f}", step["status"], note] if i == 0 else [""] * 5
            lines.append(f"| {cells[0]} | {what} | {'-' if rate is None else number(rate)} | "
                         + " | ".join(cells[1:]) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json/.md and pytest_gpu.log")
    parser.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU: a smoke run, not a GPU result")
    parser.add_argument("--wheels", type=Path, help="folder of wheels to pip-install (no index, no deps) first")
    args = parser.parse_args()
    started, start = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --cpu for the CPU smoke run")
    wheels, site = install_wheels(args.wheels) if args.wheels else ([], None)
    sys.path.insert(0, str(ROOT))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [*([str(site)] if site else []), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    device = torch.device("cpu" if args.cpu else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(device, CPU_SIZES if args.cpu else GPU_SIZES, args.out, env)
    steps: dict[str, Callable[[], Measured]] = {
        "pytest_gpu": lambda: pytest_gpu(check),
        "train_standard": lambda: train_throughput(check, "standard"),
        "train_pgd_at": lambda: train_throughput(check, "pgd_at"),
        "train_trades": lambda: train_throughput(check, "trades"),
        "eval_pgd10": lambda: eval_pgd(check),
        "eval_autoattack": lambda: eval_autoattack(check),
        "gradcam": lambda: gradcam(check),
        "deletion_insertion": lambda: deletion_insertion_check(check),
    }
    torch.manual_seed(0)
    results = {name: run_step(name, fn, device, in_process=name != "pytest_gpu") for name, fn in steps.items()}
    report = {"mode": "cpu" if args.cpu else "gpu",
              "note": ("CPU mode: a smoke run of the script at tiny sizes; no number here is a GPU result"
                       if args.cpu else "GPU mode"),
              "command": shlex.join(sys.orig_argv), "started": started, "total_s": time.perf_counter() - start,
              "environment": environment(device, wheels), "sizes": asdict(check.sizes),
              "eps": EPS, "auc_tolerance": AUC_TOLERANCE, "steps": results}
    table = markdown(report)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    return 0 if all(step["status"] == "ok" for step in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
