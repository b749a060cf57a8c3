"""Robust-training recipes side by side: standard, PGD-AT, TRADES, MART, TRADES-AWP and Fast-AT, AutoAttack on every row.

Per seed, one clean model (``objective=standard`` from scratch, ``--clean-epochs``) is the common start; every recipe
then fine-tunes it for ``--epochs`` (``EPOCHS``: a multiple of them) through the real ``trixai-train`` job
(composed config, Lightning Trainer, validation every epoch, the best epoch by validation robust balanced accuracy
tested; the standard recipe by clean balanced accuracy). Each recipe is its objective config as shipped (published
defaults: PGD-10 with alpha = eps/4, TRADES and MART beta 6, TRADES-AWP gamma 5e-3 — from the first fine-tuning
step, ``objective.awp_warmup=0``, since a fine-tuning run has no 10th epoch —, Fast-AT's FGSM step of 1.25 eps with
its per-batch cyclic rate);
``fast_at_2x`` is Fast-AT with twice the epochs, which its step, a quarter of PGD-AT's, pays for. The test phase
scores the whole test split clean and under PGD-10; AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square, each on the
points still robust) attacks the first ``--aa-points`` test points of the exported model, and the whole test split of
the recipes named by ``--aa-test-split`` (a second command on the stored models: PGD-AT and the Fast-AT rows, the
pairs the Fast-AT checks compare, on the same points per seed). Proportions carry Jeffreys 95 % intervals. Cost: the
median time of one optimiser step of each objective on the same batch, interleaved (machine load hits all alike), as a
ratio to the standard step; an epoch has the same number of steps for every recipe.

Writes ``<out>/recipes.json`` after every row (a rerun with the same settings skips rows already there), then
``benchmarks/results/recipes.json`` and the table between the ``recipes`` markers of docs/benchmarks.md.

    python benchmarks/bench_recipes.py                       # the table in docs/benchmarks.md
    python benchmarks/bench_recipes.py --aa-test-split pgd_at fast_at fast_at_2x   # + the whole-split check
    python benchmarks/bench_recipes.py --ablation            # the collapse ablation (docs/benchmarks.md, defences.md)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
from bench_test_phase import cpu_name
from hydra.utils import instantiate

from trixai.core.intervals import proportion_interval
from trixai.models import create_model
from trixai.models.export import load_model
from trixai.robust.attacks import AutoAttack
from trixai.robust.attacks.autoattack import ROBUST
from trixai.tasks.compose import compose_job
from trixai.tasks.train import train

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "standard": ["objective=standard", "monitor=val/bal_acc"],
    "pgd_at": ["objective=pgd_at"],
    "trades": ["objective=trades"],
    "mart": ["objective=mart"],
    "trades_awp": ["objective=trades_awp", "objective.awp_warmup=0"],
    "fast_at": ["objective=fast_at"],
    "fast_at_2x": ["objective=fast_at"],
}
ADVERSARIAL = [r for r in RECIPES if r != "standard"]
EPOCHS = {"fast_at_2x": 2}  # multiples of --epochs (else 1): Fast-AT with twice the epochs, as its cheap step allows
# per recipe, the first recipe with the same overrides: its optimiser step is timed once, under that name
STEP = {recipe: next(first for first in RECIPES if RECIPES[first] == RECIPES[recipe]) for recipe in RECIPES}
FAST_AT = tuple(recipe for recipe in RECIPES if "objective=fast_at" in RECIPES[recipe])

# The collapse ablation (docs/defences.md): round 2's table setting (B0 at 64 px, a clean start of 4 epochs on 3,000
# images, then one epoch of fine-tuning on 1,000 images, AdamW lr 2e-3 with per-epoch cosine decay, eps 2/255,
# sampler 0.75, batch 32), run seed by seed until the recipe collapses (round 2: MART in 3 of 3 seeds, TRADES in 2,
# Fast-AT in 1), then one change at a time on that seed.
COSINE = ("scheduler=warmup_cosine", "scheduler.warmup_epochs=0")  # every recipe but Fast-AT (its cyclic rate)
ABLATION = {
    "round 2 setting": [*COSINE],
    "lr 5e-4": [*COSINE, "optimizer.lr=0.0005"],
    "beta 1": [*COSINE, "objective.beta=1.0"],
    "uniform sampler": [*COSINE, "data.balanced_sampler=0"],
    "cyclic rate (warm-up)": ["scheduler=cyclic"],
    "adversary in train mode": [*COSINE, "objective.adversary_mode=train"],
    "3 epochs": [*COSINE, "trainer.max_epochs=3"],
}
ABLATION_CHANGES = {"mart": ("lr 5e-4", "beta 1", "uniform sampler", "adversary in train mode", "3 epochs"),
                    "trades": ("lr 5e-4", "beta 1", "adversary in train mode"),
                    "fast_at": ("cyclic rate (warm-up)",)}
ABLATION_RECIPES = tuple(ABLATION_CHANGES)


def clean_start(seed: int, args: argparse.Namespace) -> Path:
    """The common start of ``seed``: the standard objective from scratch (reused when already trained)."""
    out = Path(args.out) / (f"clean_{slug(args.model)}_{args.resolution}px_n{args.clean_n_train or args.n_train}"
                            f"_e{args.clean_epochs}_lr{args.clean_lr:g}_b{args.batch_size}_seed{seed}")
    weights = out / "model.safetensors"
    if not weights.exists():
        train(compose_job(merged(*base_overrides(seed, args), *COSINE, "objective=standard", "monitor=val/bal_acc",
                                 f"dataset.n_train={args.clean_n_train or args.n_train}",
                                 f"trainer.max_epochs={args.clean_epochs}", f"optimizer.lr={args.clean_lr}"), out))
    return weights


def merged(*overrides: str) -> list[str]:
    """``overrides`` with only the last value of each key (Hydra refuses a key given twice)."""
    last = {item.split("=", 1)[0]: item for item in overrides}
    return list(last.values())


def base_overrides(seed: int, args: argparse.Namespace) -> list[str]:
    eps = args.eps / 255
    return [
        "dataset=synthetic_lesions", f"dataset.n_train={args.n_train}", f"model.name={args.model}",
        f"model.resolution={args.resolution}", "model.drop_rate=0", "model.drop_path_rate=0", "optimizer=adamw",
        f"optimizer.lr={args.lr}", "clean_warmup_epochs=0",
        f"attack.eps={eps}", f"data.batch_size={args.batch_size}", "data.balanced_sampler=0.75",
        "data.augment.random_resized_crop=null", "data.augment.rotation=0", "data.augment.color_jitter=null",
        "monitor=val/rob_bal_acc", "+attack@eval_attack=pgd10", f"eval_attack.eps={eps}", "robustness.attacks=[clean]",
        f"robustness.eps=[{eps}]", "robustness.masking.large_eps=null", "explainer=none", "profile=null",
        "logger=csv", "trainer.enable_progress_bar=false", f"seed={seed}", f"threads={args.threads}",
    ]


def recipe_config(recipe: str, seed: int, args: argparse.Namespace, extra: list[str], name: str):
    """The composed ``trixai-train`` config of one recipe and seed, fine-tuning the seed's clean start.

    The schedule: the recipe's own (Fast-AT's objective brings its cyclic rate), else per-epoch cosine decay; a
    ``scheduler=`` choice in ``extra`` replaces it. ``extra``: the ablation's change or ``--override``."""
    chooses = any(o.startswith("scheduler=") for o in extra)
    schedule = [] if chooses or recipe in FAST_AT else list(COSINE)
    overrides = merged(*base_overrides(seed, args), f"trainer.max_epochs={epochs(recipe, args.epochs)}",
                       f"model.weights={clean_start(seed, args).resolve()}", *RECIPES[recipe], *schedule, *extra)
    return compose_job(overrides, run_dir(name, seed, args))


def epochs(recipe: str, base: int) -> int:
    """The fine-tuning epochs of ``recipe`` when the table's are ``base`` (``--epochs``)."""
    return base * EPOCHS.get(recipe, 1)


def run_dir(name: str, seed: int, args: argparse.Namespace) -> Path:
    return Path(args.out) / f"{slug(name)}{variant_suffix(args)}_seed{seed}"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def variant_suffix(args: argparse.Namespace) -> str:
    """Run folders and the store of an ``--override`` variant are its own (the table's stay untouched)."""
    return "_" + slug("_".join(args.override)) if args.override else ""


def step_costs(args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per optimiser step of each recipe's objective on one batch (interleaved repeats); a recipe
    with another's overrides has that one's step (``STEP``)."""
    torch.manual_seed(0)
    size = args.resolution
    base = create_model(args.model, 7, resolution=size).train().to(memory_format=torch.channels_last)
    x = torch.rand(args.batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (args.batch_size,))
    setups = {}
    for recipe in (r for r in RECIPES if STEP[r] == r):
        cfg = compose_job(merged(*base_overrides(0, args), *RECIPES[recipe]), Path(args.out) / "costs")
        model = copy.deepcopy(base)
        attack = instantiate(cfg.attack) if cfg.attack else None
        setups[recipe] = (model, instantiate(cfg.objective), attack, torch.optim.AdamW(model.parameters(), lr=1e-4))
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


def run(recipe: str, seed: int, args: argparse.Namespace, points: tuple[torch.Tensor, torch.Tensor] | None,
        extra: list[str], name: str) -> dict:
    cfg = recipe_config(recipe, seed, args, extra, name)
    start = time.perf_counter()
    metrics = train(cfg)
    trained = time.perf_counter() - start
    test = metrics["test"]
    guard = (metrics.get("collapse_guard") or {}).get("collapse")
    row = {"recipe": name, "seed": seed, "clean_acc": test["acc"], "clean_acc_ci95": test.get("acc_ci95"),
           "clean_bal_acc": test["bal_acc"], "clean_bal_acc_ci95": test.get("bal_acc_ci95"),
           "pgd10_acc": test["rob_acc"], "pgd10_acc_ci95": test.get("rob_acc_ci95"),
           "collapsed": test["bal_acc"] <= 1 / 7 + 0.1, "collapse_guard": guard, "train_seconds": trained,
           "epochs_trained": metrics.get("epochs")}
    if points is not None:
        row |= autoattack(Path(cfg.paths.output_dir), points, args, "autoattack")
    return row


def autoattack(run_dir: Path, points: tuple[torch.Tensor, torch.Tensor], args: argparse.Namespace, key: str) -> dict:
    """AutoAttack (standard) accuracy of the model exported to ``run_dir`` on ``points``: the row's ``key`` fields."""
    x, y = points
    begun = time.perf_counter()
    _, broken_by = AutoAttack(eps=args.eps / 255).run(load_model(run_dir).eval(), x, y)
    robust = int((broken_by == ROBUST).sum())
    return {f"{key}_acc": robust / len(y), f"{key}_acc_ci95": list(proportion_interval(robust, len(y))),
            f"{key}_points": len(y), f"{key}_seconds": time.perf_counter() - begun}


def test_split(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole test split as the models see it (the same points for every recipe and seed)."""
    cfg = compose_job(merged(*base_overrides(0, args), *args.override), Path(args.out) / "points")
    datamodule = instantiate(cfg.data, dataset=instantiate(cfg.dataset))
    datamodule.setup("test")
    batches = list(datamodule.test_dataloader())
    return torch.cat([b["image"] for b in batches]), torch.cat([b["target"] for b in batches])


def machine() -> str:
    """The CPU's model name and its cores."""
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def settings(args: argparse.Namespace) -> dict:
    keys = ("model", "resolution", "n_train", "clean_n_train", "clean_epochs", "clean_lr", "epochs", "lr", "batch_size",
            "eps", "aa_points", "threads", "ablation")
    return {key: getattr(args, key) for key in keys} | ({"override": args.override} if args.override else {})


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def table(saved: dict) -> list[str]:
    """The markdown table and the issue's checks, computed from ``saved`` (a recipes.json)."""
    s, costs, rows = saved["settings"], saved["costs"], saved["runs"]
    seeds = sorted({r["seed"] for r in rows})
    lines = [
        f"{s['model']} at {s['resolution']} px, synthetic_lesions n_train={s['n_train']}; per seed a clean start "
        f"({s['clean_epochs']} epochs, AdamW lr {s['clean_lr']:g}), then each recipe's epochs (AdamW lr "
        f"{s['lr']:g}, batch {s['batch_size']}); eps {s['eps']:g}/255; seeds {seeds}; PGD-10 on the whole test split, "
        f"AutoAttack (standard) on its first {s['aa_points']} points"
        + (" (and on all of it for the Fast-AT checks' pairs, below)" if any("autoattack_test_acc" in r for r in rows)
           else "")
        + f"; {s['threads']} threads; runs on "
        f"{', '.join(sorted({r.get('machine', '?') for r in rows}))}"
        + (f", step costs on {saved['costs_machine']}" if saved.get("costs_machine") else "")
        + (f"; overrides {' '.join(s['override'])}." if s.get("override") else "."),
        "",
        "| recipe | epochs | clean acc | clean bal. acc | PGD-10 acc | AutoAttack acc | step (s) | step vs standard "
        "| collapsed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    means = {}
    for recipe in RECIPES:
        mine = [r for r in rows if r["recipe"] == recipe]
        if not mine:
            continue
        means[recipe] = {key: statistics.mean(r[key] for r in mine)
                         for key in ("clean_acc", "clean_bal_acc", "pgd10_acc", "autoattack_acc")}
        lines.append(
            f"| {recipe} | {trained(mine)} | {spread([r['clean_acc'] for r in mine])} | "
            f"{spread([r['clean_bal_acc'] for r in mine])} | "
            f"{spread([r['pgd10_acc'] for r in mine])} | {spread([r['autoattack_acc'] for r in mine])} | "
            f"{cost(costs, recipe)} | "
            f"{sum(r['collapsed'] for r in mine)}/{len(mine)} |")
    lines += ["", "Mean ± standard deviation over seeds; per-run values with Jeffreys 95 % intervals in "
              "benchmarks/results/recipes.json. Collapsed: test balanced accuracy ≤ 1/7 + 0.1.", ""]
    lines += [f"- {check}" for check in checks(means, costs, rows)]
    lines += [f"- the collapse guard stopped {r['recipe']} seed {r['seed']}: {r['collapse_guard']}"
              for r in rows if r.get("collapse_guard")]
    return lines


def trained(runs: list[dict]) -> str:
    """The epochs the runs trained (fewer than asked where the collapse guard stopped one): one value or a range."""
    done = sorted({r["epochs_trained"] for r in runs})
    return str(done[0]) if len(done) == 1 else f"{done[0]}–{done[-1]}"


def cost(costs: dict | None, recipe: str) -> str:
    """The step time and its ratio to the standard step (not measured for ``--override`` variants)."""
    if not costs:
        return "- | -"
    step = costs[STEP[recipe]]
    return f"{step:.3f} | {step / costs['standard']:.2f}x"


def checks(means: dict, costs: dict | None, rows: list[dict]) -> list[str]:
    """The issue's acceptance checks, each with the numbers it compares and its verdict.

    Fast-AT: within 0.05 of PGD-AT's AutoAttack accuracy at <= 0.35x its step cost (the issue's target is per step);
    the line also gives the optimiser time of the whole run (step cost x epochs trained), which the verdict does not
    use."""
    def verdict(ok: bool) -> str:
        return "holds" if ok else "FAILS"

    out = [f"no recipe collapses in any seed: {verdict(not any(r['collapsed'] for r in rows))}"]
    if "standard" in means:
        floor = means["standard"]["autoattack_acc"] + 0.20
        for recipe in (r for r in ADVERSARIAL if r in means):
            aa = means[recipe]["autoattack_acc"]
            out.append(f"{recipe} AutoAttack {aa:.3f} ≥ standard + 0.20 = {floor:.3f}: {verdict(aa >= floor)}")
    pgd_runs = [r for r in rows if r["recipe"] == "pgd_at"]
    pgd = {r["seed"]: r for r in pgd_runs if "autoattack_test_acc" in r}
    for fast in (r for r in FAST_AT if r in means and "pgd_at" in means and costs):
        step = costs[STEP[fast]] / costs["pgd_at"]
        fast_runs = [r for r in rows if r["recipe"] == fast]
        ratio = (statistics.mean(r["epochs_trained"] for r in fast_runs)
                 / statistics.mean(r["epochs_trained"] for r in pgd_runs))
        budget = (f"at {step:.2f}× its step cost (≤ 0.35; {trained(fast_runs)} epochs against {trained(pgd_runs)}: "
                  f"{step * ratio:.2f}× its optimiser time)")
        gap = means["pgd_at"]["autoattack_acc"] - means[fast]["autoattack_acc"]
        out.append(f"{fast} AutoAttack {means[fast]['autoattack_acc']:.3f} vs PGD-AT "
                   f"{means['pgd_at']['autoattack_acc']:.3f} (gap {gap:+.3f} ≤ 0.05) {budget}: "
                   f"{verdict(gap <= 0.05 and step <= 0.35)}")
        mine = {r["seed"]: r for r in fast_runs if r["seed"] in pgd and "autoattack_test_acc" in r}
        if not mine:
            continue
        gaps = [pgd[seed]["autoattack_test_acc"] - mine[seed]["autoattack_test_acc"] for seed in sorted(mine)]
        mean = statistics.mean
        points = {r["autoattack_test_points"] for r in mine.values()}
        out.append(f"the same on the whole test split ({', '.join(map(str, sorted(points)))} points, seeds "
                   f"{sorted(mine)}): {fast} AutoAttack {mean(r['autoattack_test_acc'] for r in mine.values()):.3f} "
                   f"vs PGD-AT {mean(pgd[seed]['autoattack_test_acc'] for seed in mine):.3f}, gap per seed "
                   f"{', '.join(f'{g:+.3f}' for g in gaps)}, mean {mean(gaps):+.3f} ≤ 0.05 {budget}: "
                   f"{verdict(mean(gaps) <= 0.05 and step <= 0.35)}")
    if "trades" in means and "pgd_at" in means:
        a, b = means["trades"]["clean_acc"], means["pgd_at"]["clean_acc"]
        out.append(f"TRADES clean {a:.3f} ≥ PGD-AT clean {b:.3f}: {verdict(a >= b)}")
    return out


def ablation_table(saved: dict) -> list[str]:
    lines = ["| variant | recipe | seed | clean acc | clean bal. acc | PGD-10 acc | collapsed |", "|---|---|---:|---:|---:|---:|---:|"]
    def order(row: dict) -> tuple:
        variant, recipe = row["recipe"].split(" / ")
        return ABLATION_RECIPES.index(recipe), list(ABLATION).index(variant), row["seed"]

    for r in sorted(saved["runs"], key=order):
        variant, recipe = r["recipe"].split(" / ")
        lines.append(f"| {variant} | {recipe} | {r['seed']} | {r['clean_acc']:.3f} | {r['clean_bal_acc']:.3f} | "
                     f"{r['pgd10_acc']:.3f} | {'yes' if r['collapsed'] else 'no'} |")
    return lines


def write_docs(lines: list[str], marker: str) -> None:
    """Replace the block between ``<!-- {marker}:begin -->`` and ``<!-- {marker}:end -->`` in docs/benchmarks.md."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    if begin not in text or end not in text:
        raise SystemExit(f"{path}: markers {begin} ... {end} not found")
    head, rest = text.split(begin, 1)
    path.write_text(head + begin + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--model", default="test_efficientnet", help="timm name (efficientnet_b0: see docs)")
    parser.add_argument("--resolution", type=int, default=48)
    parser.add_argument("--eps", type=float, default=8.0, help="L-inf radius in 1/255 units (training and attacks)")
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--clean-n-train", type=int, default=None, help="images of the clean start (default --n-train)")
    parser.add_argument("--clean-epochs", type=int, default=8)
    parser.add_argument("--clean-lr", type=float, default=0.002)
    parser.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs of every recipe (EPOCHS: a "
                        "multiple for fast_at_2x)")
    parser.add_argument("--lr", type=float, default=0.001, help="peak AdamW learning rate of the fine-tuning")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--aa-points", type=int, default=64)
    parser.add_argument("--aa-test-split", nargs="*", default=[], choices=list(RECIPES),
                        help="recipes whose stored runs AutoAttack also attacks on the whole test split, where they "
                        "lack it (6.5-9.5 min per model on 2 cores)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="step-time repeats")
    parser.add_argument("--ablation", action="store_true", help="run the collapse ablation instead of the table (its "
                        "own model, data, epochs, eps and lr: round 2's setting)")
    parser.add_argument("--override", nargs="*", default=[], help="Hydra overrides for every recipe (a variant: "
                        "printed only, neither docs/benchmarks.md nor benchmarks/results written)")
    parser.add_argument("--out", default="outputs/bench_recipes")
    parser.add_argument("--table-only", action="store_true", help="print the table of the stored runs and stop")
    parser.add_argument("--publish", action="store_true", help="with --table-only: also write benchmarks/results and "
                        "docs/benchmarks.md from the stored runs (an interrupted benchmark's rows)")
    args = parser.parse_args()
    if args.publish and (args.override or not args.table_only):
        parser.error("--publish goes with --table-only (a full run publishes itself), not with --override")
    if args.ablation and args.override:
        parser.error("--ablation runs its own changes; --override is for variants of the table")
    if args.aa_points < 1 and not args.ablation:
        parser.error("--aa-points must be >= 1: AutoAttack is a column of the table")
    if args.ablation:  # round 2's setting: B0 64 px, 1,000 images, one epoch, eps 2/255, no AutoAttack
        args.n_train, args.epochs, args.eps, args.lr, args.aa_points = 1000, 1, 2.0, 0.002, 0
        args.model, args.resolution, args.clean_epochs, args.clean_n_train = "efficientnet_b0", 64, 4, 3000
    name = "collapse_ablation" if args.ablation else "recipes"
    store = Path(args.out) / f"{name}{variant_suffix(args)}.json"
    saved = json.loads(store.read_text()) if store.exists() else None
    if args.table_only:
        if saved is None:
            raise SystemExit(f"{store}: no stored runs (run the benchmark with --out {args.out} first)")
        print("\n".join(ablation_table(saved) if args.ablation else table(saved)))
        if args.publish:
            publish(saved, name, ablation_table(saved) if args.ablation else table(saved))
        return
    torch.set_num_threads(args.threads)
    if saved is None or saved["settings"] != settings(args):
        saved = {"settings": settings(args), "costs": None, "costs_machine": None, "runs": []}
    store.parent.mkdir(parents=True, exist_ok=True)
    if saved["costs"] is None and not (args.ablation or args.override):
        saved["costs"], saved["costs_machine"] = step_costs(args), machine()
    whole = None if args.ablation else test_split(args)
    points = None if whole is None else (whole[0][:args.aa_points], whole[1][:args.aa_points])

    def record(recipe: str, seed: int, extra: list[str], label: str) -> dict:
        """The row of ``label`` and ``seed``: the saved one, else a new run (saved at once)."""
        for row in saved["runs"]:
            if (row["recipe"], row["seed"]) == (label, seed):
                return row
        saved["runs"].append(run(recipe, seed, args, points, extra, label) | {"machine": machine()})
        store.write_text(json.dumps(saved, indent=1))
        return saved["runs"][-1]

    if args.ablation:  # the setting seed by seed until it collapses, then each change on that seed
        (base, base_extra), *changes = ABLATION.items()
        for recipe in ABLATION_RECIPES:
            collapsed = next((seed for seed in args.seeds
                              if record(recipe, seed, base_extra, f"{base} / {recipe}")["collapsed"]), None)
            for variant, extra in changes:
                if collapsed is not None and variant in ABLATION_CHANGES[recipe]:
                    record(recipe, collapsed, extra, f"{variant} / {recipe}")
    else:
        for seed in args.seeds:
            for recipe in args.recipes:
                record(recipe, seed, args.override, recipe)
        for row in saved["runs"]:  # the Fast-AT checks' pairs on the whole test split (saved row by row)
            if row["recipe"] in args.aa_test_split and row["seed"] in args.seeds and "autoattack_test_acc" not in row:
                row |= autoattack(run_dir(row["recipe"], row["seed"], args), whole, args, "autoattack_test")
                store.write_text(json.dumps(saved, indent=1))
    lines = ablation_table(saved) if args.ablation else table(saved)
    print("\n".join(lines))
    if not args.override:
        publish(saved, name, lines)


def publish(saved: dict, name: str, lines: list[str]) -> None:
    """``benchmarks/results/<name>.json`` and the table in docs/benchmarks.md."""
    results = ROOT / "benchmarks" / "results" / f"{name}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(saved, indent=1))
    write_docs(lines, name)


if __name__ == "__main__":
    main()
