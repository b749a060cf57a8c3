"""Explanations: Grad-CAM family, SE attention, TCAV and their metrics (the suite lives in ``trixai.suites.explanation``)."""

from trixai.xai.gradcam import CamResult, grad_cam
from trixai.xai.metrics.stability import spearman, ssim
from trixai.xai.multiscale import multiscale_grad_cam
from trixai.xai.se_attention import se_attention
from trixai.xai.tcav import tcav

__all__ = ["CamResult", "grad_cam", "multiscale_grad_cam", "se_attention", "spearman", "ssim", "tcav"]
