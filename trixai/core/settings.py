"""The suites' settings: the schemas of the ``robustness``, ``corruptions`` and ``explanation`` config groups and the
one place their defaults live.

Each group's YAML options extend the group's ``base`` (these dataclasses, registered in Hydra's ConfigStore by
:func:`register_schemas`), so an unknown key (``+explanation.typo=1``, or one written in an experiment file) fails at
composition naming the key. :func:`check_groups` refuses keys added with ``+`` (which Hydra adds even to a typed group) when a task starts.
The suites build on the same dataclasses: :class:`~trixai.suites.robustness.RobustnessSuite`
and :class:`~trixai.suites.corruption.CorruptionSuite` extend them, the explanation suite reads
:class:`ExplanationSettings`. This module imports no torch: Hydra's plugin loads it before composing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from trixai.core.errors import TrixaiError


@dataclass
class MaskingSettings:
    """The gradient-masking probe: PGD at ``large_eps`` (null: skip) with ``steps`` on the first ``points`` points."""

    large_eps: float | None = 0.5
    steps: int = 20
    points: int = 128


@dataclass
class RobustnessSettings:
    """``attacks``: registry names (``clean`` is implied), or names -> setting overrides; ``eps``: L-inf budgets in
    [0, 1] pixel units, numbers or fractions (``8/255``); ``attack_settings``: per-attack overrides (``{pgd10:
    {alpha: 0.004}}``); ``early_stop``: PGD/FGSM accuracy also from an early-stopped run (exact for accuracy only);
    ``bootstrap``: resamples of the 95 % intervals (0: none); ``masking``: the probe; ``max_points``: only the first
    N points; ``fragile_images``: how many of the most fragile images report.html shows (0: none)."""

    attacks: Any = field(default_factory=lambda: ["clean", "fgsm", "pgd10"])
    eps: list[Any] = field(default_factory=lambda: [8 / 255])
    attack_settings: dict[str, Any] = field(default_factory=dict)
    early_stop: bool = False
    bootstrap: int = 1000
    masking: MaskingSettings | None = field(default_factory=MaskingSettings)
    max_points: int | None = None
    fragile_images: int = 6


@dataclass
class CorruptionSettings:
    """``set``: ``auto`` (the dataset's modality) | ``dermoscopy`` | ``chest_xray`` | ``generic``; ``only``: a subset
    of the set; ``severities`` of 1-5; ``max_points``: only the first N points; ``bootstrap``: resamples of the
    95 % intervals (0: none); ``baseline``: a baseline model's corruptions.json or run dir (CE, mCE, BE, rBE);
    ``explanation_severity``: where the explanation suite compares maps clean vs corrupted (null: off);
    ``gallery_severities``: the columns of the gallery."""

    set: str = "auto"
    only: list[str] | None = None
    severities: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    max_points: int | None = None
    bootstrap: int = 1000
    baseline: str | None = None
    explanation_severity: int | None = 3
    gallery_severities: list[int] = field(default_factory=lambda: [1, 3, 5])


@dataclass
class ManipulationSettings:
    """Attacks on the explanation itself at the evaluation attack's eps (the map moves, the prediction stays):
    untargeted (Ghorbani, Abid & Zou 2019: push the map's mass out of the clean map's ``topk`` share of pixels;
    Ghorbani's 1000 of 224 x 224 is 0.02) and targeted (Dombrowski et al. 2019: towards a target map, the lesion
    mask's complement or else the next explained image's map, with the output kept by ``gamma``); ``steps`` signed
    steps of ``alpha_ratio`` * eps; on the first ``points`` explained points (0: off)."""

    points: int = 16
    steps: int = 100
    alpha_ratio: float = 0.125
    topk: float = 0.02
    gamma: float = 1e-5


@dataclass
class ExplanationMetricSettings:
    """``faithfulness``: deletion/insertion protocols (``rise``: Petsiuk et al. 2018; ``blur``, ``constant``:
    trixai 0.1); ``steps``: null for the protocol's own; ``confidence_space``: ``normalised`` (Chattopadhyay et al.
    2018) | ``raw``; ``topk``: share of most salient pixels for the IoU; ``tolerance`` px at ``tolerance_at`` px
    (null: absolute) for the pointing game (Zhang et al. 2016); ``stability``: maps under the evaluation attack and
    corruptions; ``sanity``: cascading randomisation (Adebayo et al. 2018) on ``sanity_samples`` images, passing below
    ``sanity_max_spearman``; ``manipulation``: attacks on the maps themselves (:class:`ManipulationSettings`)."""

    faithfulness: list[str] = field(default_factory=lambda: ["rise"])
    steps: int | None = None
    confidence_space: str = "normalised"
    topk: float = 0.15
    tolerance: float = 15.0
    tolerance_at: int | None = 224
    stability: bool = True
    sanity: bool = True
    sanity_samples: int = 16
    sanity_max_spearman: float = 0.5
    manipulation: ManipulationSettings = field(default_factory=ManipulationSettings)


@dataclass
class ExplanationSettings:
    """``target``: ``predicted`` | ``label`` | a class index | a class name; ``max_points``: points explained and
    scored; ``batch_size``: maps per batch; ``gallery_per_class``: images per class in the gallery; ``metrics``."""

    target: Any = "predicted"
    max_points: int = 64
    batch_size: int = 16
    gallery_per_class: int = 2
    metrics: ExplanationMetricSettings = field(default_factory=ExplanationMetricSettings)


@dataclass
class CertificationSettings:
    """Randomized smoothing (Cohen, Rosenfeld & Kolter 2019): Gaussian noise of std ``sigma`` in [0, 1] pixel units;
    ``n0`` selection and ``n`` estimation samples per point; ``alpha``: the certificate's failure probability;
    ``predict``: also run PREDICT (the smoothed classifier's accuracy, with abstentions); ``radii``: L2 radii at which
    the report states the certified accuracy; ``max_points``: only the first N points (each costs n0 + n forwards,
    2n more with ``predict``); ``max_rows``: noisy samples per forward."""

    sigma: float = 0.25
    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    predict: bool = True
    radii: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    max_points: int | None = 500
    max_rows: int = 1000


def from_mapping(cls: type, values: Mapping | Any, *, key: str) -> Any:
    """``cls`` from a mapping (nested dataclasses too); an unknown key is an error naming ``key.<name>``."""
    if isinstance(values, cls):
        return values
    values = dict(values or {})
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise TrixaiError(f"{key} has unknown keys {[f'{key}.{u}' for u in unknown]}; allowed: {sorted(known)}")
    out = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        out[name] = from_mapping(type(default), value, key=f"{key}.{name}") \
            if is_dataclass(default) and isinstance(value, Mapping) else value
    return cls(**out)


def field_values(settings: Any) -> dict[str, Any]:
    """Every field of a settings dataclass by name: what builds the suite that extends it."""
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


SCHEMAS = {"robustness": RobustnessSettings, "corruptions": CorruptionSettings, "explanation": ExplanationSettings,
           "certify": CertificationSettings}


def check_groups(cfg: Mapping) -> None:
    """Refuse unknown keys in the suite groups of a composed config before any work starts: Hydra's ``+key=value``
    adds a key even to a typed group (a key written in a YAML file already fails at composition)."""
    for group, schema in SCHEMAS.items():
        if cfg.get(group) is not None:
            from_mapping(schema, cfg[group], key=group)


def register_schemas() -> None:
    """Store each group's schema as its ``base`` option in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        store.store(group=group, name="base", node=schema)
