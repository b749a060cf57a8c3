"""The attack registry: one name -> one attack, for training (the ``attack`` group) and for every suite.

``fgsm``, ``pgd<k>`` (L-inf PGD-k, ``alpha = eps / 4``, uniform random start; e.g. ``pgd10``, ``pgd20``),
``apgd-ce``, ``apgd-dlr``, ``apgd-t``, ``fab-t``, ``square`` and ``autoattack``; the suites also take ``clean``
(no attack). ``create_attack("pgd10", 8/255)`` is what ``attack=pgd10`` instantiates and what the robustness
suite runs as ``pgd10`` at 8/255; keyword settings override the defaults (``alpha=0.004``, ``version="rand"``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

from trixai.core.errors import TrixaiError
from trixai.robust.attacks import APGD, APGDT, FABT, FGSM, PGD, Attack, AutoAttack, Square

NAMES = ("clean", "fgsm", "pgd<k>", "apgd-ce", "apgd-dlr", "apgd-t", "fab-t", "square", "autoattack")
_PGD = re.compile(r"pgd(\d+)")
_CLASSES: dict[str, type[Attack]] = {"fgsm": FGSM, "apgd-ce": APGD, "apgd-dlr": APGD, "apgd-t": APGDT,
                                     "fab-t": FABT, "square": Square, "autoattack": AutoAttack}


def attack_class(name: str) -> type[Attack] | None:
    """The class behind ``name`` (``None`` for ``clean``); an unknown name lists the known ones."""
    if name == "clean":
        return None
    match = _PGD.fullmatch(name)
    if match and int(match.group(1)) >= 1:
        return PGD
    if name not in _CLASSES:
        raise TrixaiError(f"unknown attack {name!r}; choose from {list(NAMES)} (pgd<k> is any step count)")
    return _CLASSES[name]


def default_settings(name: str, eps: float) -> dict:
    """The registry's settings for ``name`` at ``eps`` beyond the class defaults."""
    match = _PGD.fullmatch(name)
    if match:
        return {"steps": int(match.group(1)), "alpha": eps / 4, "random_start": True}
    if name in ("apgd-ce", "apgd-dlr"):
        return {"loss": name.split("-")[1]}
    return {}


def create_attack(name: str, eps: float, **settings) -> Attack:
    """The attack called ``name`` at ``eps`` (pixel units in [0, 1]); ``settings`` replace its defaults
    (``None`` keeps the default, so a config can list a key without fixing it)."""
    settings = {key: value for key, value in settings.items() if value is not None}
    cls = attack_class(str(name))
    if cls is None:
        raise TrixaiError("attack 'clean' is no attack: use attack=none for standard training")
    allowed = sorted(f.name for f in dataclasses.fields(cls) if f.name != "eps")
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise TrixaiError(f"attack {name}: unknown setting(s) {unknown}; allowed: {allowed}")
    try:
        return cls(eps=float(eps), **{**default_settings(str(name), float(eps)), **settings})
    except (TypeError, ValueError) as err:
        raise TrixaiError(f"attack {name}: {err}") from err


def attack_overrides(attacks: str | list[str] | Mapping[str, Mapping | None]) -> dict[str, dict]:
    """Normalise ``attacks`` (a name, a list of names, or names -> setting overrides) to names -> overrides."""
    if isinstance(attacks, str):
        attacks = [attacks]
    if isinstance(attacks, Mapping):
        normalised = {str(name): dict(settings or {}) for name, settings in attacks.items()}
    else:
        normalised = {str(name): {} for name in attacks}
    for name in normalised:
        attack_class(name)
    return normalised
