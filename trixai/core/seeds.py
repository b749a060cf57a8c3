"""Seeds derived from names and numbers: every random draw of an evaluation comes from a seed that depends only on
what it is for (the suite, the attack, the budget, the block of points), never on how the work was batched or split."""

from __future__ import annotations

import hashlib


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from ``parts`` (their text), the same in every process and Python version."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
