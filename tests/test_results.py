"""The printed result tables: clean and attacked columns of the test metrics, then suite and profile tables."""

from __future__ import annotations

from trixai.render.console import results_tables

META = {"timm_name": "efficientnet_b0", "config": {"dataset": {"_target_": "trixai.data.synthetic.SyntheticLesions"},
                                                   "objective": {"_target_": "trixai.training.objectives.TRADES"}}}


def _cells(table) -> dict[str, list[str]]:
    return {column.header: list(column.cells) for column in table.columns}


def test_attacked_run_has_a_column_named_after_the_attack():
    metrics = {"test": {"acc": 0.8, "rob_acc": 0.5, "bal_acc": 0.7},
               "eval_attack": {"name": "pgd10", "eps": 2 / 255, "settings": {"steps": 10}},
               "extra": {"xai/pointing_game": 0.6, "robust/pgd10/2_255/accuracy": 0.5,
                         "robust/fgsm/2_255/accuracy": 0.55, "robust/other": 1.0},
               "profile": {"params": 4016515}}
    test, suites, profile = (_cells(table) for table in results_tables(metrics, META))
    assert list(test) == ["metric", "clean", "pgd10, ε = 2/255"]
    assert test["metric"] == ["acc", "bal_acc"]
    # the evaluation attack's suite entry is the attacked column already: printed once
    assert suites["metric"] == ["xai/pointing_game", "robust/fgsm/2_255/accuracy"]
    assert suites["value"] == ["0.6000", "0.5500"]
    assert profile == {"metric": ["profile/params"], "value": ["4\u2009016\u2009515"]}  # thin spaces between thousands
    assert test["clean"] == ["0.8000", "0.7000"] and test["pgd10, ε = 2/255"] == ["0.5000", "—"]


def test_a_run_without_attack_has_no_empty_robust_column():
    tables = results_tables({"test": {"acc": 0.8480, "f1": 0.5}, "eval_attack": None}, META)
    assert len(tables) == 1  # no suite or profile rows: no tables for them
    columns = _cells(tables[0])
    assert list(columns) == ["metric", "clean"] and columns["clean"] == ["0.8480", "0.5000"]


def test_bootstrap_intervals_are_printed_beside_the_values():
    metrics = {"test": {"acc": 0.8, "acc_ci95": [0.75, 0.85], "rob_acc": 0.5, "rob_acc_ci95": [0.4412, 0.5588]},
               "eval_attack": {"name": "pgd10", "eps": 2 / 255, "settings": {}},
               "extra": {"robust/fgsm/2_255/accuracy": 0.55, "robust/fgsm/2_255/accuracy_ci95": [0.5, 0.6]}}
    test, suites = (_cells(table) for table in results_tables(metrics, META))
    assert test["clean"] == ["0.8000 [0.750, 0.850]"] and test["pgd10, ε = 2/255"] == ["0.5000 [0.441, 0.559]"]
    assert suites == {"metric": ["robust/fgsm/2_255/accuracy"], "value": ["0.5500 [0.500, 0.600]"]}
