"""Typed reports of the suites (computed from per-point records by trixai.suites, rendered once by trixai.render).

:class:`RobustnessReport` (``robustness.json``), :class:`CorruptionReport` (``corruptions.json``),
:class:`ExplanationReport` and :class:`TcavReport` (``explanations.json``) each carry a schema version
(``format``) and convert with ``to_json``/``from_json``. Scores keep the JSON layout readers know: a metric ``k``
beside its 95 % interval ``k_ci95: [low, high]``. ``flat()`` gives the scalars for result tables and loggers
(``robust/<attack>/<eps>/<metric>``, ``corruption/...``, ``xai/...``), ``flat_intervals()`` their intervals.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from trixai.core.bootstrap import SUFFIX
from trixai.core.errors import TrixaiError
from trixai.core.formatting import eps_key, eps_label, is_number

ROBUSTNESS_FORMAT = "trixai-robustness/3"
CORRUPTIONS_FORMAT = "trixai-corruptions/2"
EXPLANATIONS_FORMAT = "trixai-explanations/1"
TCAV_FORMAT = "trixai-tcav/1"


def _check_format(data: Mapping, expected: str | tuple[str, ...], what: str) -> None:
    accepted = (expected,) if isinstance(expected, str) else expected
    if data.get("format") not in accepted:
        raise TrixaiError(f"{what}: format {data.get('format')!r} is not {' or '.join(accepted)} (written by another "
                          "trixai version; rerun the evaluation)")


# ---------------------------------------------------------------------------------------------------------------
# scores

@dataclass
class Cell:
    """Metric values with their 95 % intervals (``None`` where undefined or not computed)."""

    values: dict[str, float | None] = field(default_factory=dict)
    intervals: dict[str, list[float] | None] = field(default_factory=dict)

    def get(self, key: str) -> float | None:
        return self.values.get(key)

    def interval(self, key: str) -> list[float] | None:
        return self.intervals.get(key)

    def to_json(self) -> dict:
        return {**self.values, **{f"{k}{SUFFIX}": v for k, v in self.intervals.items()}}

    @classmethod
    def from_json(cls, data: Mapping) -> Cell:
        intervals = {k.removesuffix(SUFFIX): v for k, v in data.items() if k.endswith(SUFFIX)}
        values = {k: v for k, v in data.items() if not k.endswith(SUFFIX) and (v is None or is_number(v))}
        return cls(values, intervals)


#: Keys of a :class:`Scores` entry that are not metric values.
_SCORE_EXTRAS = ("n", "initially_correct", "auroc_undefined", "curves")


@dataclass
class Scores(Cell):
    """One set of predictions scored against the targets: metric values and intervals, the number of points and
    of initially correct points, per-class/label values (``per_class_accuracy``, ``per_label_auroc``, ...) and the
    outputs whose AUROC is undefined."""

    n: int = 0
    initially_correct: int = 0
    per_output: dict[str, dict[str, Any]] = field(default_factory=dict)
    auroc_undefined: list[str] = field(default_factory=list)
    curves: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"n": self.n, **self.values, "initially_correct": self.initially_correct, **self.per_output,
                "auroc_undefined": list(self.auroc_undefined),
                **{f"{k}{SUFFIX}": v for k, v in self.intervals.items()}, "curves": self.curves}

    @classmethod
    def from_json(cls, data: Mapping) -> Scores:
        per_output = {k: dict(v) for k, v in data.items() if k.startswith("per_") and isinstance(v, Mapping)}
        rest = {k: v for k, v in data.items() if k not in per_output and k not in _SCORE_EXTRAS}
        cell = Cell.from_json(rest)
        return cls(cell.values, cell.intervals, int(data.get("n", 0)), int(data.get("initially_correct", 0)),
                   per_output, list(data.get("auroc_undefined") or []), dict(data.get("curves") or {}))


@dataclass
class AttackResult:
    """An attack at one eps (or the worst case over attacks, or clean): its scores, which run produced which
    metric, the perturbation sizes, the time it took, and (AutoAttack, worst case) which source broke each point."""

    name: str
    eps: float
    scores: Scores
    metric_runs: dict[str, str] = field(default_factory=dict)
    linf_mean: float | None = None
    linf_max: float | None = None
    linf_within_eps: bool | None = None
    seconds: float | None = None
    images_per_s: float | None = None
    broken_by: dict[str, int] | None = None

    @property
    def label(self) -> str:
        return eps_label(self.eps)

    def get(self, key: str) -> float | None:
        return self.scores.get(key)

    def interval(self, key: str) -> list[float] | None:
        return self.scores.interval(key)

    def to_json(self) -> dict:
        out = self.scores.to_json()
        if self.name == "clean":
            return {**out, "images_per_s": self.images_per_s}
        if self.metric_runs:
            out["metric_runs"] = self.metric_runs
        out["eps"] = self.eps
        if self.linf_max is not None:
            out |= {"linf_mean": self.linf_mean, "linf_max": self.linf_max, "linf_within_eps": self.linf_within_eps,
                    "images_per_s": self.images_per_s, "seconds": self.seconds}
        if self.broken_by is not None:
            out["broken_by"] = self.broken_by
        return out

    @classmethod
    def from_json(cls, name: str, data: Mapping) -> AttackResult:
        own = ("metric_runs", "eps", "linf_mean", "linf_max", "linf_within_eps", "seconds", "images_per_s", "broken_by")
        return cls(name, float(data.get("eps", 0.0)),
                   Scores.from_json({k: v for k, v in data.items() if k not in own}),
                   dict(data.get("metric_runs") or {}), data.get("linf_mean"), data.get("linf_max"),
                   data.get("linf_within_eps"), data.get("seconds"), data.get("images_per_s"),
                   None if data.get("broken_by") is None else dict(data["broken_by"]))


@dataclass
class Check:
    """A gradient-masking or model check: ``passed`` is None when it could not be decided (the detail says why)."""

    check: str
    passed: bool | None
    detail: str

    def to_json(self) -> dict:
        return {"check": self.check, "passed": self.passed, "detail": self.detail}

    @classmethod
    def from_json(cls, data: Mapping) -> Check:
        return cls(str(data["check"]), data.get("passed"), str(data.get("detail", "")))


@dataclass(frozen=True)
class AttackRef:
    """The evaluation attack: its registry name and eps (one shape everywhere)."""

    name: str
    eps: float

    @property
    def label(self) -> str:
        return eps_label(self.eps)

    def to_json(self) -> dict:
        return {"name": self.name, "eps": self.eps, "label": self.label}

    @classmethod
    def from_json(cls, data: Mapping | None) -> AttackRef | None:
        return None if not data else cls(str(data["name"]), float(data["eps"]))


FLAT_KEYS = ("accuracy", "attack_success_rate", "top2", "macro_f1", "balanced_accuracy", "macro_auroc", "macro_auprc")


# ---------------------------------------------------------------------------------------------------------------
# robustness

@dataclass
class RobustnessReport:
    """``robustness.json``: clean and every (attack, eps), the worst case per eps, the masking and model checks,
    every attack's settings."""

    task: str
    class_names: list[str]
    n_points: int
    eps: list[float]
    clean: AttackResult
    results: dict[str, dict[str, AttackResult]]
    worst_case: dict[str, AttackResult]
    settings: dict
    masking_checks: list[Check]
    early_stop: bool = False
    seed: int = 0
    channels_last: bool = False
    device: str = "cpu"
    bootstrap: dict | None = None
    eval_attack: AttackRef | None = None
    masking_probe: dict | None = None
    resumed_batches: int = 0
    execution: dict | None = None  #: how the work ran: workers (shards), their points and seconds, the wall time
    source: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    format: str = ROBUSTNESS_FORMAT

    @property
    def eps_labels(self) -> list[str]:
        return [eps_label(e) for e in self.eps]

    def entries(self) -> Iterator[AttackResult]:
        """Every attack result, then the worst case per eps."""
        for per_eps in self.results.values():
            yield from per_eps.values()
        yield from self.worst_case.values()

    def to_json(self) -> dict:
        return {
            "format": self.format, "task": self.task, "class_names": list(self.class_names), "n_points": self.n_points,
            "eps": list(self.eps), "eps_labels": self.eps_labels, "early_stop": self.early_stop,
            "bootstrap": self.bootstrap, "seed": self.seed, "channels_last": self.channels_last, "device": self.device,
            "eval_attack": None if self.eval_attack is None else self.eval_attack.to_json(),
            "clean": self.clean.to_json(),
            "results": {name: {label: r.to_json() for label, r in per.items()} for name, per in self.results.items()},
            "worst_case": {label: r.to_json() for label, r in self.worst_case.items()},
            "settings": self.settings, "resumed_batches": self.resumed_batches, "execution": self.execution,
            "masking_checks": [c.to_json() for c in self.masking_checks], "masking_probe": self.masking_probe,
            "source": self.source, "figures": list(self.figures),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> RobustnessReport:
        _check_format(data, ROBUSTNESS_FORMAT, "robustness.json")
        return cls(
            task=data["task"], class_names=list(data["class_names"]), n_points=int(data["n_points"]),
            eps=[float(e) for e in data["eps"]], clean=AttackResult.from_json("clean", data["clean"]),
            results={name: {label: AttackResult.from_json(name, r) for label, r in per.items()}
                     for name, per in data["results"].items()},
            worst_case={label: AttackResult.from_json("worst case", r) for label, r in data["worst_case"].items()},
            settings=dict(data.get("settings") or {}),
            masking_checks=[Check.from_json(c) for c in data.get("masking_checks") or []],
            early_stop=bool(data.get("early_stop")), seed=int(data.get("seed", 0)),
            channels_last=bool(data.get("channels_last")), device=str(data.get("device", "cpu")),
            bootstrap=data.get("bootstrap"), eval_attack=AttackRef.from_json(data.get("eval_attack")),
            masking_probe=data.get("masking_probe"), resumed_batches=int(data.get("resumed_batches", 0)),
            execution=data.get("execution"), source=dict(data.get("source") or {}), figures=list(data.get("figures") or []))

    def _flat_entries(self) -> Iterator[tuple[str, AttackResult]]:
        yield "robust/clean", self.clean
        for name, per_eps in [*self.results.items(), ("worst", self.worst_case)]:
            for result in per_eps.values():
                yield f"robust/{name}/{eps_key(result.eps)}", result

    def flat(self) -> dict[str, float]:
        """``robust/<attack>/<eps>/<metric>`` scalars (eps as ``8_255``) and the check counts."""
        out = {"robust/clean/accuracy": self.clean.get("accuracy")}
        for prefix, result in self._flat_entries():
            if prefix != "robust/clean":
                out |= {f"{prefix}/{k}": float(result.get(k)) for k in FLAT_KEYS if result.get(k) is not None}
        decided = [c.passed for c in self.masking_checks if c.passed is not None]
        out["robust/masking_checks_passed"] = float(sum(decided))
        out["robust/masking_checks_failed"] = float(len(decided) - sum(decided))
        return out

    def flat_intervals(self) -> dict[str, list[float]]:
        out = {}
        for prefix, result in self._flat_entries():
            keys = ("accuracy",) if prefix == "robust/clean" else FLAT_KEYS
            out |= {f"{prefix}/{k}{SUFFIX}": result.interval(k) for k in keys if result.interval(k)}
        return out


# ---------------------------------------------------------------------------------------------------------------
# corruptions

@dataclass
class CorruptionSummary:
    """One corruption over its severities (means, errors relative to clean and, with a baseline, CE and BE)."""

    mean_accuracy: float
    mean_error: float
    relative_error: float
    balanced_accuracy_mean: float | None = None
    auroc_mean: float | None = None
    mean_balanced_error: float | None = None
    relative_balanced_error: float | None = None
    ce: float | None = None
    relative_ce: float | None = None
    be: float | None = None
    rbe: float | None = None

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_json(cls, data: Mapping) -> CorruptionSummary:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class CorruptionReport:
    """``corruptions.json``: clean and every (corruption, severity) cell, per-corruption summaries, the means over
    corruptions, the worst corruption and the errors relative to a baseline model."""

    task: str
    class_names: list[str]
    n_points: int
    image_size: list[int]
    set: str
    severities: list[int]
    corruptions: list[str]
    clean: Cell
    results: dict[str, dict[str, Cell]]
    summary: dict[str, CorruptionSummary]
    worst_corruption: dict
    settings: dict
    seed: int = 0
    bootstrap: dict | None = None
    mean_accuracy: float | None = None
    mean_error: float | None = None
    mean_balanced_error: float | None = None
    mce: float | None = None
    relative_mce: float | None = None
    be: float | None = None
    rbe: float | None = None
    baseline: dict | None = None
    source: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    format: str = CORRUPTIONS_FORMAT

    MEANS = ("mean_accuracy", "mean_error", "mean_balanced_error", "mce", "relative_mce", "be", "rbe")

    def to_json(self) -> dict:
        return {
            "format": self.format, "task": self.task, "class_names": list(self.class_names), "n_points": self.n_points,
            "image_size": list(self.image_size), "severities": list(self.severities), "corruptions": list(self.corruptions),
            "set": self.set, "seed": self.seed, "bootstrap": self.bootstrap, "clean": self.clean.to_json(),
            "results": {name: {s: c.to_json() for s, c in per.items()} for name, per in self.results.items()},
            "settings": self.settings, "summary": {name: row.to_json() for name, row in self.summary.items()},
            **{k: getattr(self, k) for k in self.MEANS}, "worst_corruption": self.worst_corruption,
            "baseline": self.baseline, "source": self.source, "figures": list(self.figures),
        }

    @classmethod
    def from_json(cls, data: Mapping) -> CorruptionReport:
        _check_format(data, (CORRUPTIONS_FORMAT, "trixai-corruptions/1"), "corruptions.json")
        severities = [int(s) for s in data["severities"]]
        results = {name: {str(s): Cell.from_json(per[str(s)]) for s in severities}
                   for name, per in data["results"].items()}  # format /1 kept a "mean" entry here: not a severity
        return cls(
            task=data["task"], class_names=list(data["class_names"]), n_points=int(data["n_points"]),
            image_size=list(data.get("image_size") or []), set=str(data["set"]), severities=severities,
            corruptions=list(data.get("corruptions") or results), clean=Cell.from_json(data["clean"]), results=results,
            summary={name: CorruptionSummary.from_json(row) for name, row in (data.get("summary") or {}).items()},
            worst_corruption=dict(data.get("worst_corruption") or {}), settings=dict(data.get("settings") or {}),
            seed=int(data.get("seed", 0)), bootstrap=data.get("bootstrap"),
            **{k: data.get(k) for k in cls.MEANS}, baseline=data.get("baseline"),
            source=dict(data.get("source") or {}), figures=list(data.get("figures") or []),
            format=str(data["format"]))

    def flat(self) -> dict[str, float]:
        """``corruption/<name>/mean_accuracy`` and the suite's means (``corruption/mce`` with a baseline)."""
        out = {"corruption/clean/accuracy": self.clean.get("accuracy")}
        out |= {f"corruption/{name}/mean_accuracy": row.mean_accuracy for name, row in self.summary.items()}
        out |= {f"corruption/{k}": float(getattr(self, k)) for k in self.MEANS if getattr(self, k) is not None}
        return out

    def flat_intervals(self) -> dict[str, list[float]]:
        ci = self.clean.interval("accuracy")
        return {f"corruption/clean/accuracy{SUFFIX}": ci} if ci else {}


# ---------------------------------------------------------------------------------------------------------------
# explanations

@dataclass
class MetricSummary:
    """An explanation metric over the explained points: mean, std (population), n and the bootstrap interval of
    the mean."""

    mean: float
    std: float
    n: int
    mean_ci95: list[float] | None = None

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std, "n": self.n, "mean_ci95": self.mean_ci95}

    @classmethod
    def from_json(cls, data: Mapping) -> MetricSummary:
        nan = float("nan")
        mean, std = data.get("mean"), data.get("std")
        return cls(nan if mean is None else float(mean), nan if std is None else float(std), int(data.get("n", 0)),
                   data.get("mean_ci95"))


@dataclass
class ExplanationReport:
    """``explanations.json`` of a map explainer: per-metric summaries over the explained points, the variants
    used, the degeneracy verdict, the deletion/insertion mean curves, the sanity check, SE statistics, figures."""

    explainer: dict
    model: str
    class_names: list[str]
    n_samples: int
    metrics: dict[str, MetricSummary]
    variants: dict
    degeneracy: dict
    metric_settings: dict = field(default_factory=dict)
    attack: dict | None = None
    corruption: dict | None = None
    uninformative: dict | None = None
    curves: dict = field(default_factory=dict)
    sanity: dict | None = None
    se_attention: dict | None = None
    figures: list[str] = field(default_factory=list)
    format: str = EXPLANATIONS_FORMAT

    def to_json(self) -> dict:
        out = {"format": self.format, "explainer": self.explainer, "metric_settings": self.metric_settings,
               "model": self.model, "class_names": list(self.class_names), "n_samples": self.n_samples,
               "attack": self.attack, "corruption": self.corruption,
               "metrics": {k: v.to_json() for k, v in self.metrics.items()}, "variants": self.variants,
               "degeneracy": self.degeneracy, "uninformative": self.uninformative, "curves": self.curves,
               "sanity": self.sanity, "figures": list(self.figures)}
        if self.se_attention is not None:
            out["se_attention"] = self.se_attention
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> ExplanationReport:
        _check_format(data, EXPLANATIONS_FORMAT, "explanations.json")
        return cls(explainer=dict(data["explainer"]), model=str(data["model"]), class_names=list(data["class_names"]),
                   n_samples=int(data["n_samples"]),
                   metrics={k: MetricSummary.from_json(v) for k, v in data["metrics"].items()},
                   variants=dict(data.get("variants") or {}), degeneracy=dict(data.get("degeneracy") or {}),
                   metric_settings=dict(data.get("metric_settings") or {}), attack=data.get("attack"),
                   corruption=data.get("corruption"), uninformative=data.get("uninformative"),
                   curves=dict(data.get("curves") or {}), sanity=data.get("sanity"),
                   se_attention=data.get("se_attention"), figures=list(data.get("figures") or []))

    def flat(self, prefix: str = "xai/") -> dict[str, float]:
        out = {f"{prefix}{k}": v.mean for k, v in self.metrics.items()}
        if self.sanity:
            out[f"{prefix}sanity_passed"] = float(self.sanity["passed"])
        out[f"{prefix}degenerate"] = float(bool(self.degeneracy.get("degenerate")))
        return out

    def flat_intervals(self, prefix: str = "xai/") -> dict[str, list[float]]:
        return {f"{prefix}{k}{SUFFIX}": v.mean_ci95 for k, v in self.metrics.items() if v.mean_ci95}


@dataclass
class TcavReport:
    """``explanations.json`` of TCAV: one row per class (scores, p-values, verdicts) for one concept and layer."""

    explainer: dict
    model: str
    concept: str
    layer: str
    n_concept: int
    n_random_sets: int
    n_runs: int
    variant: dict
    results: list[dict]
    format: str = TCAV_FORMAT

    def to_json(self) -> dict:
        return {"format": self.format, "explainer": self.explainer, "model": self.model, "concept": self.concept,
                "layer": self.layer, "n_concept": self.n_concept, "n_random_sets": self.n_random_sets,
                "n_runs": self.n_runs, "variant": self.variant, "results": self.results}

    @classmethod
    def from_json(cls, data: Mapping) -> TcavReport:
        _check_format(data, TCAV_FORMAT, "explanations.json (TCAV)")
        return cls(dict(data["explainer"]), str(data["model"]), str(data["concept"]), str(data["layer"]),
                   int(data["n_concept"]), int(data["n_random_sets"]), int(data["n_runs"]), dict(data["variant"]),
                   [dict(r) for r in data["results"]])

    def flat(self, prefix: str = "xai/") -> dict[str, float]:
        out = {}
        for row in self.results:
            out[f"{prefix}tcav/{row['class_name']}"] = row["score_mean"]
            out[f"{prefix}tcav_p/{row['class_name']}"] = row["p_value"]
        return out

    def flat_intervals(self, prefix: str = "xai/") -> dict[str, list[float]]:
        return {}


# ---------------------------------------------------------------------------------------------------------------
# certification

CERTIFICATION_FORMAT = "trixai-certification/1"


@dataclass
class CertificationReport:
    """``certification.json``: randomized smoothing's certified accuracy against the L2 radius, the abstain rate,
    the smoothed classifier's accuracy (PREDICT) and the cost; radii in [0, 1] pixel units (L2), each with its
    L-inf equivalent r / sqrt(d) (the L-inf ball of that radius lies inside the L2 ball of radius r)."""

    sigma: float
    n0: int
    n: int
    alpha: float
    n_points: int
    dimension: int
    at_radii: list[dict]
    curve: dict
    abstain_rate: float
    certified_accuracy: Cell
    smoothed_accuracy: Cell | None
    base_accuracy: float
    mean_radius: float
    seconds_per_image: float | None
    seed: int = 0
    source: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    format: str = CERTIFICATION_FORMAT

    def to_json(self) -> dict:
        return {"format": self.format, "sigma": self.sigma, "n0": self.n0, "n": self.n, "alpha": self.alpha,
                "n_points": self.n_points, "dimension": self.dimension, "seed": self.seed,
                "certified_accuracy": self.certified_accuracy.to_json(),
                "smoothed_accuracy": None if self.smoothed_accuracy is None else self.smoothed_accuracy.to_json(),
                "base_accuracy": self.base_accuracy, "abstain_rate": self.abstain_rate,
                "mean_radius": self.mean_radius, "at_radii": self.at_radii, "curve": self.curve,
                "seconds_per_image": self.seconds_per_image, "source": self.source, "figures": list(self.figures)}

    @classmethod
    def from_json(cls, data: Mapping) -> CertificationReport:
        _check_format(data, CERTIFICATION_FORMAT, "certification.json")
        smoothed = data.get("smoothed_accuracy")
        return cls(float(data["sigma"]), int(data["n0"]), int(data["n"]), float(data["alpha"]), int(data["n_points"]),
                   int(data["dimension"]), list(data["at_radii"]), dict(data["curve"]), float(data["abstain_rate"]),
                   Cell.from_json(data["certified_accuracy"]), None if smoothed is None else Cell.from_json(smoothed),
                   float(data["base_accuracy"]), float(data["mean_radius"]), data.get("seconds_per_image"),
                   int(data.get("seed", 0)), dict(data.get("source") or {}), list(data.get("figures") or []))

    def flat(self) -> dict[str, float]:
        out = {"certify/certified_accuracy": self.certified_accuracy.get("accuracy"),
               "certify/abstain_rate": self.abstain_rate, "certify/mean_radius": self.mean_radius}
        if self.smoothed_accuracy is not None:
            out["certify/smoothed_accuracy"] = self.smoothed_accuracy.get("accuracy")
        out |= {f"certify/certified_accuracy_at_{row['radius']:g}": row["certified_accuracy"] for row in self.at_radii}
        return out

    def flat_intervals(self) -> dict[str, list[float]]:
        ci = self.certified_accuracy.interval("accuracy")
        return {f"certify/certified_accuracy{SUFFIX}": ci} if ci else {}


Report = RobustnessReport | CorruptionReport | ExplanationReport | TcavReport | CertificationReport


def explanation_report_from_json(data: Mapping) -> ExplanationReport | TcavReport:
    """The report in an ``explanations.json`` (map explainer or TCAV)."""
    return TcavReport.from_json(data) if data.get("format") == TCAV_FORMAT else ExplanationReport.from_json(data)


def finite_or_none(value: Any) -> float | None:
    """A float for JSON reports: NaN/inf (undefined) -> None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
