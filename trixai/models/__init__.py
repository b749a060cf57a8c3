"""Model factory: timm backbones with normalisation inside, taking images in [0, 1]."""

from trixai.models.factory import TrixModel, create_model

__all__ = ["TrixModel", "create_model"]
