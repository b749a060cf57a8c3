"""TCAV: CAVs, scores and significance on a tiny model with a planted concept; the ruler shortcut (slow)."""

import math
import warnings

import pytest
import torch
from torch import nn

from trixai.core.errors import TrixaiError
from trixai.xai.concepts import ruler_sets
from trixai.xai.tcav import (
    bonferroni,
    bonferroni_hypotheses,
    layer_activations,
    logistic_regression,
    split_indices,
    t_test,
    tcav,
    train_cav,
)


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
    randoms = [_images(20, g) for _ in range(15)]  # 5 runs
    inputs = _images(30, g)
    model = RedMinusGreen()
    red = tcav(model, inputs, 0, concept, randoms, "high", concept="red square")
    green = tcav(model, inputs, 1, concept, randoms, "high", concept="red square")
    assert red.scores == [1.0] * 5 and green.scores == [0.0] * 5 and red.n_runs == 5
    assert red.significant and red.p_value < 0.05 and green.significant
    # random CAVs point to both sides of the class's gradients (5 random-vs-random scores: [0, 0, 0, 0.667, 0.3])
    assert min(red.random_scores) < 0.5 < max(red.random_scores)
    assert red.cav_accuracy_mean == 1.0 and red.class_name == "red" and red.n_inputs == 30


def test_tcav_random_concept_is_not_significant():
    g = torch.Generator().manual_seed(1)
    model = RedMinusGreen()
    result = tcav(model, _images(30, g), 0, _images(20, g), [_images(20, g) for _ in range(15)], "high")
    assert not result.significant


@pytest.mark.parametrize("classifier", ["hinge", "logistic"])
def test_train_cav_points_to_the_concept(classifier):
    g = torch.Generator().manual_seed(0)
    random = torch.randn(40, 5, generator=g)
    concept = torch.randn(40, 5, generator=g) + torch.tensor([6.0, 0, 0, 0, 0])
    cav = train_cav(concept, random, classifier=classifier)
    # the exact logistic regression separates all 26 held-out points; sklearn's SGD (the default, as captum's) stops
    # at tol 1e-3 with an intercept of -10.4 that puts one held-out concept point at -0.99: 25 / 26
    assert cav.accuracy == (1.0 if classifier == "logistic" else 25 / 26)
    assert int(cav.direction.abs().argmax()) == 0 and float(cav.direction[0]) > 0.8
    assert float(cav.direction.norm()) == pytest.approx(1.0)


def _two_square_sets(seed: int, runs: int):
    """Concept: a red top-left and a green bottom-right square; for RedMinusGreen's class 0 the directional
    derivative weighs the input's top-left red against its bottom-right green, so scores are intermediate."""
    g = torch.Generator().manual_seed(seed)
    concept = _images(20, g)
    concept[:, 0, :4, :4], concept[:, 1, 4:, 4:] = 1.0, 1.0
    return concept, [_images(20, g) for _ in range(3 * runs)], _images(40, g)


def _captum_scores(model, inputs, concept, randoms, runs, save_path, classifier=None, seed=0):
    """captum.concept.TCAV sign-count scores for the same runs as trixai: concept vs set i, then set R + 2j vs
    set R + 2j + 1 (the first concept of each pair is the one scored)."""
    import random

    import numpy as np
    from captum.concept import TCAV as CaptumTCAV
    from captum.concept import Concept

    random.seed(seed)  # captum's train/test split
    np.random.seed(seed)  # sklearn's SGDClassifier
    c = Concept(0, "concept", [concept])
    rs = [Concept(i + 1, f"random{i}", [r]) for i, r in enumerate(randoms)]
    sets = [[c, rs[i]] for i in range(runs)] + [[rs[runs + 2 * j], rs[runs + 2 * j + 1]] for j in range(runs)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum's note on its in-memory default classifier
        out = CaptumTCAV(model, ["features"], classifier=classifier, save_path=str(save_path)).interpret(
            inputs, sets, target=0)
    scores = [float(out[f"{a.id}-{b.id}"]["features"]["sign_count"][0]) for a, b in sets]
    return scores[:runs], scores[runs:]


def test_logistic_regression_matches_sklearn():
    """The CAV classifier's objective, mean log-loss + l2 / 2 ||w||^2, is sklearn's LogisticRegression with
    C = 1 / (l2 * n); D > n as for layer activations."""
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, 50, generator=g, dtype=torch.float64) + 2.0
    y = (torch.rand(30, generator=g) < 0.5).double()
    weight, bias = logistic_regression(x, y, 0.01)
    reference = LogisticRegression(C=1 / (0.01 * 30), solver="newton-cholesky", tol=1e-12).fit(x.numpy(), y.numpy())
    torch.testing.assert_close(weight, torch.from_numpy(reference.coef_[0]), rtol=1e-5, atol=1e-6)
    assert float(bias) == pytest.approx(float(reference.intercept_[0]), rel=1e-5, abs=1e-6)


def test_tcav_scores_equal_captum_given_the_same_cavs(tmp_path):
    """captum.concept.TCAV scoring trixai's CAVs (a captum Classifier that returns them) gives exactly trixai's
    scores: same layer gradients, sign convention, score and run pairing; the same Student t-test p-value."""
    from captum.concept._utils.classifier import Classifier
    from scipy import stats

    runs = 3
    concept, randoms, inputs = _two_square_sets(0, runs)
    model = RedMinusGreen()
    ours = tcav(model, inputs, 0, concept, randoms, "high")
    acts = [layer_activations(model, images, "high") for images in (concept, *randoms)]
    cavs = {(0, i + 1): train_cav(acts[0], acts[i + 1], seed=i).direction for i in range(runs)}
    for j in range(runs):
        a, b = runs + 2 * j + 1, runs + 2 * j + 2  # captum ids of the j-th random pair
        cavs[(a, b)] = train_cav(acts[a], acts[b], seed=j).direction

    class TrixaiCAVs(Classifier):
        def __init__(self) -> None:
            self.ids = None

        def train_and_eval(self, dataloader, **kwargs):
            self.ids = tuple(sorted({int(v) for _, labels in dataloader for v in labels}))
            return {}

        def weights(self):  # row k: the CAV of classes()[k]; trixai's points to the first concept of the pair
            return torch.stack([cavs[self.ids], -cavs[self.ids]])

        def classes(self):
            return list(self.ids)

    concept_scores, null_scores = _captum_scores(model, inputs, concept, randoms, runs, tmp_path, TrixaiCAVs())
    def counts(scores):  # positive directional derivatives among the 40 inputs (captum returns float32 fractions)
        return [round(v * 40) for v in scores]

    assert counts(ours.scores) == counts(concept_scores) and counts(ours.random_scores) == counts(null_scores)
    assert 0.1 < ours.score_mean < 0.9  # not a trivially saturated case
    assert ours.p_value == pytest.approx(stats.ttest_ind(concept_scores, null_scores).pvalue, rel=1e-5)


def _captum_default_cav(a, b, seed):
    """captum's DefaultClassifier on a (concept id 0) vs b (id 1), fed as captum's train_cav feeds it, with Python's
    and numpy's generators seeded: (unit CAV of a, sklearn's held-out accuracy on captum's split)."""
    import random

    import numpy as np
    from captum.concept._utils.classifier import DefaultClassifier
    from torch.utils.data import DataLoader, TensorDataset

    x, y = torch.cat([a, b]), torch.cat([torch.zeros(len(a)), torch.ones(len(b))]).long()
    random.seed(seed)
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # captum's note on its in-memory default classifier
        classifier = DefaultClassifier()
    classifier.train_and_eval(DataLoader(TensorDataset(x, y), batch_size=len(x)))
    row = classifier.weights()[list(classifier.classes()).index(0)]
    train, test = split_indices(len(x), seed)
    lm = classifier.lm
    decision = x[test] @ lm.representation()[0] + lm.bias()[0]
    accuracy = float(((decision > 0).long() == y[test]).double().mean())
    return row / row.norm(), accuracy


def test_hinge_cavs_equal_captum_default_classifier(tmp_path):
    """The default CAV is captum's DefaultClassifier (SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3), hinge loss)
    on captum's split: with the same seed for Python's and numpy's generators the unit CAVs are equal, and captum's
    whole TCAV pipeline with those seeds gives trixai's scores exactly."""
    import random

    import numpy as np
    from captum.concept._utils.classifier import Classifier, DefaultClassifier

    runs = 3
    concept, randoms, inputs = _two_square_sets(0, runs)
    model = RedMinusGreen()
    acts = [layer_activations(model, images, "high") for images in (concept, *randoms)]
    for seed in range(runs):
        ours = train_cav(acts[0], acts[seed + 1], seed=seed)
        theirs, theirs_accuracy = _captum_default_cav(acts[0], acts[seed + 1], seed)
        # trixai's concept is label 1, captum's label 0: the SGD path is the exact mirror image
        torch.testing.assert_close(ours.direction, theirs, rtol=0, atol=0)
        assert ours.accuracy == theirs_accuracy
    # ids (captum's concept ids of a pair) -> the seed trixai gives that CAV: run i, random pair j
    seeds = {(0, i + 1): i for i in range(runs)} | {(runs + 2 * j + 1, runs + 2 * j + 2): j for j in range(runs)}

    class SeededDefault(Classifier):
        def __init__(self) -> None:
            self.inner = None

        def train_and_eval(self, dataloader, **kwargs):
            seed = seeds[tuple(sorted({int(v) for _, labels in dataloader for v in labels}))]
            random.seed(seed)
            np.random.seed(seed)
            self.inner = DefaultClassifier()
            return self.inner.train_and_eval(dataloader, **kwargs)

        def weights(self):
            return self.inner.weights()

        def classes(self):
            return self.inner.classes()

    result = tcav(model, inputs, 0, concept, randoms, "high")
    concept_scores, null_scores = _captum_scores(model, inputs, concept, randoms, runs, tmp_path, SeededDefault())
    assert [round(v * 40) for v in result.scores] == [round(v * 40) for v in concept_scores]
    assert [round(v * 40) for v in result.random_scores] == [round(v * 40) for v in null_scores]
    assert 0.1 < result.score_mean < 0.9 and result.cav_classifier == "hinge"


def test_bonferroni_hand_worked():
    """3 classes x 2 layers x 1 concept = 6 hypotheses: p = 0.004, 0.01, 0.2 -> 0.024, 0.06, min(1, 1.2) = 1;
    at alpha 0.05 the raw verdicts are yes, yes, no and the corrected ones yes, no, no."""
    m = bonferroni_hypotheses(3, n_layers=2, n_concepts=1)
    assert m == 6
    corrected = [bonferroni(p, m) for p in (0.004, 0.01, 0.2)]
    assert corrected == pytest.approx([0.024, 0.06, 1.0])
    assert [p < 0.05 for p in corrected] == [True, False, False]
    assert bonferroni(0.01, 1) == 0.01 and math.isnan(bonferroni(float("nan"), 6))
    with pytest.raises(TrixaiError, match="positive integer"):
        bonferroni_hypotheses(0)
    with pytest.raises(TrixaiError, match="n_hypotheses=0"):
        bonferroni(0.1, 0)
    # through tcav: the planted red square, p ~ 3e-4, stays significant for m = 7 and not for m = 1000
    g = torch.Generator().manual_seed(0)
    concept = _images(20, g)
    concept[:, 0, 2:6, 2:6] = 1.0
    randoms = [_images(20, g) for _ in range(15)]
    inputs = _images(30, g)
    for hypotheses, verdict in ((7, True), (1000, False)):
        result = tcav(RedMinusGreen(), inputs, 0, concept, randoms, "high", n_hypotheses=hypotheses)
        assert result.n_hypotheses == hypotheses and result.significant and result.alpha == 0.05
        assert result.p_value_bonferroni == pytest.approx(min(1.0, hypotheses * result.p_value))
        assert result.significant_bonferroni is verdict


@pytest.mark.parametrize("seed", [0, 1])
def test_tcav_agrees_with_captum_default_classifier(tmp_path, seed):
    """captum's default pipeline (its own 67/33 split, sklearn SGDClassifier hinge loss, alpha 0.01, on raw
    activations) on the same model, layer, concept and random sets. Both are estimates over random sets and
    train/test splits, and captum's SGD adds noise, so the mean concept scores must agree within 3 standard
    errors of their difference (from the per-run spreads of both; >= 1 / 40, one input of 40 flipping)."""
    runs = 8
    concept, randoms, inputs = _two_square_sets(seed, runs)
    model = RedMinusGreen()
    ours = tcav(model, inputs, 0, concept, randoms, "high")
    theirs, _ = _captum_scores(model, inputs, concept, randoms, runs, tmp_path, seed=seed)
    s, t = torch.tensor(ours.scores), torch.tensor(theirs)
    tolerance = max(3 * math.sqrt(float(s.var() / runs + t.var() / runs)), 1 / 40)
    assert abs(float(s.mean() - t.mean())) <= tolerance, (ours.scores, theirs, tolerance)
    # the planted red square: both saturate at 1.0 for every run
    g = torch.Generator().manual_seed(seed)
    red = _images(20, g)
    red[:, 0, 2:6, 2:6] = 1.0
    assert tcav(model, inputs, 0, red, randoms, "high").scores == [1.0] * runs
    assert _captum_scores(model, inputs, red, randoms, runs, tmp_path / "red", seed=seed)[0] == [1.0] * runs


def test_tcav_variants_are_named_options():
    g = torch.Generator().manual_seed(0)
    concept = _images(20, g)
    concept[:, 0, 2:6, 2:6] = 1.0
    randoms = [_images(20, g) for _ in range(6)]
    inputs = _images(20, g)
    legacy = tcav(RedMinusGreen(), inputs, 0, concept, randoms, "high", cav_classifier="logistic",
                  cav_fit="standardised", test="welch")  # trixai 0.1: logistic regression on standardised features
    assert legacy.cav_fit == "standardised" and legacy.t_test == "welch" and legacy.scores == [1.0, 1.0]
    assert legacy.cav_classifier == "logistic"
    # Student vs Welch on hand-picked samples (scipy as the reference)
    from scipy import stats

    a, b = [0.9, 0.8, 1.0], [0.5, 0.1, 0.9, 0.3]
    assert t_test(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=True).pvalue)
    assert t_test(a, b, "welch") == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert t_test([1.0, 1.0], [0.5, 0.5]) == 0.0 and t_test([1.0, 1.0], [1.0, 1.0]) == 1.0


def test_tcav_input_errors():
    model = RedMinusGreen()
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(TrixaiError, match=">= 6 random sets"):
        tcav(model, x, 0, x, [x] * 5, "high")
    with pytest.raises(TrixaiError, match="t_test='z'"):
        tcav(model, x, 0, x, [x] * 6, "high", test="z")
    with pytest.raises(TrixaiError, match="cav_fit='pca'"):
        train_cav(torch.zeros(4, 3), torch.ones(4, 3), fit="pca")
    with pytest.raises(TrixaiError, match="cav_classifier='svm'"):
        tcav(model, x, 0, x, [x] * 6, "high", cav_classifier="svm")
    with pytest.raises(TrixaiError, match="n_hypotheses=0"):
        tcav(model, x, 0, x, [x] * 6, "high", n_hypotheses=0)
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
    concept, randoms = ruler_sets(40, 32, n_random=15, seed=1)  # 5 runs
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
                       explainer=TCAV(**settings, max_points=16))
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
           "random_dir": str(tmp_path / "random"), "n_concept": 20, "n_runs": 2, "classes": ["red"]}
    metrics = explanation_suite(RedMinusGreen(), loader, cfg, tmp_path / "out").flat()
    report = json.loads((tmp_path / "out" / "explanations.json").read_text())
    assert report["concept"] == "concept" and report["n_random_sets"] == 6 and report["n_runs"] == 2
    assert report["variant"] == {"cav_classifier": "hinge", "cav_fit": "raw", "t_test": "student",
                                 "bonferroni_hypotheses": 1}
    row = report["results"][0]
    assert row["n_inputs"] == 8 and row["cav_accuracy_mean"] >= 0.9  # the red square is linearly separable
    assert metrics["xai/tcav/red"] == row["score_mean"] > 0.8 and row["score_mean"] > row["random_score_mean"]
    with pytest.raises(TrixaiError, match="does not exist"):
        explanation_suite(RedMinusGreen(), loader, {**cfg, "concept": str(tmp_path / "nope")}, tmp_path / "out")
