"""Attacks in [0, 1] pixel space; one implementation each serves training and evaluation."""

from trixai.robust.attacks.apgd import APGD, APGDT
from trixai.robust.attacks.autoattack import AutoAttack
from trixai.robust.attacks.base import Attack
from trixai.robust.attacks.fab import FABT
from trixai.robust.attacks.pgd import FGSM, PGD, gradient_ascent, project, random_start
from trixai.robust.attacks.square import Square

__all__ = ["APGD", "APGDT", "Attack", "AutoAttack", "FABT", "FGSM", "PGD", "Square", "gradient_ascent",
           "project", "random_start"]
