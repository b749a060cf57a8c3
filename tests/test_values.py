"""Config values given as one item or as a list: `eps=8/255` is one budget, `attacks=pgd10` one attack."""

import pytest
from omegaconf import OmegaConf

from trixai.core.errors import TrixaiError
from trixai.core.values import as_list, parse_eps


def test_one_item_or_a_list():
    assert as_list("test/cam_ssim") == ["test/cam_ssim"]
    assert as_list(0.5) == [0.5]
    assert as_list(OmegaConf.create({"a": ["pgd10", "fgsm"]}).a) == ["pgd10", "fgsm"]
    assert as_list(("a", "b")) == ["a", "b"]


def test_eps_from_fractions_and_numbers_one_or_many():
    assert parse_eps("8/255") == [8 / 255]
    assert parse_eps(0.0314) == [0.0314]
    assert parse_eps(OmegaConf.create({"e": ["2/255", 0.5, 1]}).e) == [2 / 255, 0.5, 1.0]


def test_bad_eps_names_the_value():
    with pytest.raises(TrixaiError, match=r"eps: '8/x' is not a number or a fraction like 8/255"):
        parse_eps(["2/255", "8/x"])
