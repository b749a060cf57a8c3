"""trixai PGD-10 / AutoAttack vs torchattacks on the same model, batch and run: images/s, ratios, agreement.

Run with the reference environment (torchattacks pins an old ``requests``, so it never goes into ``.venv``)::

    python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.14.1 torchvision==0.29.1 timm==1.0.31 \
        torchattacks==3.5.1 hydra-core==1.3.8 omegaconf==2.3.1 rich==15.0.0 safetensors numpy
    PYTHONPATH=. .venv-ref/bin/python benchmarks/bench_attacks.py
    PYTHONPATH=. .venv-ref/bin/python benchmarks/bench_attacks.py --aa-components 1 128   # + time per component

The model is trained briefly on the embedded synthetic lesions (same weights for both libraries); timings
alternate between the libraries and report the median. Robust accuracies must agree within 1 percentage
point or 1 image, whichever is larger (random starts differ between libraries).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
import torch.nn.functional as F

from trixai.core.frozen import frozen_eval
from trixai.data.synthetic import SyntheticLesions
from trixai.models.factory import create_model
from trixai.robust.attacks import PGD, AutoAttack


def train(args: argparse.Namespace):
    bundle = SyntheticLesions(image_size=args.resolution, n_train=args.n_train, n_val=32, n_test=max(args.n, 64),
                              min_per_class=4, seed=0, cache_dir=None).load()
    torch.manual_seed(0)
    model = create_model(args.model, bundle.info.num_classes, class_names=list(bundle.info.class_names),
                         resolution=args.resolution)
    images = torch.stack([bundle.train[i]["image"] for i in range(len(bundle.train))])
    targets = torch.stack([bundle.train[i]["target"] for i in range(len(bundle.train))])
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    model.train()
    for _ in range(args.epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(images), 64):
            batch = order[start:start + 64]
            optimizer.zero_grad()
            F.cross_entropy(model(images[batch]), targets[batch]).backward()
            optimizer.step()
    model.eval()
    x = torch.stack([bundle.test[i]["image"] for i in range(args.n)])
    y = torch.stack([bundle.test[i]["target"] for i in range(args.n)])
    return model, x, y


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def step_cost(model, x, y, repeats: int) -> dict:
    """Median seconds of a forward + input-only backward vs one trixai PGD step (random start off)."""
    def forward_backward():
        with frozen_eval(model):
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)

    pgd1 = PGD(eps=8 / 255, alpha=2 / 255, steps=1, random_start=False)
    forward_backward(), pgd1(model, x, y)  # warm-up
    plain, ours = [], []
    for _ in range(repeats):
        plain.append(timed(forward_backward)[1])
        ours.append(timed(lambda: pgd1(model, x, y))[1])
    return {"forward_input_backward_s": statistics.median(plain), "pgd_step_s": statistics.median(ours),
            "ratio": statistics.median(ours) / statistics.median(plain)}


def compare(name: str, ours_fn, ref_fn, model, x, y, repeats: int) -> dict:
    ours_t, ref_t, ours_acc, ref_acc = [], [], [], []
    for _ in range(repeats):
        adv, seconds = timed(ref_fn)
        ref_t.append(seconds)
        ref_acc.append(accuracy(model, adv, y))
        adv, seconds = timed(ours_fn)
        ours_t.append(seconds)
        ours_acc.append(accuracy(model, adv, y))
    n = len(y)
    ours_s, ref_s = statistics.median(ours_t), statistics.median(ref_t)
    gap = abs(statistics.mean(ours_acc) - statistics.mean(ref_acc))
    return {"attack": name, "n": n, "repeats": repeats,
            "trixai_images_per_s": n / ours_s, "reference_images_per_s": n / ref_s, "speedup": ref_s / ours_s,
            "trixai_robust_acc": statistics.mean(ours_acc), "reference_robust_acc": statistics.mean(ref_acc),
            "agree": gap <= max(0.01, 1 / n) + 1e-9, "trixai_s": ours_t, "reference_s": ref_t}


def reference_autoattack(torchattacks, model, eps: float, steps: int):
    """torchattacks' standard ensemble with ``steps`` iterations for APGD-CE, APGD-T and FAB-T.

    ``torchattacks.AutoAttack`` builds its components with their class defaults, 10 iterations each, not the
    published 100; building the same MultiAttack here lets both libraries run identical settings.
    """
    classes = len(model.class_names)
    return torchattacks.MultiAttack([
        torchattacks.APGD(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, loss="ce", seed=0),
        torchattacks.APGDT(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, n_classes=classes, seed=0),
        torchattacks.FAB(model, norm="Linf", eps=eps, steps=steps, n_restarts=1, multi_targeted=True,
                         n_classes=classes, seed=0),
        torchattacks.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, seed=0),
    ])


def components(model, x, y, eps: float, steps: int, max_batches: list[int]) -> list[dict]:
    """Seconds per AutoAttack component on the points still robust, for each ``max_batch`` (1: sequential)."""
    rows = []
    with frozen_eval(model):
        for max_batch in max_batches:
            attack = AutoAttack(eps=eps, steps=steps, seed=0, max_batch=max_batch)
            torch.manual_seed(0)
            with torch.no_grad():
                clean = model(x)
            left = clean.argmax(1) == y
            for component in attack.components(clean.shape[1], multilabel=False):
                points = int(left.sum())
                adv, seconds = timed(lambda: component.perturb(model, x[left], y[left]))
                with torch.no_grad():
                    fooled = model(adv).argmax(1) != y[left]
                left[left.nonzero().squeeze(1)[fooled]] = False
                rows.append({"max_batch": max_batch, "attack": component.name, "points": points,
                             "fooled": int(fooled.sum()), "seconds": seconds})
                print(json.dumps(rows[-1]))
    return rows


def main() -> None:
    import torchattacks

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--n", type=int, default=128, help="images in the attacked batch")
    parser.add_argument("--n-train", type=int, default=700)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--eps", type=float, default=2 / 255, help="L-inf eps in [0, 1] pixels")
    parser.add_argument("--repeats", type=int, default=3, help="PGD timing repeats (0: skip the PGD comparison)")
    parser.add_argument("--aa-n", type=int, default=32, help="images for the AutoAttack comparison (0: skip)")
    parser.add_argument("--aa-steps", type=int, nargs="+", default=[100],
                        help="APGD/APGD-T/FAB-T iterations (100: published; 10: torchattacks.AutoAttack's defaults)")
    parser.add_argument("--aa-repeats", type=int, default=1, help="AutoAttack timing repeats")
    parser.add_argument("--aa-components", type=int, nargs="*", default=[], metavar="MAX_BATCH",
                        help="also time trixai's AutoAttack components alone for these max_batch values (1: sequential)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, x, y = train(args)
    results = {"args": vars(args), "torch": torch.__version__, "torchattacks": torchattacks.__version__,
               "clean_acc": accuracy(model, x, y), "eps": args.eps}
    print(f"{args.model} @ {args.resolution}px, batch {args.n}, clean accuracy {results['clean_acc']:.4f}")
    if args.repeats:
        results["step"] = step_cost(model, x, y, max(args.repeats, 5))
        print(f"one PGD step / (forward + input backward): {results['step']['ratio']:.3f}")

    alpha = args.eps / 4
    # trixai's evaluation path: channels_last copy of the same weights, early stop on fooled points.
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    ref_pgd = torchattacks.PGD(model, eps=args.eps, alpha=alpha, steps=10, random_start=True)
    ours_pgd = PGD(eps=args.eps, alpha=alpha, steps=10, random_start=True, early_stop=True)
    plain_pgd = PGD(eps=args.eps, alpha=alpha, steps=10, random_start=True)
    if args.repeats:
        results["pgd10"] = compare("PGD-10", lambda: ours_pgd(fast, x_cl, y), lambda: ref_pgd(x, y), model, x, y,
                                   args.repeats)
        results["pgd10_plain"] = compare("PGD-10 (no early stop, contiguous)", lambda: plain_pgd(model, x, y),
                                         lambda: ref_pgd(x, y), model, x, y, args.repeats)
        for key in ("pgd10", "pgd10_plain"):
            print(json.dumps({k: v for k, v in results[key].items() if not isinstance(v, list)}, indent=1))

    if args.aa_n:
        xa, ya = x[: args.aa_n], y[: args.aa_n]
        xa_cl = xa.contiguous(memory_format=torch.channels_last)
        for steps in args.aa_steps:
            ours_aa = AutoAttack(eps=args.eps, version="standard", steps=steps, seed=0)
            ref_aa = reference_autoattack(torchattacks, model, args.eps, steps)
            key = f"autoattack_{steps}"
            results[key] = compare(f"AutoAttack standard, {steps} steps", lambda: ours_aa(fast, xa_cl, ya),
                                   lambda: ref_aa(xa, ya), model, xa, ya, args.aa_repeats)
            print(json.dumps({k: v for k, v in results[key].items() if not isinstance(v, list)}, indent=1))
    if args.aa_n and args.aa_components:
        results["components"] = components(fast, xa_cl, ya, args.eps, args.aa_steps[0], args.aa_components)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
