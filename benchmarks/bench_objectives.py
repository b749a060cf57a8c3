"""Step time of the training objectives on one model and batch: tri_objective / trades (issue 7's cost), in the
default (contiguous) and the channels_last memory format (``trixai-train channels_last=true``).

Each repeat times one full optimiser step (inner attack + forwards + backward) of every objective and format in
turn (interleaved, so machine load hits all alike); medians are reported with the ratio to TRADES in the same
format and the channels_last speed-up.

    python benchmarks/bench_objectives.py --model efficientnet_b0 --size 64 --batch 32 --steps 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from trixai.models import create_model
from trixai.robust.attacks import PGD
from trixai.training.objectives import TRADES, Standard, TriObjective


def step_time(model, objective, x, y, attack, optimizer) -> float:
    start = time.perf_counter()
    out = objective(model, x, y, attack=attack)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_b0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="inner PGD steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cam-layer", default="final")
    parser.add_argument("--objectives", nargs="+", default=["standard", "trades", "tri_objective"],
                        choices=["standard", "trades", "tri_objective"], help="which objectives to time")
    args = parser.parse_args()
    torch.manual_seed(0)
    base = create_model(args.model, 7, resolution=args.size).train()
    x, y = torch.rand(args.batch, 3, args.size, args.size), torch.randint(0, 7, (args.batch,))
    attack = PGD(eps=8 / 255, alpha=2 / 255, steps=args.steps)
    available = {"standard": Standard(), "trades": TRADES(),
                 "tri_objective": TriObjective(cam_layer=args.cam_layer, lambda_expl=0.3)}
    objectives = {name: available[name] for name in args.objectives}
    formats = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
    setups = {}
    for fmt, memory_format in formats.items():
        model = copy.deepcopy(base).to(memory_format=memory_format)
        setups[fmt] = (model, torch.optim.SGD(model.parameters(), lr=1e-4), x.contiguous(memory_format=memory_format))
    times = {(name, fmt): [] for name in objectives for fmt in formats}
    for repeat in range(args.repeats + 1):  # the first round is a warm-up
        for name, fmt in times:
            model, optimizer, xf = setups[fmt]
            seconds = step_time(model, objectives[name], xf, y, attack, optimizer)
            if repeat:
                times[name, fmt].append(seconds)
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"{args.model} {args.size}px batch {args.batch}, PGD-{args.steps} inner, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print("| objective | contiguous step (s) | channels_last step (s) | channels_last speed-up | "
          "ratio to trades (contiguous / channels_last) |")
    print("|---|---:|---:|---:|---:|")
    for name in objectives:
        plain, fast = median[name, "contiguous"], median[name, "channels_last"]
        ratio = "-"
        if "trades" in objectives:
            ratio = (f"{plain / median['trades', 'contiguous']:.2f}x / "
                     f"{fast / median['trades', 'channels_last']:.2f}x")
        print(f"| {name} | {plain:.3f} | {fast:.3f} | {plain / fast:.2f}x | {ratio} |")


if __name__ == "__main__":
    main()
