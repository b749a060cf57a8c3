"""Grad-CAM speed and agreement: trixai vs pytorch-grad-cam and captum on the same model and batch.

Three comparisons, all in one run on one device (ratios are what counts):

1. Grad-CAM at the final layer: ``trixai.xai.grad_cam`` vs ``pytorch_grad_cam.GradCAM`` vs captum
   ``LayerGradCam``. The maps must agree (Pearson r per image >= 0.999 after the same bilinear upsampling and
   min-max normalisation).
2. Multi-scale (low/mid/high): one trixai call with three layers (one backward) vs three single-layer calls.
3. Deletion + insertion AUC: trixai's batched steps (one ranking, all step images batched) vs a per-image,
   per-step loop at the same steps; the AUCs must match.

The references live in their own venv (they are not trixai dependencies)::

    python -m venv .venv-cam
    echo "$PWD/.venv/lib/python3.11/site-packages" > .venv-cam/lib/python3.11/site-packages/trixai_main.pth
    .venv-cam/bin/pip install grad-cam==1.5.7 captum==0.9.0 opencv-python-headless==5.0.0.93
    PYTHONPATH=. .venv-cam/bin/python benchmarks/bench_cam.py --model efficientnet_b0 --size 224 --batch 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from importlib import metadata

import numpy as np
import torch
import torch.nn.functional as F

from trixai.core.frozen import frozen_eval
from trixai.models import create_model
from trixai.xai.base import normalize_maps, upsample_maps
from trixai.xai.gradcam import grad_cam
from trixai.xai.metrics.faithfulness import (
    PROTOCOLS,
    class_probability,
    deletion_insertion,
    input_mean,
    substrate,
    trapezoid_auc,
)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time over ``repeats`` calls after one warm-up call; returns (seconds, last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def pearson_per_image(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def per_image_loop_auc(model, x, maps, targets, steps, variant):
    """Reference: one forward per image and step (the usual RISE-style loop), same ranking and steps."""
    deletion, insertion = [], []
    with frozen_eval(model), torch.no_grad():
        for i in range(len(x)):
            image = x[i:i + 1]
            chosen = PROTOCOLS[variant]  # both paths to/from the same substrate
            base = substrate(image, chosen.deletion, chosen, input_mean(model, image.shape[1]))
            order = maps[i].flatten().argsort(descending=True, stable=True)
            d_curve, i_curve = [], []
            for k in range(steps + 1):
                count = round(k / steps * order.numel())
                mask = torch.zeros(order.numel(), device=x.device)
                mask[order[:count]] = 1.0
                mask = mask.view(1, 1, *maps.shape[-2:])
                d_curve.append(class_probability(model(image * (1 - mask) + base * mask), targets[i:i + 1],
                                                 "multiclass"))
                i_curve.append(class_probability(model(base * (1 - mask) + image * mask), targets[i:i + 1],
                                                 "multiclass"))
            deletion.append(torch.cat(d_curve))
            insertion.append(torch.cat(i_curve))
    return trapezoid_auc(torch.stack(deletion)), trapezoid_auc(torch.stack(insertion))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--faith-images", type=int, default=4, help="images for the deletion/insertion comparison")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    from captum.attr import LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = create_model(args.model, 7, resolution=args.size).to(device).eval()
    # Random init gives near-constant CAMs; a smooth random input batch and scaled classifier give real maps.
    with torch.no_grad():
        model.backbone.get_classifier().weight.mul_(20)
    generator = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(args.batch, 3, args.size // 8, args.size // 8, generator=generator),
                      size=(args.size, args.size), mode="bilinear", align_corners=False).to(device)
    with torch.no_grad():
        targets = model(x).argmax(1)
    layer_path = model.cam_layers["final"]
    layer = dict(model.named_modules())[layer_path]
    size = (args.size, args.size)
    print(f"device {device}, {args.model} @ {args.size}px, batch {args.batch}, threads {torch.get_num_threads()}, "
          f"torch {torch.__version__}, grad-cam {metadata.version('grad-cam')}, captum {metadata.version('captum')}")

    # 1. Single-layer Grad-CAM
    t_ours, ours = timed(lambda: grad_cam(model, x, targets, "final").maps["final"], args.repeats)
    cam_ref = GradCAM(model=model, target_layers=[layer])
    cam_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    t_pgc, theirs = timed(lambda: cam_ref(input_tensor=x, targets=cam_targets), args.repeats)
    cam_ref.activations_and_grads.release()
    captum_cam = LayerGradCam(model, layer)
    t_captum, captum_maps = timed(lambda: captum_cam.attribute(x, target=targets, relu_attributions=True),
                                  args.repeats)
    captum_norm = normalize_maps(upsample_maps(captum_maps.detach()[:, 0], size))
    r_pgc = pearson_per_image(ours.cpu(), torch.from_numpy(np.asarray(theirs)).float())
    r_captum = pearson_per_image(ours.cpu(), captum_norm.cpu())
    print("\n| Grad-CAM, final layer | median s | images/s | trixai speed-up | min Pearson r vs trixai |")
    print("|---|---:|---:|---:|---:|")
    print(f"| trixai `grad_cam` | {t_ours:.3f} | {args.batch / t_ours:.1f} | 1.00x | - |")
    print(f"| pytorch_grad_cam.GradCAM | {t_pgc:.3f} | {args.batch / t_pgc:.1f} | {t_pgc / t_ours:.2f}x | "
          f"{float(r_pgc.min()):.6f} |")
    print(f"| captum LayerGradCam | {t_captum:.3f} | {args.batch / t_captum:.1f} | {t_captum / t_ours:.2f}x | "
          f"{float(r_captum.min()):.6f} |")

    # 2. Multi-scale: one backward for three layers vs three passes
    layers = ["low", "mid", "high"]
    t_one, together = timed(lambda: grad_cam(model, x, targets, layers).maps, args.repeats)
    t_three, separate = timed(lambda: {name: grad_cam(model, x, targets, name).maps[name] for name in layers},
                              args.repeats)
    agree = min(float(pearson_per_image(together[n].cpu(), separate[n].cpu()).min()) for n in layers)
    print("\n| multi-scale Grad-CAM (low/mid/high) | median s | speed-up |")
    print("|---|---:|---:|")
    print(f"| one call, one backward for 3 layers | {t_one:.3f} | {t_three / t_one:.2f}x |")
    print(f"| three single-layer calls | {t_three:.3f} | 1.00x |")
    print(f"min Pearson r between the two: {agree:.6f}")

    # 3. Deletion / insertion: batched vs per-image loop, same steps
    n = args.faith_images
    xf, mf, tf = x[:n], ours[:n], targets[:n]
    t_batched, batched = timed(lambda: deletion_insertion(model, xf, mf, tf, steps=args.steps, variant="blur",
                                                          batch_size=256), 1)
    t_plain, _ = timed(lambda: deletion_insertion(model, xf, mf, tf, steps=args.steps, variant="blur",
                                                  batch_size=256, channels_last=False), 1)
    t_loop, looped = timed(lambda: per_image_loop_auc(model, xf, mf, tf, args.steps, "blur"), 1)
    diff = max(float((batched["deletion_auc"] - looped[0]).abs().max()),
               float((batched["insertion_auc"] - looped[1]).abs().max()))
    images = 2 * n * (args.steps + 1)
    print(f"\n| deletion + insertion, {n} images x {args.steps} steps (blur) | median s | step images/s | speed-up |")
    print("|---|---:|---:|---:|")
    print(f"| trixai, batched from one ranking (channels_last, default) | {t_batched:.3f} | "
          f"{images / t_batched:.1f} | {t_loop / t_batched:.2f}x |")
    print(f"| trixai, batched, contiguous layout | {t_plain:.3f} | {images / t_plain:.1f} | {t_loop / t_plain:.2f}x |")
    print(f"| per-image, per-step loop | {t_loop:.3f} | {images / t_loop:.1f} | 1.00x |")
    print(f"max |AUC difference|: {diff:.2e}")


if __name__ == "__main__":
    main()
