"""Gradient-masking checks (Athalye et al. 2018; Croce & Hein 2020) on a robustness report.

Each check is a :class:`~trixai.core.reports.Check`; ``passed`` is ``None`` when the report lacks what the check
needs (the detail says what). Noise tolerances are two binomial standard errors of the accuracy.
The checks on the model itself (randomness, softmax outputs, training mode) are in :mod:`trixai.robust.model_checks`.
"""

from __future__ import annotations

import logging
import math
import re

import torch
from torch import Tensor

from trixai.core.reports import Check, RobustnessReport

log = logging.getLogger(__name__)

SATURATED = 0.999
"""Top softmax probability (multi-label: every label's sigmoid probability or its complement) from which an
output counts as saturated."""

WHITE_BOX = ("fgsm", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t")


def noise(accuracy: float, n: int) -> float:
    """Two standard errors of an accuracy measured on ``n`` points, at least one point."""
    if n == 0:
        return 0.0
    return max(2 * math.sqrt(max(accuracy * (1 - accuracy), 0.0) / n), 1 / n)


def _steps(name: str) -> int | None:
    if name == "fgsm":
        return 1
    match = re.fullmatch(r"pgd(\d+)", name)
    return int(match.group(1)) if match else None


def ordering(report: RobustnessReport) -> Check:
    """Worst case <= every attack <= clean, at every eps."""
    clean = report.clean.get("accuracy")
    problems = []
    for label, worst in report.worst_case.items():
        for name, per_eps in report.results.items():
            accuracy = per_eps[label].get("accuracy")
            if not worst.get("accuracy") <= accuracy <= clean:
                problems.append(f"{name}@{label}: {accuracy:.4f} not in [worst {worst.get('accuracy'):.4f}, "
                                f"clean {clean:.4f}]")
    return Check("accuracy ordering (worst case <= each attack <= clean)", not problems,
                 "; ".join(problems) or "holds at every eps")


def large_eps(accuracy: float | None, eps: float, n: int, limit: float = 0.05) -> Check:
    """PGD at a huge eps must break (almost) everything: accuracy <= ``limit``."""
    name = f"PGD at eps={eps:g} drives accuracy to ~0 (<= {limit:.0%})"
    if accuracy is None:
        return Check(name, None, "not run (masking.large_eps disabled)")
    return Check(name, accuracy <= limit, f"accuracy {accuracy:.4f} on {n} points")


def more_steps(report: RobustnessReport) -> Check:
    """Among FGSM / PGD-k at one eps, more steps never raise accuracy beyond noise."""
    ranked = sorted((s, name) for name in report.results if (s := _steps(name)) is not None)
    name = "more steps never raise accuracy (FGSM, PGD-k) beyond noise"
    if len(ranked) < 2:
        return Check(name, None, "needs two of fgsm / pgd<k> in attacks")
    n, problems = report.n_points, []
    for label in report.worst_case:
        for (_, fewer), (_, more) in zip(ranked, ranked[1:]):
            a, b = report.results[fewer][label].get("accuracy"), report.results[more][label].get("accuracy")
            if b > a + noise(a, n):
                problems.append(f"{more} {b:.4f} > {fewer} {a:.4f} at {label}")
    return Check(name, not problems, "; ".join(problems) or
                 f"accuracy non-increasing in steps ({', '.join(n for _, n in ranked)}) within noise")


def black_box(report: RobustnessReport) -> Check:
    """Square (black-box) must not be much stronger than the white-box attacks."""
    name = "black-box Square not much stronger than white-box attacks"
    n, problems, compared = report.n_points, [], False
    for label in report.worst_case:
        aa = report.results.get("autoattack", {}).get(label)
        if aa is not None and aa.broken_by is not None:
            compared = True
            extra = aa.broken_by.get("square", 0)
            if extra / max(n, 1) > noise(aa.get("accuracy"), n):
                problems.append(f"Square broke {extra} points APGD/FAB missed at {label}")
        white = [report.results[a][label].get("accuracy") for a in report.results
                 if a in WHITE_BOX or _steps(a) is not None]
        square = report.results.get("square", {}).get(label)
        if square is not None and white:
            compared = True
            best = min(white)
            if square.get("accuracy") < best - noise(best, n):
                problems.append(f"square {square.get('accuracy'):.4f} < best white-box {best:.4f} at {label}")
    if not compared:
        return Check(name, None, "needs autoattack, or square plus a white-box attack")
    return Check(name, not problems, "; ".join(problems) or "Square adds nothing beyond noise")


def zero_gradients(points: int, blocks: int, total_blocks: int) -> Check:
    """No block of points whose input gradients are all exactly zero (points with zero gradient are counted)."""
    return Check("no zero-gradient blocks", blocks == 0,
                 f"{blocks}/{total_blocks} blocks of points and {points} points with an all-zero input gradient")


def saturated_points(logits: Tensor, multilabel: bool, zero_gradient: Tensor) -> Tensor:
    """Bool (N,): the clean output is saturated (top probability >= :data:`SATURATED`; multi-label: every label's
    probability that far from 0.5) or the loss's input gradient underflowed to exactly zero."""
    logits = logits.double()
    if multilabel:
        confident = torch.sigmoid(logits.abs()).min(dim=1).values >= SATURATED
    else:
        confident = logits.softmax(dim=1).max(dim=1).values >= SATURATED
    return confident | zero_gradient.to(confident.device)


def saturated_success(report: RobustnessReport, saturated: int) -> Check:
    """An attack that fools none of the initially correct points while most clean outputs are saturated
    (``saturated`` of them, :func:`saturated_points`) is likely masking: the loss's gradient vanishes there."""
    name = "no attack at 0 % success on saturated outputs"
    n = report.n_points
    zero = [f"{attack}@{label}" for attack, per_eps in report.results.items()
            for label, entry in per_eps.items()
            if entry.scores.initially_correct and entry.get("attack_success_rate") == 0]
    if not report.results:
        return Check(name, None, "no attack was run")
    share = f"{saturated}/{n} clean outputs saturated (top probability >= {SATURATED} or zero input gradient)"
    if not zero:
        return Check(name, True, f"every attack fooled some point; {share}")
    passed = saturated <= n / 2
    return Check(name, passed, f"0 % success: {', '.join(zero)}; {share}"
                 + ("" if passed else "; likely gradient masking (try a margin/DLR loss, e.g. apgd-dlr or apgd-t)"))


def warn_failed(checks: list[Check]) -> None:
    """Log a warning for every failed check (the console counterpart of the report's table)."""
    for check in checks:
        if check.passed is False:
            log.warning("robustness check failed: %s: %s", check.check, check.detail)
