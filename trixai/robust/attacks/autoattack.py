"""AutoAttack (Croce & Hein 2020): a fixed ensemble run in order, each attack only on the points still robust.

``standard``: APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square (5,000 queries, its ``autoattack``
variant: the original p-schedule on absolute queries, no redraws), 100 iterations and one restart each.
``rand`` (stochastic models): APGD-CE and APGD-DLR with 20 EOT samples per gradient.
``max_batch`` bounds the stacked batches of APGD-T, FAB-T (targets side by side) and Square (speculative
queries); it changes the speed, not the attack.
The result is the per-point worst case: a point counts as robust only if every attack failed on it
(:meth:`AutoAttack.run`, the original cascade: each component only on the points still robust, stopping at a
point's first fooling iterate; exact for robust accuracy).

Metrics other than accuracy (AUROC, F1, margins) need the attack's worst case on every point, which the cascade
does not give. :meth:`AutoAttack.full_budget_pass` runs the white-box loss maximisers (``standard``: APGD-CE and APGD-T;
``rand``: APGD-CE and APGD-DLR with EOT) at full budget on every point, clean-wrong ones included, with no early
stop, and a point keeps per component its highest-loss iterate. FAB-T (a minimum-norm search) and Square (a
black-box search that stops at a fooling query) maximise no loss, so they serve the accuracy cascade only.
``loss_pass=False`` skips this pass: the suites then report those metrics as not computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval
from trixai.robust.attacks.apgd import APGD, APGDT
from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.fab import FABT
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.attacks.square import Square
from trixai.robust.losses import is_multilabel

VERSIONS = ("standard", "rand")
CLEAN_WRONG = -1
ROBUST = -2


@dataclass
class AutoAttack(Attack):
    """The AutoAttack ensemble; ``steps``/``targets``/``queries`` default to the published settings."""

    eps: float = 8 / 255
    version: str = "standard"
    steps: int = 100
    targets: int = 9
    queries: int = 5000
    eot_iter: int = 20
    seed: int = 0
    max_batch: int = 128
    loss_pass: bool = True

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise TrixaiError(f"attack.version={self.version!r} is not one of {list(VERSIONS)}")

    @property
    def name(self) -> str:
        return "autoattack"

    def components(self, num_outputs: int, multilabel: bool) -> list[Attack]:
        """The attacks run in order for a model with ``num_outputs`` logits."""
        if self.version == "rand":
            second = "dlr" if not multilabel and num_outputs >= 3 else "margin"
            return [APGD(eps=self.eps, steps=self.steps, loss="ce", eot_iter=self.eot_iter),
                    APGD(eps=self.eps, steps=self.steps, loss=second, eot_iter=self.eot_iter)]
        return [APGD(eps=self.eps, steps=self.steps, loss="ce"),
                APGDT(eps=self.eps, steps=self.steps, targets=self.targets, max_batch=self.max_batch),
                FABT(eps=self.eps, steps=self.steps, targets=self.targets, max_batch=self.max_batch),
                Square(eps=self.eps, queries=self.queries, seed=self.seed, max_batch=self.max_batch,
                       variant="autoattack")]

    def describe(self, num_outputs: int, multilabel: bool) -> list[dict]:
        """Every component's settings plus the loss variant used for this output layout."""
        described = []
        for attack in self.components(num_outputs, multilabel):
            entry = {"name": attack.name, **attack.settings()}
            if isinstance(attack, (APGDT, FABT)):
                entry["targets_used"] = attack.target_count(num_outputs, multilabel)
            if isinstance(attack, APGDT):
                entry["loss"] = APGDT.variant(num_outputs, multilabel)
            elif isinstance(attack, APGD) and attack.loss == "ce" and multilabel:
                entry["loss"] = "bce"
            described.append(entry)
        return described

    def run(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Returns ``(x_adv, broken_by)``: per point the index of the first successful component,
        ``CLEAN_WRONG`` (-1) when the clean point is already wrong, ``ROBUST`` (-2) when all attacks failed."""
        x, y = x.detach(), y.detach()
        devices = [x.device] if x.device.type == "cuda" else []
        with frozen_eval(model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            with torch.no_grad():
                clean = model(x)
            broken_by = torch.where(is_fooled(clean, y), CLEAN_WRONG, ROBUST).to(x.device)
            x_adv = x.clone()
            for position, attack in enumerate(self.components(clean.shape[1], is_multilabel(y))):
                rows = (broken_by == ROBUST).nonzero().squeeze(1)
                if rows.numel() == 0:
                    break
                adv = attack.perturb(model, x[rows], y[rows]).detach()
                with torch.no_grad():
                    hit = is_fooled(model(adv), y[rows])
                x_adv[rows[hit]] = adv[hit]
                broken_by[rows[hit]] = position
        return x_adv, broken_by

    def loss_maximisers(self, num_outputs: int, multilabel: bool) -> list[APGD]:
        """The components that maximise a loss (APGD-*), at full budget: the source of the non-accuracy metrics.
        Multi-label: the untargeted one maximises the expected Hamming loss instead of BCE (BCE keeps pushing
        flipped labels; the Hamming loss moves every label, the worst case of per-label ranking metrics)."""
        return [dataclasses.replace(attack, full_budget=True,
                                    **({"loss": "hamming"} if multilabel and attack.loss == "ce" else {}))
                for attack in self.components(num_outputs, multilabel) if isinstance(attack, APGD)]

    def full_budget_pass(self, model: nn.Module, x: Tensor, y: Tensor) -> list[Tensor]:
        """Per loss maximiser, every point's highest-loss iterate (every point, clean-wrong ones included, no
        early stop), in component order."""
        x, y = x.detach(), y.detach()
        devices = [x.device] if x.device.type == "cuda" else []
        with frozen_eval(model), torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed)
            with torch.no_grad():
                outputs = model(x[:1]).shape[1]
            return [attack.perturb(model, x, y).detach() for attack in self.loss_maximisers(outputs, is_multilabel(y))]

    def perturb(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return self.run(model, x, y)[0]
