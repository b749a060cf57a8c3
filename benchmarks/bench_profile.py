"""Profile EfficientNet-B0..B3 and ResNet-50 (1000 classes, published resolutions) and compare with the papers.

    python benchmarks/bench_profile.py [--device cuda --bf16 --channels-last] [--large-batch 32 --train-batch 8]

Prints a Markdown table: params and MACs next to the published values (ratio measured / published), model
size, latency/throughput at batch 1 and a large batch, peak inference and TRADES-10 training-step memory,
and the latency of each model relative to ResNet-50 measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from trixai.models import create_model
from trixai.training.profiling import profile_model

# Published params / multiply-adds at 1000 classes (EfficientNet: Tan & Le 2019, Table 1; ResNet-50: He et al.
# 2016, 3.8-4.1 G depending on how the stem is counted; 25.6 M).
MODELS = {
    "efficientnet_b0": (224, 5.3e6, 0.39e9),
    "efficientnet_b1": (240, 7.8e6, 0.70e9),
    "efficientnet_b2": (260, 9.2e6, 1.0e9),
    "efficientnet_b3": (300, 12e6, 1.8e9),
    "resnet50": (224, 25.6e6, 4.1e9),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--large-batch", type=int, default=16)
    parser.add_argument("--train-batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", help="also write the raw profiles here")
    args = parser.parse_args()

    profiles = {}
    for name, (resolution, _, _) in MODELS.items():
        torch.manual_seed(0)
        model = create_model(name, 1000, resolution=resolution)
        profiles[name] = profile_model(
            model, device=args.device, batch_sizes=(1, args.large_batch), train_batch=args.train_batch,
            warmup=args.warmup, repeats=args.repeats, bf16=args.bf16, channels_last=args.channels_last)
    big = args.large_batch
    reference = profiles["resnet50"][f"latency_ms_b{big}"]
    print(f"device={args.device} bf16={args.bf16} channels_last={args.channels_last} torch={torch.__version__} "
          f"threads={torch.get_num_threads()} load={os.getloadavg()[0]:.1f}")
    print(f"| model | res | params (M) | vs paper | GMACs | vs paper | fp32 / fp16 MiB | ms b1 | img/s b1 "
          f"| ms b{big} | img/s b{big} | b{big} latency vs ResNet-50 | peak infer b{big} MiB "
          f"| peak TRADES-10 b{args.train_batch} MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (resolution, params, macs) in MODELS.items():
        p = profiles[name]
        print(f"| {name} | {resolution} | {p['params'] / 1e6:.2f} | {p['params'] / params:.3f} | "
              f"{p['macs'] / 1e9:.3f} | {p['macs'] / macs:.3f} | "
              f"{p['size_fp32_bytes'] / 2**20:.1f} / {p['size_fp16_bytes'] / 2**20:.1f} | "
              f"{p['latency_ms_b1']:.1f} | {p['throughput_b1']:.1f} | {p[f'latency_ms_b{big}']:.1f} | "
              f"{p[f'throughput_b{big}']:.1f} | {p[f'latency_ms_b{big}'] / reference:.2f}x | "
              f"{p['peak_mem_infer_bytes'] / 2**20:.0f} | {p['peak_mem_train_bytes'] / 2**20:.0f} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(profiles, handle, indent=2)


if __name__ == "__main__":
    main()
