"""Attack names used by ``trixai-eval`` and the test phase, resolved to attack objects at a given eps.

``clean`` (no attack), ``fgsm``, ``pgd<k>`` (L-inf PGD-k, ``alpha = eps / 4``, uniform random start; e.g.
``pgd10``, ``pgd20``), ``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab-t``, ``square`` and ``autoattack``. Settings can
be overridden per name (``{"pgd10": {"alpha": 0.004}, "autoattack": {"version": "rand"}}``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from trixai.errors import TrixaiError
from trixai.robust.attacks import APGD, APGDT, FABT, FGSM, PGD, Attack, AutoAttack, Square

NAMES = ("clean", "fgsm", "pgd<k>", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "autoattack")
_PGD = re.compile(r"pgd(\d+)")


def attack_overrides(attacks: list[str] | Mapping[str, Mapping | None]) -> dict[str, dict]:
    """Normalise ``attacks`` (a list of names, or names -> setting overrides) to names -> overrides."""
    if isinstance(attacks, str):
        attacks = [attacks]
    if isinstance(attacks, Mapping):
        normalised = {str(name): dict(settings or {}) for name, settings in attacks.items()}
    else:
        normalised = {str(name): {} for name in attacks}
    if not normalised:
        raise TrixaiError(f"attacks is empty; choose from {list(NAMES)}")
    for name in normalised:
        _base(name)
    return normalised


def _base(name: str) -> type[Attack] | None:
    if name == "clean":
        return None
    match = _PGD.fullmatch(name)
    if match and int(match.group(1)) >= 1:
        return PGD
    classes = {"fgsm": FGSM, "apgd-ce": APGD, "apgd-dlr": APGD, "apgd-t": APGDT, "fab-t": FABT,
               "square": Square, "autoattack": AutoAttack}
    if name not in classes:
        raise TrixaiError(f"attacks: unknown attack {name!r}; choose from {list(NAMES)} (pgd<k> is any step count)")
    return classes[name]


def build_attack(name: str, eps: float, overrides: Mapping | None = None, *, early_stop: bool = True) -> Attack | None:
    """The attack called ``name`` at ``eps`` (``None`` for ``clean``); ``overrides`` replace default settings.

    ``early_stop`` applies to PGD: a point keeps the first iterate that fools it (faster, never weaker).
    """
    cls = _base(name)
    if cls is None:
        return None
    settings: dict = {}
    match = _PGD.fullmatch(name)
    if match:
        settings = {"steps": int(match.group(1)), "alpha": eps / 4, "random_start": True, "early_stop": early_stop}
    elif name in ("apgd-ce", "apgd-dlr"):
        settings = {"loss": name.split("-")[1]}
    settings.update(overrides or {})
    allowed = sorted(f.name for f in dataclasses.fields(cls) if f.name != "eps")
    unknown = sorted(set(settings) - set(allowed))
    if unknown or "eps" in (overrides or {}):
        culprit = unknown or ["eps"]
        raise TrixaiError(f"attacks.{name}: unknown setting(s) {culprit}; allowed: {allowed} "
                          "(eps comes from the eps list)")
    try:
        return cls(eps=eps, **settings)
    except (TypeError, ValueError) as err:
        raise TrixaiError(f"attacks.{name}: {err}") from err
