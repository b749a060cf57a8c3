"""trixai: robust, explainable medical-imaging experiments (Hydra x Lightning x timm).

``trixai.load_model`` and ``trixai.audit`` (robustness and explanation audit of a model in memory) are imported on
first use, so the console scripts start without torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__", "audit", "load_model"]


def __getattr__(name: str):
    if name == "load_model":
        from trixai.models.export import load_model

        return load_model
    if name == "audit":
        from trixai.tasks.audit import audit

        return audit
    raise AttributeError(f"module 'trixai' has no attribute {name!r}")
