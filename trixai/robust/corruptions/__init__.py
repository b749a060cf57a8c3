"""Natural distribution shift: medical and generic image corruptions as batched, seeded torch operations.

``corruption_set("dermoscopy")["motion_blur"](x, severity=3, generator=g)``; sets and sources in
:mod:`trixai.robust.corruptions.registry`, training augmentation in :mod:`trixai.robust.corruptions.augment`.
"""

from trixai.robust.corruptions.base import REFERENCE_SIZE, SEVERITIES, Corruption, make_generator, spatial_scale
from trixai.robust.corruptions.registry import SETS, corruption_set, default_set, describe

__all__ = ["REFERENCE_SIZE", "SETS", "SEVERITIES", "Corruption", "corruption_set", "default_set", "describe",
           "make_generator", "spatial_scale"]
