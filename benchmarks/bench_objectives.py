"""Step time of the training objectives on one model and batch: tri_objective / trades (issue 7's cost).

Each repeat times one full optimiser step (inner attack + forwards + backward) of every objective in turn
(interleaved, so machine load hits all alike); the median is reported with the ratio to TRADES.

    python benchmarks/bench_objectives.py --model efficientnet_b0 --size 64 --batch 32 --steps 5
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from trixai.models import create_model
from trixai.robust.attacks import PGD
from trixai.robust.objectives import TRADES, Standard, TriObjective


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
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model(args.model, 7, resolution=args.size).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    x, y = torch.rand(args.batch, 3, args.size, args.size), torch.randint(0, 7, (args.batch,))
    attack = PGD(eps=8 / 255, alpha=2 / 255, steps=args.steps)
    objectives = {"standard": Standard(), "trades": TRADES(),
                  "tri_objective": TriObjective(cam_layer=args.cam_layer, lambda_expl=0.3)}
    times = {name: [] for name in objectives}
    for name, objective in objectives.items():  # warm-up
        step_time(model, objective, x, y, attack, optimizer)
    for _ in range(args.repeats):
        for name, objective in objectives.items():
            times[name].append(step_time(model, objective, x, y, attack, optimizer))
    trades = statistics.median(times["trades"])
    print(f"{args.model} {args.size}px batch {args.batch}, PGD-{args.steps} inner, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print("| objective | step time (s) | ratio to trades |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / trades:.2f}x |")


if __name__ == "__main__":
    main()
