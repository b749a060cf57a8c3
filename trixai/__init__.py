"""trixai: robust, explainable medical-imaging experiments (Hydra x Lightning x timm)."""

from trixai.io import load_model

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]
