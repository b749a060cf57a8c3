"""Masked labels (CheXpert's uncertain labels under U-Ignore) reach everything that reads a target: the attacks'
losses and stopping rules, fooled/exact match, accuracy, AUROC, the corruption errors, the bootstrap, points.csv."""

from __future__ import annotations

import copy
import csv
import json

import pytest
import torch
from data_fixtures import make_chexpert
from torch.utils.data import DataLoader

from trixai.data.chexpert import CheXpert
from trixai.models import create_model
from trixai.robust.attacks.margins import is_fooled, margin, masked_targets, target_order
from trixai.robust.losses import classification_loss
from trixai.suites.corruption import CorruptionSuite
from trixai.suites.robustness import RobustnessSuite
from trixai.suites.runner import SuiteRun, run_suites

TIMINGS = ("seconds", "images_per_s")


def test_ignored_labels_never_fool_never_set_the_margin_nor_the_loss():
    logits = torch.tensor([[2.0, -1.0, 3.0], [-0.7, 0.5, -4.0]])
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])  # label 2 wrong on both points
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # ... but ignored
    kept = masked_targets(y, mask)
    assert kept.tolist() == [[1.0, 0.0, -1.0], [0.0, 1.0, -1.0]]
    assert is_fooled(logits, y).tolist() == [True, True] and is_fooled(logits, kept).tolist() == [False, False]
    assert margin(logits, kept).tolist() == [1.0, 0.5]  # min over kept labels of (2y - 1) z
    bce = classification_loss(logits, kept, reduction="none")
    by_hand = classification_loss(logits[:, :2], y[:, :2], reduction="none")
    torch.testing.assert_close(bce, by_hand)
    (grad,) = torch.autograd.grad(classification_loss(logits.requires_grad_(), kept, reduction="sum"), logits)
    assert grad[:, 2].abs().sum() == 0  # an ignored label pushes nothing
    assert target_order(logits.detach(), kept, 3)[:, :2].tolist() == [[1, 0], [1, 0]]  # kept labels first
    assert target_order(logits.detach(), kept, 3)[:, 2].tolist() == [1, 1]  # no third kept label: the first repeats


def _flipped(split):
    """The split with every masked label's stored target flipped (0 <-> 1): nothing may notice."""
    flipped = copy.copy(split)
    masks = split.label_masks.astype(bool)
    targets = split.targets.copy()
    targets[~masks] = 1 - targets[~masks]
    flipped.targets = targets
    return flipped


def _numbers(path) -> dict:
    """Every value of a JSON report except timings and the settings/source blocks (paths differ)."""
    def walk(value, prefix=""):
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if k in ("source", "settings", "figures") or k in TIMINGS:
                    continue
                out |= walk(v, f"{prefix}/{k}")
            return out
        if isinstance(value, list):
            return {f"{prefix}[{i}]": v for i, v in enumerate(value) if not isinstance(v, (dict, list))} | {
                k: v for i, item in enumerate(value) if isinstance(item, (dict, list))
                for k, v in walk(item, f"{prefix}[{i}]").items()}
        return {prefix: value}
    return walk(json.loads(path.read_text()))


def test_flipping_every_masked_label_changes_no_number(tmp_path):
    root = make_chexpert(tmp_path)
    bundle = CheXpert(root=str(root), image_size=16, channels=1, uncertain="u_ignore", frontal_only=False,
                      cache_dir=None).load()
    split = bundle.train  # the fixture's uncertain labels are in its training rows
    assert split.label_masks is not None and (split.label_masks == 0).any(), "the fixture needs uncertain labels"
    torch.manual_seed(0)
    model = create_model("test_resnet", len(bundle.info.class_names), class_names=list(bundle.info.class_names),
                         task="multilabel", in_chans=1, resolution=16).eval()
    outputs = {}
    for name, data in (("stored", split), ("flipped", _flipped(split))):
        suite = RobustnessSuite(attacks={"clean": None, "fgsm": None, "pgd3": None,
                                         "autoattack": {"steps": 3, "targets": 2, "queries": 10}},
                                eps=[8 / 255], bootstrap=50, masking={"large_eps": 0.5, "steps": 2, "points": 4})
        corrupt = CorruptionSuite(set="chest_xray", only=["gaussian_noise", "contrast_down"], severities=[1, 4],
                                  bootstrap=50)
        run = SuiteRun(model, robustness=suite, corruptions=corrupt)
        run_suites(run, DataLoader(data, batch_size=4), tmp_path / name, progress=False)
        outputs[name] = {f: _numbers(tmp_path / name / f) for f in ("robustness.json", "corruptions.json")}
        with open(tmp_path / name / "points.csv") as handle:
            outputs[name]["points"] = list(csv.DictReader(handle))
    for report in ("robustness.json", "corruptions.json"):
        stored, flipped = outputs["stored"][report], outputs["flipped"][report]
        assert stored.keys() == flipped.keys()
        different = {k: (stored[k], flipped[k]) for k in stored if stored[k] != pytest.approx(flipped[k], nan_ok=True)}
        assert not different, different
    assert outputs["stored"]["points"] == outputs["flipped"]["points"]
    assert any("?" in row["target"] for row in outputs["stored"]["points"])  # the ignored labels are shown as such
