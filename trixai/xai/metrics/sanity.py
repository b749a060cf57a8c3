"""Model-parameter randomisation test (Adebayo et al. 2018), cascading from the top layer down.

A copy of the model has its parameterised top-level stages re-initialised one after another, output
layer first; after each step the explanation of the same inputs and the same target classes is compared
with the trained model's (SSIM and Spearman). A faithful method's maps must change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from trixai.xai.metrics.stability import spearman, ssim

Explain = Callable[[nn.Module, Tensor, Tensor], Tensor]


def randomisation_stages(model: nn.Module) -> list[str]:
    """Module paths to re-initialise, top (output) first: the backbone's children, with each block stage
    of a ``blocks``/``layerN`` container as its own stage."""
    root = getattr(model, "backbone", model)
    prefix = "backbone." if root is not model else ""
    stages: list[str] = []
    for name, child in root.named_children():
        if not any(True for _ in child.parameters()):
            continue
        if isinstance(child, nn.Sequential) and len(child) > 1 and name == "blocks":
            stages.extend(f"{prefix}{name}.{i}" for i in range(len(child)))
        else:
            stages.append(f"{prefix}{name}")
    return stages[::-1]


def reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Fresh random weights for every parameter of ``module``: each submodule's ``reset_parameters``
    (BatchNorm also resets its running statistics); parameters of modules without one get N(0, 0.02)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        for sub in module.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()
            else:
                for param in sub.parameters(recurse=False):
                    nn.init.normal_(param, std=0.02)


def parameter_randomisation(model: nn.Module, x: Tensor, targets: Tensor, explain: Explain, *,
                            reference: Tensor | None = None, seed: int = 0) -> list[dict]:
    """Per cascading step: the stage re-initialised, the mean SSIM / Spearman vs the trained maps and the
    per-image values (``ssim_points``, ``spearman_points``: NaN for a constant map), so the means of several
    batches of images combine exactly.

    ``explain(model, x, targets) -> (N, H, W)`` maps in [0, 1]; the trained model is never modified.
    """
    reference = explain(model, x, targets) if reference is None else reference
    randomised = copy.deepcopy(model)
    modules = dict(randomised.named_modules())
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for stage in randomisation_stages(randomised):
        reinitialise(modules[stage], generator)
        maps = explain(randomised, x, targets)
        rho, similarity = spearman(reference, maps), ssim(reference, maps)
        rows.append({"stage": stage, "ssim": float(similarity.mean()),
                     "spearman": float(rho.nanmean()) if bool((~rho.isnan()).any()) else float("nan"),
                     "n": int(x.shape[0]), "ssim_points": similarity.detach().double().cpu(),
                     "spearman_points": rho.detach().double().cpu()})
    return rows
