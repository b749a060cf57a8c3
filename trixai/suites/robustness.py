"""The robustness suite: every (attack, eps) on each batch once, per-point records, the typed report.

:class:`RobustnessSuite` holds the settings (the ``robustness`` config group) and builds its attacks from the
registry; :meth:`RobustnessSuite.start` opens a :class:`RobustnessPass` that takes one batch at a time, from a
plain loop (``trixai-eval``) or from Lightning's test loop (the test phase of ``trixai-train``, whose
``test/rob_*`` metrics are the pass's evaluation attack). Each batch adds per-point records (clean logits, every
attack's full-budget and accuracy logits, L-inf sizes, seconds); :func:`robustness_report` computes the
:class:`~trixai.core.reports.RobustnessReport` from records only. Random draws are keyed by
(seed, attack, eps, block of points), so the batch size and the shards never change them. With ``partial_dir``,
each block's results are saved atomically and reused by a rerun with the same model, data and settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core import catalogue
from trixai.core.bootstrap import Bootstrap
from trixai.core.errors import TrixaiError
from trixai.core.formatting import eps_key, eps_label
from trixai.core.frozen import frozen_eval, memory_format
from trixai.core.metrics import metric_targets
from trixai.core.records import Records
from trixai.core.reports import AttackRef, AttackResult, Check, RobustnessReport, Scores
from trixai.core.seeds import stable_seed
from trixai.core.settings import MaskingSettings, RobustnessSettings, field_values, from_mapping
from trixai.core.values import as_list, parse_eps
from trixai.robust.attacks import PGD, Attack, AutoAttack
from trixai.robust.attacks.margins import is_fooled, masked_targets
from trixai.robust.losses import classification_loss
from trixai.robust.model_checks import model_checks, probabilities
from trixai.robust.registry import attack_overrides, create_attack
from trixai.suites import masking
from trixai.suites.base import PointBatch, SuitePass, class_names_of
from trixai.suites.fragile import FragileImages
from trixai.suites.partial import PartialResults
from trixai.suites.scoring import highest_loss_logits, score, worst_case_logits


def attack_field(name: str, eps: float) -> str:
    """The records' field prefix of an attack at ``eps``: ``attack/<name>/<eps as 8_255>``."""
    return f"attack/{name}/{eps_key(eps)}"


@dataclass(frozen=True)
class AttackRun:
    """One attack at one eps, as the suite runs and reports it: ``attack`` runs its full budget on every point
    and gives every metric; ``accuracy_attack`` (its early-stopped twin, with ``early_stop``) gives only accuracy
    and the attack success rate, where keeping a point's first fooling iterate is exact."""

    name: str
    attack: Attack
    accuracy_attack: Attack | None = None

    @property
    def label(self) -> str:
        return eps_label(self.attack.eps)

    @property
    def field(self) -> str:
        """The records' field prefix of this run (:func:`attack_field`)."""
        return attack_field(self.name, self.attack.eps)

    @property
    def key(self) -> str:
        """Partial-results key: the name and a hash of every setting (of both attacks)."""
        settings = self.attack.settings()
        if self.accuracy_attack is not None:
            settings = [settings, self.accuracy_attack.settings()]
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        return f"{self.name}_{hashlib.sha256(blob).hexdigest()[:12]}"

    def sources(self) -> dict[str, str]:
        """Which attack run gives which metric (for the report)."""
        if isinstance(self.attack, AutoAttack):
            full = (f"{self.name}: its loss maximisers (APGD-CE, APGD-T; rand: APGD-CE, APGD-DLR; multi-label: "
                    "APGD with the expected Hamming loss instead of CE) at full budget on every point (clean-wrong "
                    "ones included, no early stop); per point the output with the highest attack loss (CE; "
                    "multi-label: expected Hamming loss over the kept labels)" if self.attack.loss_pass else
                    "not computed (autoattack loss_pass=false: the cascade stops at a point's first fooling iterate, "
                    "which would understate every metric but accuracy)")
            accuracy = (f"{self.name}: the original cascade, each component on the points still robust; a point is "
                        "robust only if its clean prediction and every component's output are right")
        else:
            full = f"{self.name}: full budget on every point (clean-wrong ones included), no early stop"
            accuracy = (f"{self.name} with early stop: a point's first fooling iterate (exact for accuracy)"
                        if self.accuracy_attack is not None else full)
        return {"accuracy, attack_success_rate, per-class accuracy": accuracy, "every other metric": full}


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Draw random numbers from ``seed`` inside, and leave the global generators as they were."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


@dataclass
class RobustnessSuite(RobustnessSettings):
    """The suite of the settings (:class:`~trixai.core.settings.RobustnessSettings`, the ``robustness`` group:
    attacks at every eps, early stop, bootstrap, masking probe, ``max_points``, fragile images) with ``seed`` (random
    starts and bootstrap resamples) and ``eval_attack`` (an attack from the registry): the run whose metrics are the
    test phase's ``rob_*``. It joins the suite at its eps, and the suite's attack of that name and eps is that very
    object. Accuracy and the attack success rate of PGD/FGSM come, with ``early_stop``, from an extra early-stopped
    run (a point's first fooling iterate: exact for accuracy); every other metric always from the full-budget run on
    every point.
    """

    seed: int = 0
    eval_attack: Attack | None = None

    def __post_init__(self) -> None:
        self.masking = MaskingSettings(**self.masking) if isinstance(self.masking, Mapping) else self.masking
        if self.masking is not None and self.masking.large_eps is None:
            self.masking = None
        specs = attack_overrides(self.attacks if isinstance(self.attacks, Mapping) else as_list(self.attacks))
        settings = dict(self.attack_settings or {})
        unknown = sorted(set(settings) - set(specs))
        if unknown:
            raise TrixaiError(f"attack_settings has entries {unknown} for attacks not in attacks={list(specs)}")
        self.eps = sorted(set(parse_eps(self.eps)) | ({self.eval_attack.eps} if self.eval_attack else set()))
        if (not self.eps and self.eval_attack is None and len(specs) > 1) or any(not 0 <= e <= 1 for e in self.eps):
            raise TrixaiError(f"eps must be a non-empty list of values in [0, 1] pixel units (e.g. 0.0313 for 8/255), "
                              f"got {self.eps}")
        if self.max_points is not None and int(self.max_points) < 1:
            raise TrixaiError(f"max_points={self.max_points}: expected a positive number of points or null")
        self.runs: list[AttackRun] = []
        self.primary: AttackRun | None = None
        names = [n for n in specs if n != "clean"]
        if self.eval_attack is not None and self.eval_attack.name not in names:
            names.append(self.eval_attack.name)
        for name in names:
            overrides = {**specs.get(name, {}), **settings.get(name, {})}
            if self.early_stop and name.startswith(("pgd", "fgsm")):
                overrides.setdefault("early_stop", True)
            for e in self.eps:
                primary = self.eval_attack is not None and name == self.eval_attack.name and e == self.eval_attack.eps
                attack = self.eval_attack if primary else create_attack(name, e, **overrides)
                twin = None
                if getattr(attack, "early_stop", False):  # early stop is exact for accuracy only
                    twin, attack = attack, dataclasses.replace(attack, early_stop=False)
                run = AttackRun(name, attack, twin)
                self.runs.append(run)
                if primary:
                    self.primary = run

    @classmethod
    def from_config(cls, cfg: Mapping | None, *, eval_attack: Attack | None = None, seed: int = 0,
                    max_points: int | None = None) -> RobustnessSuite:
        """The suite of a ``robustness`` config (``None``: only ``eval_attack``, no masking probe); an unknown key
        is an error naming it."""
        if cfg is None:
            return cls(attacks=["clean"], eps=[], masking=None, seed=seed, eval_attack=eval_attack,
                       max_points=max_points, fragile_images=0)
        cfg = dict(cfg)
        seed = int(cfg.pop("seed", seed))
        if max_points is not None:
            cfg["max_points"] = max_points
        settings = from_mapping(RobustnessSettings, cfg, key="robustness")
        return cls(**field_values(settings), seed=seed, eval_attack=eval_attack)

    @property
    def fragility_run(self) -> AttackRun | None:
        """The run whose images the fragile-image figure shows: the evaluation attack, else the last run at the
        largest eps."""
        if self.primary is not None:
            return self.primary
        return max(self.runs, key=lambda r: r.attack.eps, default=None) if self.runs else None

    def settings(self) -> dict:
        """Every run's settings by name and eps label, for the report."""
        described: dict[str, dict] = {}
        for run in self.runs:
            described.setdefault(run.name, {})[run.label] = run.attack.settings()
            if run.accuracy_attack is not None:
                described[run.name][run.label]["accuracy_run"] = run.accuracy_attack.settings()
        return described

    def start(self, model: nn.Module, *, device: torch.device | str | None = None, partial_dir: str | Path | None = None,
              channels_last: bool = False, checks: bool = True, only: Tensor | None = None,
              block_size: int | None = None, data: Mapping | None = None) -> RobustnessPass:
        """A pass of the suite over batches of ``model``'s inputs ([0, 1] images); ``checks=False`` when no
        report will be written (the zero-gradient probe, a forward and backward per batch, is skipped);
        ``only``: just these split indices; ``block_size``: the points per block (saved results are per block);
        ``data``: what identifies the data (dataset config, split) in the saved results' fingerprint."""
        return RobustnessPass(self, model, device=device, partial_dir=partial_dir, channels_last=channels_last,
                              checks=checks, only=only, block_size=block_size, data=data)


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's state (names, shapes, values): partial results belong to these weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class BatchResult:
    """What one batch (block) of points gave: its points (images, targets, label mask), clean logits, and for its
    first ``rows`` points the evaluation attack's logits and images (None without one)."""

    clean_logits: Tensor
    rows: int
    target: Tensor
    images: Tensor
    index: Tensor
    label_mask: Tensor | None = None
    eval_logits: Tensor | None = None
    eval_images: Tensor | None = None


class RobustnessPass(SuitePass):
    """Runs the suite batch by batch (:meth:`update`), keeps per-point records and gives the report
    (:meth:`finish`).

    The model is frozen in eval mode (and in channels_last with ``channels_last``) during each batch; its
    modes, flags and memory format are restored after. ``only``: evaluate just these split indices (a pass that
    serves the explanation suite's stability under attack alone).
    """

    name = "robustness"

    def __init__(self, suite: RobustnessSuite, model: nn.Module, *, device: torch.device | str | None,
                 partial_dir: str | Path | None, channels_last: bool, checks: bool = True,
                 only: Tensor | None = None, block_size: int | None = None, data: Mapping | None = None) -> None:
        super().__init__(model, max_points=suite.max_points, device=device, channels_last=channels_last)
        self.suite, self.checks = suite, checks
        self.only = None if only is None else torch.as_tensor(only, dtype=torch.long)
        fingerprint = None
        if partial_dir is not None:
            fingerprint = {"format": "trixai-partial/4", "model": model_fingerprint(model), "data": dict(data or {}),
                           "max_points": suite.max_points, "seed": suite.seed, "block_size": block_size,
                           "channels_last": bool(channels_last), "device": self.device.type if self.device else None}
        self.partial = PartialResults(partial_dir, fingerprint or {})
        self.probe = None if suite.masking is None else AttackRun("masking", probe_attack(suite.masking))
        self.model_checks: list[dict] = []  # AutoAttack's checks on the model, run on the first batch
        self.zero_gradient_blocks = 0
        self.reused_blocks = 0  #: blocks whose results an earlier, interrupted run had saved
        self.blocks: set[int] = set()
        self.fragile = FragileImages(suite.fragile_images if checks else 0, getattr(model, "task", "multiclass"))

    def take(self, batch: PointBatch) -> PointBatch | None:
        if self.only is not None:
            rows = torch.isin(batch.index, self.only).nonzero().flatten()
            if rows.numel() == 0:
                return None
            batch = batch.take(rows)
        return super().take(batch)

    def process(self, batch: PointBatch) -> BatchResult:
        """Clean and every attack on this batch."""
        b, y = self.block_of(batch), masked_targets(batch.target, batch.label_mask)  # multi-label: ignored labels -1
        fields: dict[str, Tensor] = {"targets": y.cpu()}
        self.blocks.add(b)
        with frozen_eval(self.model), memory_format(self.model, self.channels_last):
            x = self.to_device(batch)
            y_dev = y.to(self.device)
            clean = self._clean(b, x, y, y_dev, fields)
            if self.checks and b == 0:  # the split's first block (or batch): the same points in any shard
                eot = any(isinstance(run.attack, AutoAttack) and run.attack.version == "rand" for run in self.suite.runs)
                self.model_checks = model_checks(self.model, x, y_dev, eot=eot)
            result = BatchResult(clean_logits=clean.to(self.device), rows=len(y), target=batch.target, images=x,
                                 index=batch.index, label_mask=batch.label_mask)
            for run in self.suite.runs:
                logits, x_adv = self._attack(b, run, x, y, y_dev, fields)
                if run is self.suite.primary:
                    result.eval_logits, result.eval_images = logits.to(self.device), x_adv
                if run is self.suite.fragility_run:
                    self._fragile(b, run, batch, x, x_adv, clean, logits)
            if self.probe is not None:
                self._probe(b, batch.index, x, y, y_dev, fields)
        self.builder.add(batch.index, fields)
        self.count(batch)
        return result

    def _clean(self, b: int, x: Tensor, y: Tensor, y_dev: Tensor, fields: dict[str, Tensor]) -> Tensor:
        cached = self.partial.load(f"clean_b{b:06d}")
        self.reused_blocks += cached is not None
        if cached is not None and not torch.equal(cached["targets"], y.cpu()):
            raise TrixaiError("the evaluation loader must yield the same batches in the same order on every pass "
                              "(use shuffle=False and no random transforms)")
        if cached is None:
            _sync(self.device)
            start = time.perf_counter()
            with torch.no_grad():
                out = self.model(x)
            _sync(self.device)
            elapsed = time.perf_counter() - start
            cached = {"logits": out.cpu(), "targets": y.cpu(), "seconds": torch.tensor(elapsed)}
            if self.checks:
                x_grad = x.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(classification_loss(self.model(x_grad), y_dev, reduction="sum"),
                                              x_grad)
                cached["zero_grad"] = (grad.flatten(1).abs().amax(dim=1) == 0).cpu()
            self.partial.save(f"clean_b{b:06d}", cached)
        fields["clean/logits"] = cached["logits"]
        fields["clean/seconds"] = _per_point(cached["seconds"], len(y))
        if self.checks:
            fields["clean/zero_grad"] = cached["zero_grad"]
            self.zero_gradient_blocks += int(bool(cached["zero_grad"].all()))
        return cached["logits"]

    def _run(self, b: int, run: AttackRun, x: Tensor, y: Tensor, y_dev: Tensor, *, key: str | None = None
             ) -> tuple[dict[str, Tensor], Tensor | None]:
        """One attack run on the batch (or its saved result): logits (absent when AutoAttack's loss pass is off),
        accuracy logits, L-inf sizes, seconds."""
        key = f"{key or run.key}_b{b:06d}"
        cached = self.partial.load(key)
        x_adv = None
        if cached is None:
            cached = {}
            _sync(self.device)
            start = time.perf_counter()
            with seeded(self.run_seed(run, b), self.device):
                if isinstance(run.attack, AutoAttack):
                    x_adv, cached = self._autoattack(run.attack, x, y, y_dev)
                else:
                    x_adv = run.attack(self.model, x, y_dev)
            linf = (x_adv - x).abs().flatten(1).amax(dim=1)
            if run.accuracy_attack is not None:
                with seeded(self.run_seed(run, b), self.device):  # the same random start as the full run
                    x_first = run.accuracy_attack(self.model, x, y_dev)
                with torch.no_grad():
                    cached["accuracy_logits"] = self.model(x_first).cpu()
                linf = torch.maximum(linf, (x_first - x).abs().flatten(1).amax(dim=1))
            _sync(self.device)
            elapsed = time.perf_counter() - start
            if not isinstance(run.attack, AutoAttack):
                with torch.no_grad():
                    cached["logits"] = self.model(x_adv).cpu()
            cached |= {"linf": linf.cpu(), "seconds": torch.tensor(elapsed)}
            self.partial.save(key, cached)
        return cached, x_adv

    def _fragile(self, b: int, run: AttackRun, batch: PointBatch, x: Tensor, x_adv: Tensor | None, clean: Tensor,
                 logits: Tensor) -> None:
        """Offer the block's most fragile points to the running top-k; their adversarial images are saved with the
        block's results, so a resumed run keeps the same figure without attacking again."""
        if self.fragile.k <= 0:
            return
        rows = self.fragile.candidates(batch, clean, logits)
        key = f"fragile-{run.key}_b{b:06d}"
        if x_adv is not None:
            images = x_adv[rows.to(x_adv.device)].cpu()
            self.partial.save(key, {"rows": rows, "images": images})
        else:
            saved = self.partial.load(key, counted=False)
            if saved is None or not torch.equal(saved["rows"], rows):
                raise TrixaiError(f"the saved results of block {b} lack its fragile images: remove {self.partial.directory}"
                                  " and rerun")
            images = saved["images"]
        self.fragile.add(batch.take(rows), x[rows.to(x.device)].cpu(), images, clean[rows.to(clean.device)],
                         logits[rows.to(logits.device)])

    def run_seed(self, run: AttackRun, block: int) -> int:
        """The seed of ``run``'s random draws on a block of points: (suite seed, attack, eps, block), so batch
        sizes and shards never change a draw."""
        return stable_seed(self.suite.seed, "robustness", run.name, run.label, block)

    def _attack(self, b: int, run: AttackRun, x: Tensor, y: Tensor, y_dev: Tensor, fields: dict[str, Tensor]
                ) -> tuple[Tensor, Tensor | None]:
        cached, x_adv = self._run(b, run, x, y, y_dev)
        if "logits" in cached:
            fields[f"{run.field}/logits"] = cached["logits"]
        fields[f"{run.field}/accuracy_logits"] = cached.get("accuracy_logits", cached.get("logits"))
        fields[f"{run.field}/linf"] = cached["linf"]
        fields[f"{run.field}/seconds"] = _per_point(cached["seconds"], len(y))
        if "broken_by" in cached:
            fields[f"{run.field}/broken_by"] = cached["broken_by"]
        return cached.get("logits", fields[f"{run.field}/accuracy_logits"]), x_adv

    def _probe(self, b: int, index: Tensor, x: Tensor, y: Tensor, y_dev: Tensor, fields: dict[str, Tensor]) -> None:
        """The large-eps probe on the batch's points among the split's first ``masking.points``; NaN rows
        elsewhere."""
        probed = (index < self.suite.masking.points).cpu()
        logits = torch.full((len(y), int(fields["clean/logits"].shape[1])), float("nan"))
        seconds = torch.zeros(len(y))
        if bool(probed.any()):
            rows = probed.nonzero().flatten()
            cached, _ = self._run(b, self.probe, x[rows.to(x.device)], y[rows], y_dev[rows.to(y_dev.device)],
                                  key=f"{self.probe.key}_p{self.suite.masking.points}")
            logits[rows] = cached["logits"].float()
            seconds[rows] = _per_point(cached["seconds"], len(rows)).float()
        fields |= {"masking/logits": logits, "masking/probed": probed, "masking/seconds": seconds}

    def _autoattack(self, attack: AutoAttack, x: Tensor, y: Tensor, y_dev: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Accuracy (and which component broke each point) from the original cascade; every other metric from the
        full-budget pass of the loss maximisers on every point (the output with the highest attack loss), unless
        ``loss_pass`` is off."""
        x_first, broken_by = attack.run(self.model, x, y_dev)
        with torch.no_grad():
            out = {"accuracy_logits": self.model(x_first).cpu(), "broken_by": broken_by.cpu()}
        if not attack.loss_pass:
            return x_first, out
        candidates = attack.full_budget_pass(self.model, x, y_dev)
        with torch.no_grad():
            outputs = [self.model(c).cpu() for c in candidates]
        out["logits"], pick = highest_loss_logits(outputs, y)
        x_adv = torch.stack(candidates)[pick.to(x.device), torch.arange(len(x), device=x.device)]
        return x_adv, out

    def meta(self) -> dict:
        return {**super().meta(), "model_checks": self.model_checks, "resumed_batches": self.partial.reused,
                "reused_blocks": self.reused_blocks,
                "zero_gradient_blocks": self.zero_gradient_blocks, "batches": self.batches,
                "blocks": sorted(self.blocks)}

    def parts(self) -> dict[str, Records]:
        if self.restored is not None:
            return dict(self.restored)
        return {**super().parts(), f"{self.name}_fragile": self.fragile.records()}

    def restore(self, parts: Mapping[str, Records]) -> None:
        super().restore(parts)
        self.fragile.restore(parts[f"{self.name}_fragile"])

    def finish(self, out_dir: Path) -> RobustnessReport:
        """The report of the records (and the figure of the most fragile images in ``out_dir``)."""
        records = self.records()
        outputs = int(records["clean/logits"].shape[1])
        report = robustness_report(records, self.suite, task=getattr(self.model, "task", "multiclass"),
                                   class_names=class_names_of(self.model, outputs))
        figure = self.fragile.save(self.model, Path(out_dir), class_names=report.class_names,
                                   attack=self.suite.fragility_run)
        if figure is not None:
            report.figures.append(figure)
        return report


#: The metrics an early-stopped or cascaded attack gives exactly (a point's first fooling iterate decides them).
ACCURACY_METRICS = ("accuracy", "attack_success_rate")


def worst_of(combined: Scores, attacks: Mapping[str, Scores]) -> tuple[Scores, dict[str, str]]:
    """The worst case's scores: accuracy and its kin from ``combined`` (the per-point worst outputs); every other
    metric, interval and per-output value the worst (by the catalogue's direction) of ``combined`` and each
    attack's, and which source gave each metric."""
    picked: dict[str, str] = {}
    sources = {"per-point highest loss": combined, **attacks}
    for key in list(combined.values):
        direction = catalogue.better(key)
        if key in ACCURACY_METRICS or direction not in ("higher", "lower"):
            continue
        known = {name: s.values.get(key) for name, s in sources.items() if _finite(s.values.get(key))}
        if not known:
            continue
        name = (min if direction == "higher" else max)(known, key=known.get)
        combined.values[key] = known[name]
        interval = sources[name].intervals.get(key)
        if interval is None:
            combined.intervals.pop(key, None)
        else:
            combined.intervals[key] = interval
        picked[key] = name
    for key, per in combined.per_output.items():
        direction = catalogue.better(key.split("_", 2)[-1])  # per_class_auroc -> auroc
        if key.endswith("_accuracy") or direction not in ("higher", "lower"):
            continue
        for output in per:
            known = [s.per_output.get(key, {}).get(output) for s in sources.values()]
            known = [v for v in known if _finite(v)]
            if known:
                per[output] = (min if direction == "higher" else max)(known)
    return combined, picked


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and value == value


def _per_point(seconds: Tensor | float, rows: int) -> Tensor:
    """A batch's seconds spread evenly over its points (sums back to the batch's time)."""
    return torch.full((rows,), float(seconds) / max(rows, 1), dtype=torch.float64)


def robustness_report(records: Records, suite: RobustnessSuite, *, task: str, class_names: list[str]
                      ) -> RobustnessReport:
    """The report of a robustness pass's records: clean, every attack, the worst case per eps, the masking checks."""
    targets = records["targets"]  # multi-label: -1 marks an ignored label (label_mask applied)
    clean_logits = records["clean/logits"].float()
    meta = records.meta
    if (task == "multilabel") != targets.is_floating_point():
        raise TrixaiError(f"the model's task is {task!r} but the loader yields "
                          f"{'float (N, L)' if targets.is_floating_point() else 'integer class'} targets")
    n = len(targets)
    boot = Bootstrap.draw(metric_targets(targets), suite.bootstrap, suite.seed) if suite.bootstrap else None

    def scored(logits: Tensor, accuracy_logits: Tensor | None = None) -> dict:
        return score(logits, targets, clean_logits, class_names, task, accuracy_logits=accuracy_logits,
                     bootstrap=boot)

    clean_seconds = float(records["clean/seconds"].sum())
    clean = AttackResult("clean", 0.0, scored(clean_logits), images_per_s=n / clean_seconds if clean_seconds > 0 else None)
    settings = suite.settings()
    results: dict[str, dict[str, AttackResult]] = {}
    logits_of: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
    for run in suite.runs:
        first, linf = records[f"{run.field}/accuracy_logits"].float(), records[f"{run.field}/linf"]
        full = records.get(f"{run.field}/logits")
        seconds = float(records[f"{run.field}/seconds"].sum())
        logits_of[(run.name, run.label)] = (first, None if full is None else full.float())
        scores = scored(first, first) if full is None else scored(full.float(), first)
        if full is None:  # AutoAttack without its loss pass: only the accuracy cascade was run
            scores.values = {k: (v if k in ACCURACY_METRICS else None) for k, v in scores.values.items()}
            scores.intervals = {k: v for k, v in scores.intervals.items() if k in ACCURACY_METRICS}
            scores.per_output = {k: v for k, v in scores.per_output.items() if k.endswith("_accuracy")}
        entry = AttackResult(run.name, run.attack.eps, scores, run.sources(),
                             linf_mean=float(linf.mean()), linf_max=float(linf.max()),
                             linf_within_eps=bool(float(linf.max()) <= run.attack.eps + 1e-6), seconds=seconds,
                             images_per_s=n / seconds if seconds > 0 else None)
        if isinstance(run.attack, AutoAttack):
            components = run.attack.describe(clean_logits.shape[1], task == "multilabel")
            settings[run.name][run.label]["components"] = components
            broken_by = records[f"{run.field}/broken_by"]
            entry.broken_by = {c["name"]: int((broken_by == i).sum()) for i, c in enumerate(components)}
        results.setdefault(run.name, {})[run.label] = entry
    worst_case = {}
    for e in suite.eps:
        label = eps_label(e)
        names = [name for name in results if label in results[name]]
        if not names:
            continue
        worst, chosen = worst_case_logits([clean_logits] + [logits_of[(nm, label)][0] for nm in names], targets)
        full_names = [nm for nm in names if logits_of[(nm, label)][1] is not None]
        full, _ = highest_loss_logits([logits_of[(nm, label)][1] for nm in full_names] or [worst], targets)
        fooled = is_fooled(worst, targets)
        scores, picked = worst_of(scored(full, worst), {nm: results[nm][label].scores for nm in full_names})
        worst_case[label] = AttackResult(
            "worst case", e, scores,
            {"accuracy, attack_success_rate, per-class accuracy": "per point the first output that fools it "
             f"(clean, then the accuracy runs of {', '.join(names)}), else the lowest margin",
             "every other metric": "the worst of: each full-budget attack's value "
             f"({', '.join(full_names) or 'none'}), and the value of the per-point highest-loss outputs (CE; "
             "multi-label: expected Hamming loss); a ranking metric (AUROC, F1) has no per-point worst case",
             "worst per metric": ", ".join(f"{k}: {v}" for k, v in picked.items())},
            broken_by={src: int(((chosen == i) & fooled).sum()) for i, src in enumerate(["clean"] + names)})
    report = RobustnessReport(
        task=task, class_names=class_names, n_points=n, eps=list(suite.eps), clean=clean, results=results,
        worst_case=worst_case, settings=settings, masking_checks=[], early_stop=suite.early_stop, seed=suite.seed,
        channels_last=bool(meta.get("channels_last")), device=str(meta.get("device")),
        bootstrap=None if boot is None else {
            "resamples": suite.bootstrap, "seed": suite.seed, "level": 0.95, "method": "percentile",
            "strata": "class" if task == "multiclass" else "rarest positive label"},
        eval_attack=None if suite.primary is None else AttackRef(suite.primary.name, suite.primary.attack.eps),
        masking_probe=None if suite.masking is None else probe_attack(suite.masking).settings(),
        resumed_batches=int(meta.get("resumed_batches", 0)))
    report.masking_checks = _checks(report, records, suite)
    masking.warn_failed(report.masking_checks)
    return report


def probe_attack(settings: MaskingSettings) -> PGD:
    """The large-eps probe: PGD keeping a point's first fooling iterate (the probe reports accuracy only, where
    that is exact)."""
    return PGD(eps=settings.large_eps, alpha=settings.large_eps / 4, steps=settings.steps, random_start=True,
               early_stop=True)


def _checks(report: RobustnessReport, records: Records, suite: RobustnessSuite) -> list[Check]:
    """The gradient-masking checks on the report and the records, then the model checks of the first batch."""
    meta = records.meta
    targets = records["targets"]
    large, probed = None, 0
    if suite.masking is not None:
        rows = records["masking/probed"]
        probed = int(rows.sum())
        large = float((~is_fooled(records["masking/logits"][rows].float(), targets[rows])).float().mean()) \
            if probed else None
    zero = records.get("clean/zero_grad")
    zero = torch.zeros(len(targets), dtype=torch.bool) if zero is None else zero.bool()
    clean_logits = records["clean/logits"].float()
    multilabel = report.task == "multilabel"
    checks = [
        masking.ordering(report),
        masking.large_eps(large, suite.masking.large_eps if suite.masking else float("nan"), probed),
        masking.more_steps(report), masking.black_box(report),
        masking.zero_gradients(int(zero.sum()), int(meta.get("zero_gradient_blocks", 0)), len(meta.get("blocks") or [])),
        masking.saturated_success(report, int(masking.saturated_points(clean_logits, multilabel, zero).sum())),
        Check.from_json(probabilities(clean_logits, multilabel)),
        *(Check.from_json(c) for c in meta.get("model_checks") or [])]
    return checks


__all__ = ["AttackRun", "BatchResult", "MaskingSettings", "RobustnessPass", "RobustnessSuite", "model_fingerprint",
           "robustness_report", "seeded"]
