"""AutoAttack's checks on the model itself (Croce & Hein 2020, ``autoattack/checks.py``; Athalye et al. 2018).

Standard attacks assume a deterministic model that returns logits and behaves the same for every batch. A
random model, softmax outputs, a model left in training mode (BatchNorm batch statistics, dropout) or one that
optimises at inference time make their numbers unreliable. Each check returns ``{"check", "passed", "detail"}``
like :mod:`trixai.suites.masking`; :func:`model_checks` runs the ones that need the model on one clean batch.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from trixai.robust.attacks.margins import is_fooled

RANDOM_TOLERANCE = 1e-4
"""Largest L2 distance between two forwards' L2-normalised outputs of a point (the original's threshold)."""
PROBABILITY_TOLERANCE = 1e-5
"""Slack on [0, 1] and on the row sums when deciding that outputs are probabilities (the original's)."""
BATCH_TOLERANCE = 1e-4
"""Largest change of a point's outputs, relative to the largest output, when the rest of the batch is replaced."""


@contextmanager
def _buffers_kept(model: nn.Module) -> Iterator[None]:
    """Buffers (BatchNorm running statistics) as they were, whatever the forwards inside do to them."""
    saved = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def _agreement(model: nn.Module, x: Tensor, y: Tensor, forwards: int) -> tuple[bool, str]:
    with torch.no_grad():
        outputs = [model(x).float() for _ in range(forwards)]
    unit = [o.flatten(1) / (o.flatten(1).norm(dim=1, keepdim=True) + 1e-10) for o in outputs]
    spread = max(float((a - b).norm(dim=1).max()) for a, b in itertools.combinations(unit, 2))
    correct = sorted({int((~is_fooled(o, y)).sum()) for o in outputs})
    return spread <= RANDOM_TOLERANCE and len(correct) == 1, (
        f"{forwards} forwards of {len(x)} points: largest change of normalised outputs {spread:.2e} "
        f"(tolerance {RANDOM_TOLERANCE:g}), correct points {correct}")


def _randomness_check(deterministic: bool, summary: str, eot: bool) -> dict:
    advice = "" if deterministic else ("; random model, evaluated with autoattack version=rand (EOT)" if eot else
                                       "; evaluate a random model with autoattack version=rand (EOT)")
    return {"check": "model is deterministic (repeated forwards agree)", "passed": deterministic or eot,
            "detail": summary + advice}


def randomness(model: nn.Module, x: Tensor, y: Tensor, forwards: int = 5, eot: bool = False) -> dict:
    """``forwards`` forwards of one batch agree: every point's L2-normalised outputs within
    :data:`RANDOM_TOLERANCE` and the same number of correct points. A random model needs AutoAttack
    ``version=rand``; with ``eot`` (that run is in the evaluation) it passes, as the original skips the check."""
    return _randomness_check(*_agreement(model, x, y, forwards), eot)


def probabilities(outputs: Tensor, multilabel: bool) -> dict:
    """The outputs are logits: outputs all in [0, 1] with rows summing to 1 (softmax), or for multi-label all in
    [0, 1] (sigmoid), fail; attacks on probabilities underflow and stall."""
    low, high = float(outputs.min()), float(outputs.max())
    in_unit = low > -PROBABILITY_TOLERANCE and high < 1 + PROBABILITY_TOLERANCE
    row_error = float((outputs.double().sum(dim=1) - 1).abs().max())
    looks = in_unit and (multilabel or row_error < PROBABILITY_TOLERANCE)
    shape = "every output in [0, 1] (sigmoid?)" if multilabel else "rows in [0, 1] summing to 1 (softmax?)"
    return {"check": "outputs are logits, not probabilities", "passed": not looks,
            "detail": f"outputs in [{low:.4g}, {high:.4g}], largest deviation of a row sum from 1: {row_error:.2e}"
                      + (f": {shape}; attack the logits" if looks else "")}


def training_mode(model: nn.Module, x: Tensor, random: bool = False) -> dict:
    """In eval mode the model behaves as in eval mode: no module still training, no buffer changed by a forward
    (BatchNorm running statistics), and a point's outputs do not depend on the rest of the batch (batch
    statistics: the first half of the batch is run again beside black images, same batch size). The batch
    test is skipped for a ``random`` model, whose forwards differ anyway."""
    training = [name or type(model).__name__ for name, module in model.named_modules() if module.training]
    before = [(name, buffer.detach().clone()) for name, buffer in model.named_buffers()]
    with torch.no_grad():
        full = model(x).float()
        half = len(x) // 2
        part = model(torch.cat([x[:half], torch.zeros_like(x[half:])])).float()[:half]
    buffers = dict(model.named_buffers())
    changed = [name for name, value in before if not torch.equal(buffers[name], value)]
    problems = []
    if training:
        problems.append(f"modules in training mode: {', '.join(training[:5])}" + (" ..." if len(training) > 5 else ""))
    if changed:
        problems.append(f"buffers changed by a forward: {', '.join(changed[:5])}" + (" ..." if len(changed) > 5 else ""))
    if random or len(x) < 2:
        batch = "not measured (" + ("random model" if random else "one point") + ")"
    else:
        shift = float((full[:half] - part).abs().max()) / (float(full[:half].abs().max()) + 1e-12)
        batch = f"{shift:.2e} (relative, tolerance {BATCH_TOLERANCE:g})"
        if shift > BATCH_TOLERANCE:
            problems.append(f"outputs depend on the rest of the batch: {batch}; batch statistics?")
    return {"check": "model in eval mode (no batch statistics, dropout or state updates)", "passed": not problems,
            "detail": "; ".join(problems) or f"no module training, buffers unchanged, batch dependence {batch}"}


def inference_optimisation(model: nn.Module, x: Tensor) -> dict:
    """The forward calls no autograd (``torch.autograd.grad`` or ``backward``): a defence that optimises at
    inference time needs an adaptive attack (AutoAttack's "dynamic defense" check)."""
    watched = {torch.autograd.grad.__code__: "torch.autograd.grad", torch.autograd.backward.__code__: "backward"}
    calls: list[str] = []

    def profile(frame, event, arg) -> None:
        if event == "call" and frame.f_code in watched:
            calls.append(watched[frame.f_code])

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        with torch.enable_grad():
            model(x[:1])
    finally:
        sys.setprofile(previous)
    return {"check": "no optimisation at inference time (autograd inside the forward)", "passed": not calls,
            "detail": (f"the forward called {', '.join(sorted(set(calls)))} {len(calls)} time(s): a dynamic defence "
                       f"needs an adaptive attack") if calls else "the forward calls no autograd"}


def model_checks(model: nn.Module, x: Tensor, y: Tensor, eot: bool = False) -> list[dict]:
    """Randomness, training mode and inference-time optimisation on one clean batch, the model as it is attacked
    (the caller freezes it in eval mode); its buffers are restored afterwards. ``eot``: see :func:`randomness`."""
    with _buffers_kept(model):
        deterministic, summary = _agreement(model, x, y, forwards=5)
        return [_randomness_check(deterministic, summary, eot), training_mode(model, x, random=not deterministic),
                inference_optimisation(model, x)]
