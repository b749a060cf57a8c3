"""The global random generators' states as plain tensors and numbers, so a checkpoint can carry them.

Training draws from the global generators (attack starts, TRADES noise, dropout, augmentation, the sampler's
shuffle): a run resumed from ``last.ckpt`` continues with exactly the numbers the uninterrupted run drew only
when those states travel with the checkpoint. Plain types keep the checkpoint loadable with ``weights_only=True``.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def rng_states() -> dict:
    """torch (CPU and every CUDA device), numpy and Python ``random`` states."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` captured."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
