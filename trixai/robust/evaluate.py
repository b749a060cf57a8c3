"""The robustness suite: every attack at every eps over a loader, per-point worst case, metrics and checks.

Per-batch results are saved atomically under ``<out_dir>/partial/`` and reused by a rerun, so a long
evaluation that stops continues where it was; a rich progress bar with ETA runs per attack and eps.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import Tensor, nn

from trixai.errors import TrixaiError
from trixai.robust import masking
from trixai.robust.attacks import PGD, AutoAttack, frozen_eval, memory_format
from trixai.robust.attacks.margins import is_fooled
from trixai.robust.losses import classification_loss
from trixai.robust.partial import PartialResults
from trixai.robust.presets import attack_overrides, build_attack
from trixai.robust.report import write_reports
from trixai.robust.scoring import score, worst_case_logits

FORMAT = "trixai-robustness/1"
DEFAULT_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255)


@dataclass
class MaskingSettings:
    """Extra runs for the gradient-masking checks: PGD at ``large_eps`` on the first ``points`` points."""

    large_eps: float | None = 0.5
    steps: int = 20
    points: int = 128


def eps_label(eps: float) -> str:
    """``8/255`` for multiples of 1/255, else the number."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.6g}"


def _batches(loader: Iterable, max_points: int | None) -> Iterator[tuple[Tensor, Tensor, Tensor | None]]:
    seen = 0
    for batch in loader:
        if isinstance(batch, Mapping):
            x, y, label_mask = batch["image"], batch["target"], batch.get("label_mask")
        elif isinstance(batch, (list, tuple)) and len(batch) >= 2:
            x, y, label_mask = batch[0], batch[1], None
        else:
            raise TrixaiError(f"loader batches must be dicts with 'image'/'target' or (x, y) pairs, got {type(batch).__name__}")
        if max_points is not None:
            if seen >= max_points:
                return
            keep = min(len(y), max_points - seen)
            x, y, label_mask = x[:keep], y[:keep], None if label_mask is None else label_mask[:keep]
        seen += len(y)
        yield x, y, label_mask


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's state (names, shapes, values): partial results belong to these weights."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def _settings_key(name: str, settings: dict) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return f"{name}_{hashlib.sha256(blob).hexdigest()[:12]}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Runner:
    """Runs clean and attacked passes batch by batch, with partial results and a progress bar."""

    def __init__(self, model: nn.Module, loader: Iterable, *, device: torch.device, partial: PartialResults,
                 progress: Progress, max_points: int | None, seed: int, channels_last: bool) -> None:
        self.model, self.loader, self.device, self.seed = model, loader, device, seed
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.partial, self.progress, self.max_points = partial, progress, max_points
        self.targets: list[Tensor] = []

    def clean(self) -> dict:
        """Clean logits, forward throughput and the zero-input-gradient count per batch."""
        task = self.progress.add_task("clean", total=None)
        logits, masks, seconds, zero_points, zero_batches = [], [], 0.0, 0, 0
        for b, (x, y, label_mask) in enumerate(_batches(self.loader, self.max_points)):
            cached = self.partial.load(f"clean_b{b:05d}")
            if cached is None:
                x = x.to(self.device, memory_format=self.memory_format)
                _sync(self.device)
                start = time.perf_counter()
                with torch.no_grad():
                    out = self.model(x)
                _sync(self.device)
                elapsed = time.perf_counter() - start
                x = x.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(classification_loss(self.model(x), y.to(self.device), reduction="sum"), x)
                zero = grad.flatten(1).abs().amax(dim=1) == 0
                cached = {"logits": out.cpu(), "targets": y, "seconds": torch.tensor(elapsed),
                          "zero_grad": zero.cpu()}
                self.partial.save(f"clean_b{b:05d}", cached)
            self.targets.append(cached["targets"])
            logits.append(cached["logits"])
            masks.append(label_mask)
            seconds += float(cached["seconds"])
            zero_points += int(cached["zero_grad"].sum())
            zero_batches += bool(cached["zero_grad"].all())
            self.progress.advance(task, len(y))
        if not self.targets:
            raise TrixaiError("the evaluation loader yielded no batches (empty split?)")
        self.progress.update(task, total=sum(len(t) for t in self.targets), completed=sum(len(t) for t in self.targets))
        label_mask = None if any(m is None for m in masks) else torch.cat(masks)
        return {"logits": torch.cat(logits), "targets": torch.cat(self.targets), "label_mask": label_mask,
                "seconds": seconds, "zero_points": zero_points, "zero_batches": zero_batches,
                "batches": len(self.targets)}

    def attack(self, title: str, key: str, attack, limit: int | None = None) -> dict:
        """Adversarial logits, ``||delta||_inf`` and time per point for one attack at one eps."""
        total = sum(len(t) for t in self.targets)
        total = total if limit is None else min(total, limit)
        task = self.progress.add_task(title, total=total)
        logits, linf, broken, seconds, done = [], [], [], 0.0, 0
        for b, (x, y, _) in enumerate(_batches(self.loader, self.max_points)):
            if done >= total:
                break
            if not torch.equal(y, self.targets[b]):
                raise TrixaiError("the evaluation loader must yield the same batches in the same order on every pass "
                                  "(use shuffle=False and no random transforms)")
            if limit is not None:
                x, y = x[: total - done], y[: total - done]
            cached = self.partial.load(f"{key}_b{b:05d}")
            if cached is None:
                x, y_dev = x.to(self.device, memory_format=self.memory_format), y.to(self.device)
                devices = [self.device] if self.device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices):  # same random starts whether resumed or not
                    torch.manual_seed(self.seed + b)
                    _sync(self.device)
                    start = time.perf_counter()
                    if isinstance(attack, AutoAttack):
                        x_adv, broken_by = attack.run(self.model, x, y_dev)
                    else:
                        x_adv, broken_by = attack(self.model, x, y_dev), None
                    _sync(self.device)
                    elapsed = time.perf_counter() - start
                with torch.no_grad():
                    out = self.model(x_adv)
                cached = {"logits": out.cpu(), "linf": (x_adv - x).abs().flatten(1).amax(dim=1).cpu(),
                          "seconds": torch.tensor(elapsed), "in_box": torch.tensor(bool(x_adv.min() >= 0 and x_adv.max() <= 1))}
                if broken_by is not None:
                    cached["broken_by"] = broken_by.cpu()
                self.partial.save(f"{key}_b{b:05d}", cached)
            logits.append(cached["logits"])
            linf.append(cached["linf"])
            if "broken_by" in cached:
                broken.append(cached["broken_by"])
            seconds += float(cached["seconds"])
            done += len(y)
            self.progress.advance(task, len(y))
        return {"logits": torch.cat(logits), "linf": torch.cat(linf), "seconds": seconds,
                "broken_by": torch.cat(broken) if broken else None}


def evaluate_robustness(
    model: nn.Module, loader: Iterable, *, attacks: list[str] | Mapping = ("clean", "fgsm", "pgd10"),
    eps: Iterable[float] = DEFAULT_EPS, partial_dir: str | Path | None = None, masking_settings: MaskingSettings | None = None,
    early_stop: bool = True, progress: bool = True, max_points: int | None = None, device: str | torch.device | None = None,
    seed: int = 0, channels_last: bool = False,
) -> dict:
    """Run the suite and return the report (a JSON-ready dict); nothing is written except partial results.

    ``attacks``: names (see :mod:`trixai.robust.presets`) or names -> setting overrides. ``eps`` in [0, 1]
    pixel units. The model must take [0, 1] images; its mode and parameters are restored afterwards.
    Random starts are seeded per batch (``seed + batch index``), so resumed and fresh runs agree.
    ``channels_last`` runs model and images in that memory format (faster convolutions on CPU and GPU);
    the model's format is restored afterwards.
    """
    specs = attack_overrides(attacks if isinstance(attacks, Mapping) else list(attacks))
    eps = sorted({float(e) for e in eps})
    if not eps or any(not 0 <= e <= 1 for e in eps):
        raise TrixaiError(f"eps must be a non-empty list of values in [0, 1] pixel units (e.g. 0.0313 for 8/255), got {eps}")
    masking_settings = masking_settings or MaskingSettings()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    task_kind = getattr(model, "task", "multiclass")
    class_names = list(getattr(model, "class_names", []))
    fingerprint = {"format": FORMAT, "model": model_fingerprint(model), "max_points": max_points, "seed": seed}
    partial = PartialResults(partial_dir, fingerprint)
    columns = (TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar, frozen_eval(model), memory_format(model, channels_last):
        model.to(device)
        runner = _Runner(model, loader, device=device, partial=partial, progress=bar, max_points=max_points,
                         seed=seed, channels_last=channels_last)
        clean = runner.clean()
        targets, label_mask = clean["targets"], clean["label_mask"]
        if not class_names:
            class_names = [str(i) for i in range(clean["logits"].shape[1])]
        if (task_kind == "multilabel") != targets.is_floating_point():
            raise TrixaiError(f"the model's task is {task_kind!r} but the loader yields "
                              f"{'float (N, L)' if targets.is_floating_point() else 'integer class'} targets")
        runs: dict[str, dict[str, dict]] = {}
        settings: dict[str, dict[str, dict]] = {}
        for name, overrides in specs.items():
            if name == "clean":
                continue
            for e in eps:
                attack = build_attack(name, e, overrides, early_stop=early_stop)
                described = attack.settings()
                if isinstance(attack, AutoAttack):
                    described["components"] = attack.describe(clean["logits"].shape[1], task_kind == "multilabel")
                settings.setdefault(name, {})[eps_label(e)] = described
                runs.setdefault(name, {})[eps_label(e)] = runner.attack(
                    f"{name} eps={eps_label(e)}", _settings_key(name, described), attack)
        large = None
        if masking_settings.large_eps is not None:
            probe = PGD(eps=masking_settings.large_eps, alpha=masking_settings.large_eps / 4,
                        steps=masking_settings.steps, random_start=True, early_stop=early_stop)
            limit = masking_settings.points
            large = runner.attack(f"masking: pgd eps={masking_settings.large_eps:g}",
                                  _settings_key("masking", probe.settings()), probe, limit=limit)
            large["n"] = len(large["linf"])
            large["accuracy"] = float((~is_fooled(large["logits"], targets[: large["n"]])).float().mean())
            large["settings"] = probe.settings()
    return _assemble(clean, runs, settings, large, eps=eps, task=task_kind, class_names=class_names,
                     label_mask=label_mask, early_stop=early_stop, partial=partial, device=device, seed=seed,
                     channels_last=channels_last)


def _assemble(clean: dict, runs: dict, settings: dict, large: dict | None, *, eps: list[float], task: str,
              class_names: list[str], label_mask: Tensor | None, early_stop: bool, partial: PartialResults,
              device: torch.device, seed: int, channels_last: bool) -> dict:
    targets, clean_logits = clean["targets"], clean["logits"]
    n = len(targets)
    clean_scores = score(clean_logits, targets, clean_logits, class_names, task, label_mask)
    clean_scores["images_per_s"] = n / clean["seconds"] if clean["seconds"] > 0 else None
    results: dict[str, dict[str, dict]] = {}
    for name, per_eps in runs.items():
        for label, run in per_eps.items():
            entry = score(run["logits"], targets, clean_logits, class_names, task, label_mask)
            e = settings[name][label]["eps"]
            entry.update({
                "eps": e, "linf_mean": float(run["linf"].mean()), "linf_max": float(run["linf"].max()),
                "linf_within_eps": bool(float(run["linf"].max()) <= e + 1e-6),
                "images_per_s": n / run["seconds"] if run["seconds"] > 0 else None, "seconds": run["seconds"],
            })
            if run["broken_by"] is not None:
                names = [c["name"] for c in settings[name][label]["components"]]
                entry["broken_by"] = {c: int((run["broken_by"] == i).sum()) for i, c in enumerate(names)}
            results.setdefault(name, {})[label] = entry
    worst_case = {}
    for e in eps:
        label = eps_label(e)
        names = [name for name in results if label in results[name]]
        if not names:
            continue
        worst, chosen = worst_case_logits([clean_logits] + [runs[nm][label]["logits"] for nm in names], targets)
        entry = score(worst, targets, clean_logits, class_names, task, label_mask)
        fooled = is_fooled(worst, targets)
        entry["eps"] = e
        entry["broken_by"] = {src: int(((chosen == i) & fooled).sum()) for i, src in enumerate(["clean"] + names)}
        worst_case[label] = entry
    evaluation = {
        "format": FORMAT, "task": task, "class_names": class_names, "n_points": n,
        "eps": eps, "eps_labels": [eps_label(e) for e in eps], "early_stop": early_stop, "seed": seed,
        "channels_last": channels_last,
        "device": str(device),
        "clean": clean_scores, "results": results, "worst_case": worst_case, "settings": settings,
        "resumed_batches": partial.reused,
    }
    checks = [masking.ordering(evaluation),
              masking.large_eps(None if large is None else large["accuracy"],
                                large["settings"]["eps"] if large else float("nan"), 0 if large is None else large["n"]),
              masking.more_steps(evaluation), masking.black_box(evaluation),
              masking.zero_gradients(clean["zero_points"], clean["zero_batches"], clean["batches"])]
    evaluation["masking_checks"] = checks
    evaluation["masking_probe"] = None if large is None else large["settings"]
    return evaluation


def flat_metrics(evaluation: dict) -> dict[str, float]:
    """``robust/<attack>/<eps>/<metric>`` scalars for result tables and loggers (eps as ``8_255``)."""
    flat = {"robust/clean/accuracy": evaluation["clean"]["accuracy"]}
    keys = ("accuracy", "attack_success_rate", "macro_f1", "balanced_accuracy", "macro_auroc")
    for name, per_eps in [*evaluation["results"].items(), ("worst", evaluation["worst_case"])]:
        for label, entry in per_eps.items():
            for key in keys:
                if entry.get(key) is not None:
                    flat[f"robust/{name}/{label.replace('/', '_')}/{key}"] = float(entry[key])
    checks = [c["passed"] for c in evaluation["masking_checks"] if c["passed"] is not None]
    flat["robust/masking_checks_passed"] = float(sum(checks))
    flat["robust/masking_checks_failed"] = float(len(checks) - sum(checks))
    return flat


def robustness_suite(
    model: nn.Module, loader: Iterable, *, attacks: list[str] | Mapping, eps: Iterable[float], out_dir: str | Path,
    masking_settings: MaskingSettings | None = None, early_stop: bool = True, progress: bool = True,
    max_points: int | None = None, device: str | torch.device | None = None, source: dict | None = None,
    wandb_run=None, seed: int = 0, channels_last: bool = False,
) -> dict[str, float]:
    """Evaluate, write ``robustness.json``/``robustness.md``/``figures/robust_accuracy_vs_eps.png`` into
    ``out_dir`` (partial results in ``out_dir/partial``), log to ``wandb_run`` if given; return flat metrics."""
    out_dir = Path(out_dir)
    evaluation = evaluate_robustness(
        model, loader, attacks=attacks, eps=eps, partial_dir=out_dir / "partial", masking_settings=masking_settings,
        early_stop=early_stop, progress=progress, max_points=max_points, device=device, seed=seed,
        channels_last=channels_last,
    )
    evaluation["source"] = source or {}
    flat = flat_metrics(evaluation)
    write_reports(evaluation, out_dir, wandb_run=wandb_run, flat=flat)
    return flat


__all__ = ["DEFAULT_EPS", "MaskingSettings", "eps_label", "evaluate_robustness", "flat_metrics", "robustness_suite"]
