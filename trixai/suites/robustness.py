"""The robustness suite: every (attack, eps) on each batch once, per-point worst case, metrics and checks.

:class:`RobustnessSuite` holds the settings (the ``robustness`` config group) and builds its attacks from the
registry; :meth:`RobustnessSuite.start` opens a :class:`RobustnessPass` that takes one batch at a time, from a
plain loop (``trixai-eval``) or from Lightning's test loop (the test phase of ``trixai-train``, whose
``test/rob_*`` metrics are the pass's evaluation attack). Random starts are seeded per batch
(``seed + batch index``), so a resumed or repeated evaluation draws the same starts. With ``partial_dir``,
per-batch results are saved atomically and reused by a rerun with the same model, data and settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from trixai.core.bootstrap import RESAMPLES, Bootstrap
from trixai.core.errors import TrixaiError
from trixai.core.frozen import frozen_eval, memory_format
from trixai.core.metrics import metric_targets
from trixai.core.values import as_list, parse_eps
from trixai.robust import masking
from trixai.robust.attacks import PGD, Attack, AutoAttack
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.losses import classification_loss
from trixai.robust.model_checks import model_checks, probabilities
from trixai.robust.registry import attack_overrides, create_attack
from trixai.suites.partial import PartialResults
from trixai.suites.scoring import highest_loss_logits, score, worst_case_logits

FORMAT = "trixai-robustness/2"


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else the number."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.6g}"


@dataclass
class MaskingSettings:
    """Extra run for the gradient-masking checks: PGD at ``large_eps`` on the first ``points`` points."""

    large_eps: float | None = 0.5
    steps: int = 20
    points: int = 128


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
            full = (f"{self.name}: every component on every point (clean-wrong ones included); per point the "
                    f"component output with the highest attack loss (CE, or BCE summed over labels)")
            accuracy = f"{self.name}: a point is robust only if its clean prediction and every component's output are right"
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
class RobustnessSuite:
    """Settings of the suite: ``attacks`` (registry names, or names -> setting overrides; ``clean`` is implied)
    at every ``eps`` ([0, 1] pixel units); ``attack_settings``: overrides per name; ``early_stop``: accuracy and
    the attack success rate of PGD/FGSM come from an extra early-stopped run (a point's first fooling iterate:
    exact for accuracy), every other metric always from the full-budget run on every point; ``masking``: the
    large-eps probe (``large_eps: null`` skips it); ``max_points``: only the first N points; ``seed``: random
    starts and bootstrap resamples; ``bootstrap``: resamples of the 95 % confidence intervals (0: none).

    ``eval_attack`` (an attack from the registry) is the run whose metrics are the test phase's ``rob_*``: it
    joins the suite at its eps, and the suite's attack of that name and eps is that very object.
    """

    attacks: list[str] | Mapping = field(default_factory=lambda: ["clean", "fgsm", "pgd10"])
    eps: list[float] = field(default_factory=lambda: [8 / 255])
    attack_settings: Mapping = field(default_factory=dict)
    early_stop: bool = False
    masking: MaskingSettings | Mapping | None = field(default_factory=MaskingSettings)
    max_points: int | None = None
    seed: int = 0
    bootstrap: int = RESAMPLES
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
        """The suite of a ``robustness`` config (``None``: only ``eval_attack``, no masking probe)."""
        if cfg is None:
            return cls(attacks=["clean"], eps=[], masking=None, seed=seed, eval_attack=eval_attack,
                       max_points=max_points)
        cfg = dict(cfg)
        cfg.setdefault("seed", seed)
        if max_points is not None:
            cfg["max_points"] = max_points
        return cls(**cfg, eval_attack=eval_attack)

    def settings(self) -> dict:
        """Every run's settings by name and eps label, for the report."""
        described: dict[str, dict] = {}
        for run in self.runs:
            described.setdefault(run.name, {})[run.label] = run.attack.settings()
            if run.accuracy_attack is not None:
                described[run.name][run.label]["accuracy_run"] = run.accuracy_attack.settings()
        return described

    def start(self, model: nn.Module, *, device: torch.device | str | None = None, partial_dir: str | Path | None = None,
              channels_last: bool = False, keep_images: int = 0, checks: bool = True) -> RobustnessPass:
        """A pass of the suite over batches of ``model``'s inputs ([0, 1] images); ``checks=False`` when no
        report will be written (the zero-gradient probe, a forward and backward per batch, is skipped)."""
        return RobustnessPass(self, model, device=device, partial_dir=partial_dir, channels_last=channels_last,
                              keep_images=keep_images, checks=checks)


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
    """What one batch gave: clean logits, the evaluation attack's logits and images (None without one)."""

    clean_logits: Tensor
    rows: int
    eval_logits: Tensor | None = None
    eval_images: Tensor | None = None


class RobustnessPass:
    """Runs the suite batch by batch (:meth:`update`) and assembles the evaluation (:meth:`finish`).

    The model is frozen in eval mode (and in channels_last with ``channels_last``) during each batch; its
    modes, flags and memory format are restored after. ``keep_images``: keep the evaluation attack's adversarial
    images of the first N points (the explanation suite's stability under attack reuses them).
    """

    def __init__(self, suite: RobustnessSuite, model: nn.Module, *, device: torch.device | str | None,
                 partial_dir: str | Path | None, channels_last: bool, keep_images: int, checks: bool = True) -> None:
        self.suite, self.model, self.checks = suite, model, checks
        self.device = torch.device(device) if device is not None else None  # None: the model's, at each batch
        self.channels_last, self.keep_images = channels_last, keep_images
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        fingerprint = None
        if partial_dir is not None:
            fingerprint = {"format": FORMAT, "model": model_fingerprint(model), "max_points": suite.max_points,
                           "seed": suite.seed}
        self.partial = PartialResults(partial_dir, fingerprint or {})
        masking_settings = suite.masking
        self.probe = None if masking_settings is None else AttackRun("masking", PGD(
            eps=masking_settings.large_eps, alpha=masking_settings.large_eps / 4, steps=masking_settings.steps,
            random_start=True, early_stop=True))  # the probe reports accuracy only: the first fooling iterate is exact
        self.batches = 0
        self.points = 0
        self.clean: dict[str, list] = {"logits": [], "targets": [], "masks": [], "seconds": [], "zero_grad": []}
        self.adversarial: dict[tuple[str, str], dict[str, list]] = {
            (run.name, run.label): {"logits": [], "accuracy_logits": [], "linf": [], "seconds": [], "broken_by": []}
            for run in suite.runs}
        self.large: dict[str, list] = {"logits": [], "seconds": []}
        self.images: list[Tensor] = []
        self.model_checks: list[dict] = []  # AutoAttack's checks on the model, run on the first batch

    @property
    def done(self) -> bool:
        """Every point the suite wants has been seen (``max_points`` reached)."""
        return self.suite.max_points is not None and self.points >= self.suite.max_points

    def update(self, x: Tensor, y: Tensor, label_mask: Tensor | None = None) -> BatchResult | None:
        """Clean and every attack on this batch; None once ``max_points`` points have been seen."""
        if self.done:
            return None
        if self.suite.max_points is not None:
            keep = min(len(y), self.suite.max_points - self.points)
            x, y, label_mask = x[:keep], y[:keep], None if label_mask is None else label_mask[:keep]
        b = self.batches
        self.device = self.device or next(self.model.parameters()).device
        with frozen_eval(self.model), memory_format(self.model, self.channels_last):
            x = x.to(self.device, memory_format=self.memory_format)
            y_dev = y.to(self.device)
            clean = self._clean(b, x, y, y_dev)
            if self.checks and b == 0:
                eot = any(isinstance(run.attack, AutoAttack) and run.attack.version == "rand" for run in self.suite.runs)
                self.model_checks = model_checks(self.model, x, y_dev, eot=eot)
            result = BatchResult(clean_logits=clean.to(self.device), rows=len(y))
            for run in self.suite.runs:
                logits, x_adv = self._attack(b, run, x, y, y_dev, clean=clean)
                if run is self.suite.primary:
                    result.eval_logits, result.eval_images = logits.to(self.device), x_adv
                    if x_adv is not None and self.points < self.keep_images:
                        self.images.append(x_adv[: self.keep_images - self.points].detach().cpu())
            if self.probe is not None and self.points < self.suite.masking.points:
                rows = min(len(y), self.suite.masking.points - self.points)
                logits, _ = self._attack(b, self.probe, x[:rows], y[:rows], y_dev[:rows], record=False)
                self.large["logits"].append(logits)
        self.clean["targets"].append(y.cpu())
        self.clean["masks"].append(None if label_mask is None else label_mask.cpu())
        self.batches += 1
        self.points += len(y)
        return result

    def _clean(self, b: int, x: Tensor, y: Tensor, y_dev: Tensor) -> Tensor:
        cached = self.partial.load(f"clean_b{b:05d}")
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
            self.partial.save(f"clean_b{b:05d}", cached)
        self.clean["logits"].append(cached["logits"])
        self.clean["seconds"].append(float(cached["seconds"]))
        if self.checks:
            self.clean["zero_grad"].append(cached["zero_grad"])
        return cached["logits"]

    def _attack(self, b: int, run: AttackRun, x: Tensor, y: Tensor, y_dev: Tensor,
                record: bool = True, clean: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        cached = self.partial.load(f"{run.key}_b{b:05d}")
        x_adv = None
        if cached is None:
            cached = {}
            _sync(self.device)
            start = time.perf_counter()
            with seeded(self.suite.seed + b, self.device):
                if isinstance(run.attack, AutoAttack):
                    x_adv, cached = self._autoattack(run.attack, x, y, y_dev, clean)
                else:
                    x_adv = run.attack(self.model, x, y_dev)
            linf = (x_adv - x).abs().flatten(1).amax(dim=1)
            if run.accuracy_attack is not None:
                with seeded(self.suite.seed + b, self.device):  # the same random start as the full run
                    x_first = run.accuracy_attack(self.model, x, y_dev)
                with torch.no_grad():
                    cached["accuracy_logits"] = self.model(x_first).cpu()
                linf = torch.maximum(linf, (x_first - x).abs().flatten(1).amax(dim=1))
            _sync(self.device)
            elapsed = time.perf_counter() - start
            if "logits" not in cached:
                with torch.no_grad():
                    cached["logits"] = self.model(x_adv).cpu()
            cached |= {"linf": linf.cpu(), "seconds": torch.tensor(elapsed)}
            self.partial.save(f"{run.key}_b{b:05d}", cached)
        if record:
            store = self.adversarial[(run.name, run.label)]
            store["logits"].append(cached["logits"])
            store["accuracy_logits"].append(cached.get("accuracy_logits", cached["logits"]))
            store["linf"].append(cached["linf"])
            store["seconds"].append(float(cached["seconds"]))
            if "broken_by" in cached:
                store["broken_by"].append(cached["broken_by"])
        else:
            self.large["seconds"].append(float(cached["seconds"]))
        return cached["logits"], x_adv

    def _autoattack(self, attack: AutoAttack, x: Tensor, y: Tensor, y_dev: Tensor, clean: Tensor
                    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Every component on every point: accuracy (and which component broke each point) from the first fooling
        output in order, every other metric from the output with the highest attack loss."""
        candidates = attack.candidates(self.model, x, y_dev)
        with torch.no_grad():
            outputs = [self.model(c).cpu() for c in candidates]
        first, chosen = worst_case_logits([clean.cpu().float(), *outputs], y)
        broken_by = torch.where(is_fooled(first, y), chosen - 1, -2)  # AutoAttack.run's codes: -1 clean-wrong, -2 robust
        logits, pick = highest_loss_logits(outputs, y)
        x_adv = torch.stack(candidates)[pick.to(x.device), torch.arange(len(x), device=x.device)]
        return x_adv, {"logits": logits, "accuracy_logits": first, "broken_by": broken_by}

    def adversarial_images(self) -> Tensor | None:
        """The evaluation attack's images of the first ``keep_images`` points (None if not all were computed)."""
        if not self.images:
            return None
        images = torch.cat(self.images)
        return images if len(images) == min(self.keep_images, self.points) else None

    def finish(self) -> dict:
        """The evaluation (a JSON-ready dict): clean, every attack, worst case, masking checks."""
        if not self.batches:
            raise TrixaiError("the evaluation loader yielded no batches (empty split?)")
        targets = torch.cat(self.clean["targets"])
        clean_logits = torch.cat(self.clean["logits"])
        masks = self.clean["masks"]
        label_mask = None if any(m is None for m in masks) else torch.cat(masks)
        task = getattr(self.model, "task", "multiclass")
        class_names = list(getattr(self.model, "class_names", [])) or [str(i) for i in range(clean_logits.shape[1])]
        if (task == "multilabel") != targets.is_floating_point():
            raise TrixaiError(f"the model's task is {task!r} but the loader yields "
                              f"{'float (N, L)' if targets.is_floating_point() else 'integer class'} targets")
        n = len(targets)
        boot = (Bootstrap.draw(metric_targets(targets, label_mask), self.suite.bootstrap, self.suite.seed)
                if self.suite.bootstrap else None)
        clean_seconds = sum(self.clean["seconds"])
        clean_scores = score(clean_logits, targets, clean_logits, class_names, task, label_mask, bootstrap=boot)
        clean_scores["images_per_s"] = n / clean_seconds if clean_seconds > 0 else None
        settings = self.suite.settings()
        results: dict[str, dict[str, dict]] = {}
        logits_of: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        for run in self.suite.runs:
            store = self.adversarial[(run.name, run.label)]
            logits, linf, seconds = torch.cat(store["logits"]), torch.cat(store["linf"]), sum(store["seconds"])
            first = torch.cat(store["accuracy_logits"])
            logits_of[(run.name, run.label)] = (first, logits)
            entry = score(logits, targets, clean_logits, class_names, task, label_mask, accuracy_logits=first,
                          bootstrap=boot)
            entry["metric_runs"] = run.sources()
            entry.update({
                "eps": run.attack.eps, "linf_mean": float(linf.mean()), "linf_max": float(linf.max()),
                "linf_within_eps": bool(float(linf.max()) <= run.attack.eps + 1e-6),
                "images_per_s": n / seconds if seconds > 0 else None, "seconds": seconds,
            })
            if isinstance(run.attack, AutoAttack):
                components = run.attack.describe(clean_logits.shape[1], task == "multilabel")
                settings[run.name][run.label]["components"] = components
                broken_by = torch.cat(store["broken_by"])
                entry["broken_by"] = {c["name"]: int((broken_by == i).sum()) for i, c in enumerate(components)}
            results.setdefault(run.name, {})[run.label] = entry
        worst_case = {}
        for e in self.suite.eps:
            label = eps_label(e)
            names = [name for name in results if label in results[name]]
            if not names:
                continue
            worst, chosen = worst_case_logits([clean_logits] + [logits_of[(nm, label)][0] for nm in names], targets)
            full, _ = highest_loss_logits([logits_of[(nm, label)][1] for nm in names], targets)
            entry = score(full, targets, clean_logits, class_names, task, label_mask, accuracy_logits=worst,
                          bootstrap=boot)
            entry["metric_runs"] = {
                "accuracy, attack_success_rate, per-class accuracy": "per point the first output that fools it "
                f"(clean, then the accuracy runs of {', '.join(names)}), else the lowest margin",
                "every other metric": f"per point the full-budget output of {', '.join(names)} with the highest "
                "attack loss (CE, or BCE summed over labels)"}
            fooled = is_fooled(worst, targets)
            entry["eps"] = e
            entry["broken_by"] = {src: int(((chosen == i) & fooled).sum()) for i, src in enumerate(["clean"] + names)}
            worst_case[label] = entry
        evaluation = {
            "format": FORMAT, "task": task, "class_names": class_names, "n_points": n, "eps": self.suite.eps,
            "eps_labels": [eps_label(e) for e in self.suite.eps], "early_stop": self.suite.early_stop,
            "bootstrap": None if boot is None else {
                "resamples": self.suite.bootstrap, "seed": self.suite.seed, "level": 0.95, "method": "percentile",
                "strata": "class" if task == "multiclass" else "rarest positive label"},
            "seed": self.suite.seed, "channels_last": self.channels_last, "device": str(self.device),
            "eval_attack": None if self.suite.primary is None else
            {"name": self.suite.primary.name, "eps": self.suite.primary.label},
            "clean": clean_scores, "results": results, "worst_case": worst_case, "settings": settings,
            "resumed_batches": self.partial.reused,
        }
        large = None
        if self.probe is not None:
            large_logits = torch.cat(self.large["logits"])
            large = float((~is_fooled(large_logits, targets[: len(large_logits)])).float().mean())
        zero = torch.cat(self.clean["zero_grad"])
        zero_batches = sum(bool(z.all()) for z in self.clean["zero_grad"])
        evaluation["masking_checks"] = [
            masking.ordering(evaluation),
            masking.large_eps(large, self.probe.attack.eps if self.probe else float("nan"),
                              0 if large is None else len(large_logits)),
            masking.more_steps(evaluation), masking.black_box(evaluation),
            masking.zero_gradients(int(zero.sum()), zero_batches, self.batches),
            masking.saturated_success(evaluation, int(masking.saturated_points(clean_logits, task == "multilabel",
                                                                               zero).sum())),
            probabilities(clean_logits, task == "multilabel"), *self.model_checks]
        masking.warn_failed(evaluation["masking_checks"])
        evaluation["masking_probe"] = None if self.probe is None else self.probe.attack.settings()
        return evaluation


FLAT_KEYS = ("accuracy", "attack_success_rate", "top2", "macro_f1", "balanced_accuracy", "macro_auroc", "macro_auprc")


def _flat_entries(evaluation: dict) -> Iterator[tuple[str, dict]]:
    yield "robust/clean", evaluation["clean"]
    for name, per_eps in [*evaluation["results"].items(), ("worst", evaluation["worst_case"])]:
        for label, entry in per_eps.items():
            yield f"robust/{name}/{label.replace('/', '_')}", entry


def flat_metrics(evaluation: dict) -> dict[str, float]:
    """``robust/<attack>/<eps>/<metric>`` scalars for result tables and loggers (eps as ``8_255``)."""
    flat = {"robust/clean/accuracy": evaluation["clean"]["accuracy"]}
    for prefix, entry in _flat_entries(evaluation):
        if prefix != "robust/clean":
            flat |= {f"{prefix}/{key}": float(entry[key]) for key in FLAT_KEYS if entry.get(key) is not None}
    checks = [c["passed"] for c in evaluation["masking_checks"] if c["passed"] is not None]
    flat["robust/masking_checks_passed"] = float(sum(checks))
    flat["robust/masking_checks_failed"] = float(len(checks) - sum(checks))
    return flat


def flat_intervals(evaluation: dict) -> dict[str, list[float]]:
    """``robust/.../<metric>_ci95: [low, high]`` beside the keys of :func:`flat_metrics` (for metrics.json)."""
    flat = {}
    for prefix, entry in _flat_entries(evaluation):
        keys = ("accuracy",) if prefix == "robust/clean" else FLAT_KEYS
        flat |= {f"{prefix}/{key}_ci95": entry[f"{key}_ci95"] for key in keys if entry.get(f"{key}_ci95")}
    return flat


__all__ = ["AttackRun", "BatchResult", "MaskingSettings", "RobustnessPass", "RobustnessSuite", "eps_label",
           "flat_intervals", "flat_metrics", "seeded"]
