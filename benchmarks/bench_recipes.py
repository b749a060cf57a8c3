"""Robust-training recipes side by side: standard, PGD-AT, TRADES, MART, TRADES+AWP and Fast-AT.

Each recipe trains EfficientNet-B0 (64 px, from scratch) on the embedded synthetic_lesions dataset for the same
epochs (a clean warm-up epoch, then the objective), for every seed, through the real ``trixai-train`` job
(composed config, Lightning Trainer), optionally all from one common start (``--weights``: adversarial
fine-tuning of one clean model, when training from scratch does not fit the machine). AutoAttack (standard, the original cascade: each component only on the
points still robust, which is exact for robust accuracy) then attacks the first ``--aa-points`` test points of the
exported model; its 95 % interval is the stratified percentile bootstrap of trixai's reports. Cost: the median time of one optimiser step of each objective on the same batch, interleaved
(machine load hits all alike), as a ratio to the standard step; an epoch has the same number of steps for all.

    python benchmarks/bench_recipes.py --seeds 0 1 2 --out outputs/bench_recipes
    python benchmarks/bench_recipes.py --weights <clean run>/model.safetensors --warmup 0 --epochs 1 --aa-seeds 0
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from trixai.core.bootstrap import Bootstrap
from trixai.models import create_model
from trixai.models.export import load_model
from trixai.robust.attacks import AutoAttack
from trixai.robust.attacks.autoattack import ROBUST
from trixai.tasks.compose import compose_job
from trixai.tasks.train import train

RECIPES = {
    "standard": ["objective=standard"],
    "pgd_at": ["objective=pgd_at"],
    "trades": ["objective=trades"],
    "mart": ["objective=mart"],
    "trades_awp": ["objective=trades", "objective.awp_gamma=0.005"],
    "fast_at": ["objective=fast_at", "attack=fgsm"],
}


def objectives(args: argparse.Namespace) -> dict:
    """Each recipe's objective and training attack, built from the same config its training run uses."""
    built = {}
    for recipe in args.recipes:
        cfg = recipe_config(recipe, 0, args)
        built[recipe] = (instantiate(cfg.objective), instantiate(cfg.attack))
    return built


def step_costs(args: argparse.Namespace, size: int, batch: int) -> dict[str, float]:
    """Median seconds per optimiser step of each recipe's objective on one B0 batch (interleaved repeats)."""
    torch.manual_seed(0)
    base = create_model("efficientnet_b0", 7, resolution=size).train().to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,))
    setups = {}
    for name, (objective, attack) in objectives(args).items():
        model = copy.deepcopy(base)
        setups[name] = (model, objective, attack, torch.optim.SGD(model.parameters(), lr=1e-4))
    times = {name: [] for name in setups}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, (model, objective, attack, optimizer) in setups.items():
            start = time.perf_counter()
            out = objective(model, x, y, attack=attack)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            if out.restore is not None:
                out.restore()
            if repeat:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def recipe_config(recipe: str, seed: int, args: argparse.Namespace):
    """The composed ``trixai-train`` config of one recipe and seed."""
    eps = args.eps / 255
    overrides = [
        "dataset=synthetic_lesions", f"dataset.n_train={args.n_train}", "model.resolution=64", "model.drop_rate=0",
        "model.drop_path_rate=0", "optimizer=adamw", "optimizer.lr=0.002", "scheduler=warmup_cosine",
        "scheduler.warmup_epochs=0", f"trainer.max_epochs={args.epochs}", f"clean_warmup_epochs={args.warmup}",
        "attack=pgd10", f"attack.eps={eps}", "data.batch_size=32", "data.balanced_sampler=0.75",
        "data.augment.random_resized_crop=null", "data.augment.rotation=0", "data.augment.color_jitter=null",
        "monitor=val/rob_bal_acc", "+attack@eval_attack=pgd10", f"eval_attack.eps={eps}",
        "robustness.attacks=[clean]", f"robustness.eps=[{eps}]", "robustness.masking.large_eps=null",
        "explainer=none", "profile=null", "logger=csv", "trainer.enable_progress_bar=false", f"seed={seed}",
        f"threads={args.threads}",
        *([f"model.weights={Path(args.weights).resolve()}"] if args.weights else []),
        *RECIPES[recipe],
    ]
    return compose_job(overrides, Path(args.out) / f"{recipe}_seed{seed}")


def run(recipe: str, seed: int, args: argparse.Namespace) -> dict:
    eps = args.eps / 255
    cfg = recipe_config(recipe, seed, args)
    start = time.perf_counter()
    metrics = train(cfg)
    trained = time.perf_counter() - start
    row = {"recipe": recipe, "seed": seed, "train_seconds": trained, "clean_acc": metrics["test"]["acc"],
           "clean_acc_ci95": metrics["test"].get("acc_ci95"), "pgd10_acc": metrics["test"]["rob_acc"],
           "pgd10_acc_ci95": metrics["test"].get("rob_acc_ci95"),
           "collapse": (metrics.get("collapse_guard") or {}).get("collapse")}
    if seed in args.aa_seeds:
        x, y = first_test_points(cfg, args.aa_points)
        _, broken_by = AutoAttack(eps=eps).run(load_model(cfg.paths.output_dir).eval(), x, y)
        robust = (broken_by == ROBUST).double()
        interval = Bootstrap.draw(y, seed=seed).intervals(lambda w: {"acc": w.double() @ robust / w.sum(1)})
        row |= {"aa_acc": float(robust.mean()), "aa_acc_ci95": interval["acc_ci95"], "aa_points": len(y),
                "aa_seconds": time.perf_counter() - start - trained}
    return row


def first_test_points(cfg, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    datamodule = instantiate(cfg.data, dataset=instantiate(cfg.dataset))
    datamodule.setup("test")
    images, targets = [], []
    for batch in datamodule.test_dataloader():
        images.append(batch["image"])
        targets.append(batch["target"])
        if sum(len(t) for t in targets) >= count:
            break
    return torch.cat(images)[:count], torch.cat(targets)[:count]


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--eps", type=float, default=2.0, help="L-inf radius in 1/255 units (training and AutoAttack)")
    parser.add_argument("--n-train", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="clean warm-up epochs (all recipes)")
    parser.add_argument("--aa-points", type=int, default=128)
    parser.add_argument("--aa-seeds", type=int, nargs="*", default=None, help="seeds AutoAttack runs for (default all)")
    parser.add_argument("--weights", default=None, help="common start for every recipe (a model.safetensors)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="step-time repeats")
    parser.add_argument("--out", default="outputs/bench_recipes")
    parser.add_argument("--table-only", action="store_true", help="print the table of <out>/recipes.json and stop")
    args = parser.parse_args()
    if args.table_only:
        saved = json.loads((Path(args.out) / "recipes.json").read_text())
        print_table(saved["costs"], saved["runs"], args)
        return
    torch.set_num_threads(args.threads)
    args.aa_seeds = args.seeds if args.aa_seeds is None else args.aa_seeds
    costs = step_costs(args, 64, 32)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    rows = []
    for seed in args.seeds:
        for recipe in args.recipes:
            rows.append(run(recipe, seed, args))
            (Path(args.out) / "recipes.json").write_text(json.dumps({"costs": costs, "runs": rows}, indent=1))
    print_table(costs, rows, args)


def print_table(costs: dict[str, float], rows: list[dict], args: argparse.Namespace) -> None:
    """The markdown table of the runs in ``rows`` (also of an interrupted benchmark, from its recipes.json)."""
    seeds = sorted({r["seed"] for r in rows})
    aa_seeds = sorted({r["seed"] for r in rows if "aa_acc" in r})
    start = f"from {args.weights}" if args.weights else "from scratch"
    print(f"EfficientNet-B0 64 px {start}, synthetic_lesions n_train={args.n_train}, {args.epochs} epochs "
          f"({args.warmup} clean warm-up), eps {args.eps:g}/255, seeds {seeds}; PGD-10 on the whole test set; "
          f"AutoAttack (standard) on {args.aa_points} test points for seeds {aa_seeds}; {args.threads} threads")
    print("| recipe | clean acc | PGD-10 acc | AutoAttack acc [95% CI] | step (s) | cost vs standard |")
    print("|---|---:|---:|---:|---:|---:|")
    for recipe in args.recipes:
        mine = [r for r in rows if r["recipe"] == recipe]
        if not mine:
            continue
        attacked = [r for r in mine if "aa_acc" in r]
        aa = "; ".join(f"{r['aa_acc']:.3f} [{r['aa_acc_ci95'][0]:.2f}, {r['aa_acc_ci95'][1]:.2f}]" for r in attacked)
        print(f"| {recipe} | {mean_std([r['clean_acc'] for r in mine])} | {mean_std([r['pgd10_acc'] for r in mine])} "
              f"| {aa or '-'} | {costs[recipe]:.3f} | {costs[recipe] / costs['standard']:.2f}x |")
    print(f"Fast-AT step / PGD-AT (PGD-10) step: {costs['fast_at'] / costs['pgd_at']:.2f}")
    for row in rows:
        if row["collapse"]:
            print(f"collapse guard stopped {row['recipe']} seed {row['seed']}: {row['collapse']}")


if __name__ == "__main__":
    main()
