"""benchmarks/bench_recipes.py: the recipes' composed configs and the checks the table prints from its numbers."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        yield importlib.import_module("bench_recipes")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def args_for(out: Path, **changes) -> argparse.Namespace:
    values = dict(model="test_efficientnet", resolution=48, n_train=300, clean_n_train=None, clean_epochs=8,
                  clean_lr=0.002, epochs=5, lr=0.001, batch_size=32, eps=8.0, aa_points=64, threads=1, ablation=False,
                  override=[], out=str(out))
    return argparse.Namespace(**(values | changes))


def test_fast_at_2x_trains_twice_the_epochs_with_fast_at_objective_and_cyclic_rate(bench, tmp_path):
    args = args_for(tmp_path)
    # the seed's clean start is there (a placeholder file): composing must reuse it, not train one
    weights = tmp_path / "clean_test_efficientnet_48px_n300_e8_lr0.002_b32_seed0" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"")
    fast = bench.recipe_config("fast_at", 0, args, [], "fast_at")
    fast_2x = bench.recipe_config("fast_at_2x", 0, args, [], "fast_at_2x")
    pgd = bench.recipe_config("pgd_at", 0, args, [], "pgd_at")
    assert (fast.trainer.max_epochs, fast_2x.trainer.max_epochs, pgd.trainer.max_epochs) == (5, 10, 5)
    assert fast_2x.objective == fast.objective and fast_2x.attack == fast.attack
    assert fast_2x.scheduler._target_ == fast.scheduler._target_ == "trixai.training.optim.cyclic"
    assert pgd.scheduler._target_ == "trixai.training.optim.warmup_cosine"
    assert fast_2x.model.weights == str(weights.resolve())
    assert Path(fast_2x.paths.output_dir).name == "fast_at_2x_seed0"


def row(recipe: str, seed: int, aa: float, *, whole: float | None = None, bal: float = 0.7, epochs: int = 5) -> dict:
    out = {"recipe": recipe, "seed": seed, "clean_acc": 0.86, "clean_bal_acc": bal, "pgd10_acc": aa + 0.02,
           "autoattack_acc": aa, "collapsed": bal <= 1 / 7 + 0.1, "machine": "cpu", "epochs_trained": epochs}
    if whole is not None:
        out |= {"autoattack_test_acc": whole, "autoattack_test_points": 329}
    return out


def test_checks_compare_each_fast_at_row_with_pgd_at_per_seed_and_report_the_optimiser_time(bench):
    settings = {"model": "m", "resolution": 48, "n_train": 3000, "clean_epochs": 8, "clean_lr": 0.002, "epochs": 5,
                "lr": 0.001, "batch_size": 32, "eps": 8.0, "aa_points": 64, "threads": 2}
    costs = {"standard": 0.02, "pgd_at": 0.16, "trades": 0.19, "mart": 0.17, "trades_awp": 0.22, "fast_at": 0.04}
    runs = [row("standard", s, 0.0) for s in (0, 1)]
    runs += [row("pgd_at", 0, 0.80, whole=0.72), row("pgd_at", 1, 0.78, whole=0.70)]
    runs += [row("fast_at", 0, 0.70, whole=0.66), row("fast_at", 1, 0.70, whole=0.64)]  # gaps 0.06, 0.06
    runs += [row("fast_at_2x", 0, 0.78, whole=0.70, epochs=10),  # the collapse guard stopped seed 1 after 8
             row("fast_at_2x", 1, 0.76, whole=0.69, epochs=8)]  # gaps 0.02, 0.01
    lines = bench.table({"settings": settings, "costs": costs, "costs_machine": "cpu", "runs": runs})
    text = "\n".join(lines)
    assert ("| fast_at_2x | 8–10 | 0.860 ± 0.000 | 0.700 ± 0.000 | 0.790 ± 0.014 | 0.770 ± 0.014 | 0.040 | 2.00x | "
            "0/2 |") in lines
    assert ("fast_at AutoAttack 0.700 vs PGD-AT 0.790 (gap +0.090 ≤ 0.05) at 0.25× its step cost (≤ 0.35; "
            "5 epochs against 5: 0.25× its optimiser time): FAILS") in text
    assert ("fast_at_2x AutoAttack 0.770 vs PGD-AT 0.790 (gap +0.020 ≤ 0.05) at 0.25× its step cost (≤ 0.35; "
            "8–10 epochs against 5: 0.45× its optimiser time): holds") in text
    assert ("fast_at AutoAttack 0.650 vs PGD-AT 0.710, gap per seed +0.060, +0.060, mean +0.060 ≤ 0.05 at 0.25× its "
            "step cost (≤ 0.35; 5 epochs against 5: 0.25× its optimiser time): FAILS") in text
    assert ("fast_at_2x AutoAttack 0.695 vs PGD-AT 0.710, gap per seed +0.020, +0.010, mean +0.015 ≤ 0.05 at 0.25× "
            "its step cost (≤ 0.35; 8–10 epochs against 5: 0.45× its optimiser time): holds") in text
    assert "no recipe collapses in any seed: holds" in text
    costly = {**costs, "fast_at": 0.06}  # 0.375x PGD-AT's step: over the 0.35 the check allows
    text = "\n".join(bench.table({"settings": settings, "costs": costly, "costs_machine": "cpu", "runs": runs}))
    assert ("mean +0.015 ≤ 0.05 at 0.38× its step cost (≤ 0.35; 8–10 epochs against 5: 0.68× its optimiser time): "
            "FAILS") in text
    assert "(and on all of it for the Fast-AT checks' pairs, below)" in lines[0]
    without = [{k: v for k, v in r.items() if not k.startswith("autoattack_test")} for r in runs]
    lines = bench.table({"settings": settings, "costs": costs, "costs_machine": "cpu", "runs": without})
    assert "on all of it" not in lines[0] and not any(line.startswith("- the same on") for line in lines)
