"""The size of each adversarial-training loss term at a clean start: value and parameter-gradient norm of PGD-AT's,
TRADES' and MART's terms on training batches, with the adversary each objective uses.

    python benchmarks/bench_loss_terms.py --weights <clean start>/model.safetensors --eps 2 [--batches 4]

The model file is a clean start of ``bench_recipes.py`` (its ``--ablation``: B0 at 64 px); the batches are the
first ``--batches`` training batches of the same data (synthetic_lesions, sampler 0.75, batch 32). Prints, per term,
the mean over batches of its value and of the L2 norm of its gradient w.r.t. all parameters (model in train mode,
as in training), and the share of adversarial points whose highest wrong-class probability exceeds 0.99.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from trixai.models.export import load_model
from trixai.robust.losses import output_divergence
from trixai.tasks.compose import compose_job
from trixai.training.objectives import MART, PGDAT, TRADES


def grad_norm(model: torch.nn.Module, value: torch.Tensor) -> float:
    grads = torch.autograd.grad(value, [p for p in model.parameters() if p.requires_grad], retain_graph=True,
                                allow_unused=True)
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads if g is not None)))


def terms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, attack, beta: float) -> dict[str, tuple]:
    """Each term's value and gradient norm (parameters), plus the share of confidently fooled adversarial points."""
    out = {}
    x_pgd = PGDAT().examples(model, x, y, attack)  # Madry: train-mode adversary
    out["PGD-AT: CE(x_adv)"] = F.cross_entropy(model(x_pgd), y)
    x_trades = TRADES(beta=beta).examples(model, x, y, attack)
    logits = model(x)
    out["TRADES: CE(x)"] = F.cross_entropy(logits, y)
    out[f"TRADES: {beta:g} KL(p(x) || p(x_adv))"] = beta * output_divergence(model(x_trades), logits,
                                                                             multilabel=False).mean()
    x_mart = MART(beta=beta).examples(model, x, y, attack)
    logits_adv = model(x_mart)
    log_p_adv = F.log_softmax(logits_adv, dim=1)
    other = log_p_adv.scatter(1, y[:, None], float("-inf")).max(dim=1).values
    p_true = F.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
    out["MART: CE(x_adv)"] = F.nll_loss(log_p_adv, y)
    out["MART: -log(1 - max_{k != y} p_k(x_adv))"] = -torch.log1p(-other.exp().clamp(max=1 - 1e-7)).mean()
    out[f"MART: {beta:g} KL * (1 - p_y(x))"] = beta * (output_divergence(logits_adv, logits, multilabel=False)
                                                       * (1 - p_true)).mean()
    fooled = float((other.exp() > 0.99).double().mean())
    return {name: (float(value), grad_norm(model, value)) for name, value in out.items()} | {"fooled": fooled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a clean start's model.safetensors")
    parser.add_argument("--eps", type=float, default=2.0, help="L-inf radius in 1/255 units")
    parser.add_argument("--beta", type=float, default=6.0)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.weights).train()
    cfg = compose_job(["dataset=synthetic_lesions", "dataset.n_train=1000", f"model.resolution={model.input_size}",
                       "data.batch_size=32", "data.balanced_sampler=0.75", "data.augment.random_resized_crop=null",
                       "data.augment.rotation=0", "data.augment.color_jitter=null", "attack=pgd10",
                       f"attack.eps={args.eps / 255}"], Path("outputs/bench_loss_terms"))
    datamodule = instantiate(cfg.data, dataset=instantiate(cfg.dataset))
    datamodule.setup("fit")
    attack = instantiate(cfg.attack)
    rows = []
    for index, batch in enumerate(datamodule.train_dataloader()):
        if index == args.batches:
            break
        rows.append(terms(model, batch["image"], batch["target"], attack, args.beta))
    print(f"{model.name} at {model.input_size} px from {args.weights}; eps {args.eps:g}/255, PGD-10 adversaries; "
          f"means over {len(rows)} training batches of 32")
    print("| term | value | gradient norm (parameters) |")
    print("|---|---:|---:|")
    for name in (k for k in rows[0] if k != "fooled"):
        print(f"| {name} | {statistics.mean(r[name][0] for r in rows):.4f} | "
              f"{statistics.mean(r[name][1] for r in rows):.4f} |")
    print(f"MART adversarial points with max wrong-class probability > 0.99: "
          f"{statistics.mean(r['fooled'] for r in rows):.3f}")


if __name__ == "__main__":
    main()
