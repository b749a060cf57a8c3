"""Which loss makes a strong attack on a multi-label model's per-label ranking (macro AUROC)?

On the first ``--points`` test images of a trained multi-label run, at ``--eps``: clean, PGD-10 (BCE), APGD at full
budget on BCE and on the expected Hamming loss (``trixai.robust.losses.expected_hamming_loss``), and AutoAttack's
loss pass (what the suite reports for AutoAttack's non-accuracy metrics). Prints macro AUROC, exact-match accuracy
and the mean BCE per output, one row each.

    python benchmarks/bench_multilabel_losses.py --ckpt <synthetic_cxr run> --points 48 --eps 8/255
"""

from __future__ import annotations

import argparse

import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multilabel_auroc

from trixai import load_model
from trixai.core.values import parse_eps
from trixai.robust.attacks import APGD
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.losses import classification_loss
from trixai.robust.registry import create_attack
from trixai.suites.scoring import highest_loss_logits


def first_test_images(ckpt: str, points: int) -> tuple[torch.nn.Module, dict]:
    """A trained run's model (in eval mode) and the first ``points`` images of its dataset's test split."""
    model = load_model(ckpt).eval()
    dataset = {k: v for k, v in model.meta["config"]["dataset"].items() if k != "cache_dir"}
    test = instantiate({**dataset, "cache_dir": None}, _convert_="all").load().test
    return model, next(iter(DataLoader(test, batch_size=points)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--points", type=int, default=48)
    parser.add_argument("--eps", default="8/255")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model, batch = first_test_images(args.ckpt, args.points)
    x, y = batch["image"], batch["target"]
    if not y.is_floating_point():
        raise SystemExit(f"{args.ckpt}: a multiclass model; this benchmark is for multi-label models")
    (eps,) = parse_eps(args.eps)

    def attacked(attack) -> torch.Tensor:
        torch.manual_seed(args.seed)
        with torch.no_grad():
            return model(attack(model, x, y))

    outputs = {"clean": model(x).detach(), "PGD-10 (BCE)": attacked(create_attack("pgd10", eps)),
               "APGD-100, BCE, full budget": attacked(APGD(eps=eps, loss="ce", full_budget=True)),
               "APGD-100, expected Hamming, full budget": attacked(APGD(eps=eps, loss="hamming", full_budget=True))}
    autoattack = create_attack("autoattack", eps)
    torch.manual_seed(args.seed)
    with torch.no_grad():
        candidates = [model(c) for c in autoattack.full_budget_pass(model, x, y)]
    outputs["AutoAttack loss pass"] = highest_loss_logits(candidates, y)[0]
    print(f"{args.ckpt}: {len(y)} test points, eps {args.eps}, seed {args.seed}")
    print("| output | macro AUROC | exact-match accuracy | mean BCE |\n|---|---:|---:|---:|")
    for name, logits in outputs.items():
        auroc = float(multilabel_auroc(logits, y.long(), num_labels=y.shape[1], average="macro"))
        accuracy = float((~is_fooled(logits, y)).float().mean())
        bce = float(classification_loss(logits, y, reduction="none").mean())
        print(f"| {name} | {auroc:.3f} | {accuracy:.3f} | {bce:.1f} |")


if __name__ == "__main__":
    main()
