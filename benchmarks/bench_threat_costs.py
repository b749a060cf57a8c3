"""What the explanation attacks and randomized smoothing cost per image, against the prediction attack (PGD-10).

On the first ``--points`` test images of a trained run (multiclass), in one process, each timed once after a warm-up
call on two images: PGD-10 at ``--eps`` (the explanation suite's prediction attack), the untargeted top-k
manipulation (Ghorbani et al.) and the targeted one (Dombrowski et al.) with the explanation suite's defaults (100
signed steps of ε/8, top 2 % of pixels, γ = 1e-5) through Grad-CAM and multi-scale Grad-CAM, and randomized smoothing
(Cohen et al.: CERTIFY with n0 = 100 and ``--n`` samples, PREDICT with ``--n``) at σ = ``--sigma``. Prints seconds per
image and the ratio to PGD-10, with the CPU and thread count.

    python benchmarks/bench_threat_costs.py --ckpt <run> --points 8
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from bench_multilabel_losses import first_test_images
from bench_test_phase import cpu_name

from trixai.core.values import parse_eps
from trixai.robust.registry import create_attack
from trixai.robust.smoothing import Smoothing
from trixai.xai.manipulation import Manipulation, TargetedManipulation, TopKManipulation


def seconds(run: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """Seconds per image of ``run`` on ``x``, after a warm-up call on two images."""
    run(x[:2])
    start = time.perf_counter()
    run(x)
    return (time.perf_counter() - start) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.manual_seed(0)
    model, batch = first_test_images(args.ckpt, args.points)
    x = batch["image"]
    (eps,) = parse_eps(args.eps)
    pgd = create_attack("pgd10", eps)
    rows: dict[str, float] = {"PGD-10 (prediction attack)": seconds(lambda b: pgd(model, b, model(b).argmax(1)), x)}
    common = {"eps": eps, "alpha": eps / 8, "steps": 100}
    pixels = max(1, round(0.02 * x.shape[-1] * x.shape[-2]))
    for explainer, label in (("gradcam", "Grad-CAM"), ("multiscale_gradcam", "multi-scale Grad-CAM")):
        untargeted = TopKManipulation(**common, explainer=explainer, topk=pixels)
        targeted = TargetedManipulation(**common, explainer=explainer)

        def towards_next_map(b: torch.Tensor, attack: Manipulation = targeted) -> object:
            maps = attack.saliency(model, b, None, create_graph=False)[0].detach().roll(1, 0)
            return attack(model, b, None, target_maps=maps + 1e-12)

        rows[f"top-k manipulation, {label}"] = seconds(lambda b, attack=untargeted: attack(model, b), x)
        rows[f"targeted manipulation, {label}"] = seconds(towards_next_map, x)
    smoothing = Smoothing(sigma=args.sigma, n=args.n)
    index = torch.arange(len(x))
    rows[f"smoothing CERTIFY (n0 = 100, n = {args.n})"] = seconds(
        lambda b: smoothing.certify(model, b, index[:len(b)]), x)
    rows[f"smoothing PREDICT (n = {args.n})"] = seconds(lambda b: smoothing.predict(model, b, index[:len(b)]), x)
    print(f"{args.ckpt}: {len(x)} test images at {x.shape[-1]} px, eps {args.eps}; {cpu_name()}, "
          f"{torch.get_num_threads()} threads")
    print("| method | seconds per image | × PGD-10 |\n|---|---:|---:|")
    base = rows["PGD-10 (prediction attack)"]
    for name, value in rows.items():
        print(f"| {name} | {value:.3f} | {value / base:.1f} |")


if __name__ == "__main__":
    main()
