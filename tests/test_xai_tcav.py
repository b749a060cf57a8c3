"""TCAV: CAVs, scores and significance on a tiny model with a planted concept; the ruler shortcut (slow)."""

import pytest
import torch
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.xai.concepts import ruler_sets
from trixai.xai.tcav import tcav, train_cav


class RedMinusGreen(nn.Module):
    """Layer ``features`` = (red, green) channels; logit 0 = mean(red^2) - mean(green^2), logit 1 its negative.

    A planted "red square" concept raises class 0 and lowers class 1 by construction.
    """

    cam_layers = {"high": "features"}
    class_names = ("red", "green")

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.weight[0, 0] = 1.0
            self.features.weight[1, 1] = 1.0

    def forward(self, x):
        energy = self.features(x).pow(2).mean(dim=(2, 3))
        score = energy[:, 0] - energy[:, 1]
        return torch.stack([score, -score], dim=1)


def _images(n, generator):
    return torch.rand(n, 3, 8, 8, generator=generator) * 0.5


def test_tcav_separates_a_planted_concept_from_random():
    g = torch.Generator().manual_seed(0)
    concept = _images(20, g)
    concept[:, 0, 2:6, 2:6] = 1.0  # planted red square
    randoms = [_images(20, g) for _ in range(10)]
    inputs = _images(30, g)
    model = RedMinusGreen()
    red = tcav(model, inputs, 0, concept, randoms, "high", concept="red square")
    green = tcav(model, inputs, 1, concept, randoms, "high", concept="red square")
    assert red.scores == [1.0] * 10 and green.scores == [0.0] * 10
    assert red.significant and red.p_value < 0.05 and green.significant
    assert 0.2 < red.random_score_mean < 0.8  # random CAVs point anywhere
    assert red.cav_accuracy_mean == 1.0 and red.class_name == "red" and red.n_inputs == 30


def test_tcav_random_concept_is_not_significant():
    g = torch.Generator().manual_seed(1)
    model = RedMinusGreen()
    result = tcav(model, _images(30, g), 0, _images(20, g), [_images(20, g) for _ in range(10)], "high")
    assert not result.significant


def test_train_cav_points_to_the_concept():
    g = torch.Generator().manual_seed(0)
    random = torch.randn(40, 5, generator=g)
    concept = torch.randn(40, 5, generator=g) + torch.tensor([6.0, 0, 0, 0, 0])
    cav = train_cav(concept, random)
    assert cav.accuracy == 1.0
    assert int(cav.direction.abs().argmax()) == 0 and float(cav.direction[0]) > 0.8
    assert float(cav.direction.norm()) == pytest.approx(1.0)


def test_tcav_input_errors():
    model = RedMinusGreen()
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(TrixaiError, match=">= 2 random sets"):
        tcav(model, x, 0, x, [x], "high")
    with pytest.raises(TrixaiError, match=">= 2 concept"):
        train_cav(torch.zeros(1, 3), torch.zeros(5, 3))


def test_ruler_sets_differ_only_by_the_planted_ruler():
    concept, randoms = ruler_sets(6, 32, n_random=2, seed=0)
    assert concept.shape == (6, 3, 32, 32) and len(randoms) == 2 and randoms[0].shape == (6, 3, 32, 32)
    dark = (concept.max(dim=1).values < 0.1).flatten(1).float().mean(1)  # the ruler is near-black
    dark_random = (randoms[0].max(dim=1).values < 0.1).flatten(1).float().mean(1)
    assert float(dark.min()) > float(dark_random.max())


@pytest.mark.slow
def test_tcav_finds_the_ruler_shortcut_only_in_the_model_trained_with_it():
    """Two tiny models on the embedded lesions: the ruler planted in 90% of MEL images (5% elsewhere) or not
    at all. TCAV(ruler, MEL) must be high and significant for the first and not for the second."""
    from xai_training import train_tiny_lesion_model

    shortcut, data_shortcut = train_tiny_lesion_model(artifact_class="MEL")
    clean, data_clean = train_tiny_lesion_model(artifact_class=None)
    concept, randoms = ruler_sets(40, 32, n_random=10, seed=1)
    results = {}
    for name, (model, data) in {"shortcut": (shortcut, data_shortcut), "clean": (clean, data_clean)}.items():
        mel = torch.stack([s["image"] for s in data.test if int(s["target"]) == 0])[:40]
        results[name] = tcav(model, mel, 0, concept, randoms, "high", concept="ruler")
    shortcut_result, clean_result = results["shortcut"], results["clean"]
    summary = {k: (r.score_mean, r.random_score_mean, r.p_value) for k, r in results.items()}
    assert shortcut_result.significant and shortcut_result.score_mean > 0.7, summary
    assert not clean_result.significant or clean_result.score_mean < shortcut_result.score_mean - 0.2, summary


def test_concept_and_random_sets_from_folders(tmp_path):
    """explainer=tcav with concept=<folder> and random_dir=<folder of sets>, through the suite."""
    import json

    import numpy as np
    from PIL import Image

    from trixai.suites.robustness import RobustnessSuite
    from trixai.suites.runner import SuiteRun, run_suites
    from trixai.xai.explainers import TCAV

    def explanation_suite(model, loader, settings, out_dir):
        run = SuiteRun(model, robustness=RobustnessSuite.from_config(None, max_points=16), report_robustness=False,
                       explainer=TCAV(**settings, max_samples=16))
        return run_suites(run, loader, out_dir, progress=False)

    rng = np.random.default_rng(0)

    def write(folder, count, red_square):
        folder.mkdir(parents=True)
        for i in range(count):
            image = (rng.uniform(0, 0.5, (8, 8, 3)) * 255).astype(np.uint8)
            if red_square:
                image[2:6, 2:6, 0] = 255
            Image.fromarray(image).save(folder / f"{i}.png")

    write(tmp_path / "concept", 20, True)
    for k in range(6):
        write(tmp_path / "random" / f"set{k}", 20, False)
    g = torch.Generator().manual_seed(0)
    loader = [{"image": _images(16, g), "target": torch.tensor([0, 1] * 8)}]
    cfg = {"layer": "high", "concept": str(tmp_path / "concept"),
           "random_dir": str(tmp_path / "random"), "n_concept": 20, "n_random_sets": 6, "classes": ["red"]}
    metrics = explanation_suite(RedMinusGreen(), loader, cfg, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert report["concept"] == "concept" and report["n_random_sets"] == 6
    row = report["results"][0]
    assert row["n_inputs"] == 8 and row["cav_accuracy_mean"] >= 0.9  # the red square is linearly separable
    assert metrics["xai/tcav/red"] == row["score_mean"] > 0.8 and row["score_mean"] > row["random_score_mean"]
    with pytest.raises(TrixaiError, match="does not exist"):
        explanation_suite(RedMinusGreen(), loader, {**cfg, "concept": str(tmp_path / "nope")}, tmp_path / "out")
