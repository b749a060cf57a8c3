"""Where a CPU training step of the demo goes: forward, backward and optimiser step of EfficientNet-B0 at 64 px,
memory format, AdamW's multi-tensor (``foreach``) update, batch size, ``torch.compile``, and the data loader.

    python benchmarks/bench_train_step.py [--compile] [--threads 2]

Every variant is timed on the same random batch, interleaved over ``--repeats`` rounds after a warm-up round (machine
load hits all alike); medians. ``--compile`` adds ``torch.compile`` of the channels_last model (its first step,
the compilation, is printed separately). "backward" includes ``zero_grad``. The loader row is one epoch of
``experiment=demo``'s training loader.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from trixai.models import create_model
from trixai.tasks.compose import compose_job

SIZE = 64


def setup(batch: int, channels_last: bool, foreach: bool, compile_model: bool = False):
    torch.manual_seed(0)
    model = create_model("efficientnet_b0", 7, resolution=SIZE).train()
    x = torch.rand(batch, 3, SIZE, SIZE)
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=foreach)
    return (torch.compile(model) if compile_model else model), x, torch.randint(0, 7, (batch,)), optimizer


def step(model, x, y, optimizer) -> tuple[float, float, float]:
    """Seconds of the forward (with the loss), the backward and the optimiser step."""
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    forward = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    backward = time.perf_counter()
    optimizer.step()
    return forward - start, backward - forward, time.perf_counter() - backward


def loader_epoch_seconds() -> tuple[int, float]:
    cfg = compose_job(["experiment=demo"], Path("outputs/bench_train_step"))
    datamodule = instantiate(cfg.data, dataset=instantiate(cfg.dataset))
    datamodule.setup("fit")
    start, batches = time.perf_counter(), 0
    for _ in datamodule.train_dataloader():
        batches += 1
    return batches, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10, choices=range(1, 1001), metavar="N")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {
        "contiguous, AdamW loop, batch 32": setup(32, False, False),
        "channels_last, AdamW loop, batch 32 (round 2)": setup(32, True, False),
        "channels_last, AdamW foreach, batch 32 (now)": setup(32, True, True),
        "channels_last, AdamW foreach, batch 48": setup(48, True, True),
        "channels_last, AdamW foreach, batch 64": setup(64, True, True),
    }
    if args.compile:
        variants["torch.compile, channels_last, foreach, batch 32"] = setup(32, True, True, compile_model=True)
    times = {name: [] for name in variants}
    for repeat in range(args.repeats + 1):
        for name, (model, x, y, optimizer) in variants.items():
            parts = step(model, x, y, optimizer)
            if repeat:
                times[name].append(parts)
            elif "compile" in name:
                print(f"torch.compile: first step (compilation) {sum(parts):.1f} s")
    base = statistics.median(sum(p) for p in times["channels_last, AdamW loop, batch 32 (round 2)"]) / 32
    print(f"EfficientNet-B0 {SIZE} px, 7 classes, {args.threads} threads, median of {args.repeats}")
    print("| variant | forward (s) | backward (s) | optimiser (s) | step (s) | ms per image | per image vs round 2 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, parts in times.items():
        forward, backward, update = (statistics.median(p[i] for p in parts) for i in range(3))
        total = statistics.median(sum(p) for p in parts)
        batch = len(variants[name][1])
        print(f"| {name} | {forward:.4f} | {backward:.4f} | {update:.4f} | {total:.4f} | {1000 * total / batch:.2f} | "
              f"{total / batch / base:.2f} |")
    batches, seconds = loader_epoch_seconds()
    print(f"experiment=demo training loader: one epoch of {batches} batches in {seconds:.2f} s")


if __name__ == "__main__":
    main()
