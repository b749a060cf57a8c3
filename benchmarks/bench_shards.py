"""One process vs N shards for ``trixai-eval``, in the same run, and what the per-point records cost on disk.

Exports an untrained model (``--model``, default ``efficientnet_b0`` at ``--size`` px) on the synthetic lesions with
``--points`` test images, then alternates ``--repeats`` times: ``trixai-eval`` in one process (torch's default
threads: every core) and ``trixai-eval -m shard.count=N shard.index=0..N-1 hydra/launcher=joblib`` (N workers,
cores / N threads each), each timed from outside as a whole command (wall seconds, model loading included).
Checks the merged reports equal the single process's (times aside) and prints the median ratio, the merged
report's own ``execution`` (wall vs the sum of the shards' times) and the records' bytes per 1,000 points.

    python benchmarks/bench_shards.py --points 96 --shards 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_test_phase import cpu_name

VOLATILE = {"seconds", "images_per_s", "execution", "resumed_batches", "source", "figures"}


def stable(value):
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def export_run(folder: Path, model_name: str, size: int, points: int) -> Path:
    from trixai.data.synthetic import SyntheticLesions
    from trixai.models import create_model
    from trixai.models.export import export_model, model_metadata

    dataset = {"_target_": "trixai.data.synthetic.SyntheticLesions", "image_size": size, "n_train": 7, "n_val": 7,
               "n_test": points, "seed": 0, "min_per_class": 1, "cache_dir": None}
    bundle = SyntheticLesions(**{k: v for k, v in dataset.items() if k != "_target_"}).load()
    model = create_model(model_name, 7, class_names=list(bundle.info.class_names), resolution=size, pretrained=False)
    run = folder / "run"
    config = {"model": {"_target_": "trixai.models.create_model", "name": model_name, "resolution": size},
              "dataset": dataset}
    export_model(model, run, model_metadata(model, config=config, seed=0))
    return run


def timed(command: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--points", type=int, default=96)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("overrides", nargs="*", default=["robustness=cpu", "robustness.masking=null"],
                        help="trixai-eval overrides (the suite)")
    args = parser.parse_args()
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = export_run(tmp, args.model, args.size, args.points)
        eval_cmd = [sys.executable, "-m", "trixai.cli.eval", f"ckpt={run}", "logger=none", "progress=false",
                    f"hydra.run.dir={tmp}/h", f"hydra.sweep.dir={tmp}/m", *args.overrides]
        single, sharded = [], []
        for repeat in range(args.repeats):
            single.append(timed([*eval_cmd, f"name=single{repeat}"], tmp, env))
            sharded.append(timed([*eval_cmd[:3], "-m", *eval_cmd[3:], f"name=sharded{repeat}",
                                  f"shard.count={args.shards}", f"shard.index=range({args.shards})",
                                  "hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.shards}"], tmp, env))
        evals = run / "evals"
        reference = stable(json.loads((evals / "single0" / "robustness.json").read_text()))
        merged = json.loads((evals / "sharded0" / "robustness.json").read_text())
        records = sum(p.stat().st_size for p in (evals / "single0" / "records").glob("*.safetensors"))
        result = {
            "cpu": cpu_name(), "cores": os.cpu_count(), "model": args.model, "size": args.size, "points": args.points,
            "suite": args.overrides, "shards": args.shards,
            "single_seconds": single, "sharded_seconds": sharded,
            "median_ratio_single_over_sharded": statistics.median(s / p for s, p in zip(single, sharded, strict=True)),
            "merged_equals_single": stable(merged) == reference,
            "execution": merged["execution"],
            "records_bytes_per_1000_points": round(records / args.points * 1000),
            "attacks": list(reference["results"]),
        }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
