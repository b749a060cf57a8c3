"""The printed result table: clean and attacked columns, suite and profile rows."""

from __future__ import annotations

from trixai.tasks.results import results_table

META = {"timm_name": "efficientnet_b0", "config": {"dataset": {"_target_": "trixai.data.synthetic.SyntheticLesions"},
                                                   "objective": {"_target_": "trixai.training.objectives.TRADES"}}}


def _cells(table) -> dict[str, list[str]]:
    return {column.header: list(column.cells) for column in table.columns}


def test_attacked_run_has_a_column_named_after_the_attack():
    metrics = {"test": {"test/acc": 0.8, "test/rob_acc": 0.5, "test/bal_acc": 0.7},
               "eval_attack": {"attack": "pgd", "steps": 10, "eps": 2 / 255},
               "extra": {"xai/pointing_game": 0.6, "robust/pgd10/2_255/accuracy": 0.49, "robust/other": 1.0},
               "profile": {"params": 4016515}}
    columns = _cells(results_table(metrics, META))
    assert list(columns) == ["metric", "clean", "pgd-10 eps=2/255"]
    assert columns["metric"] == ["acc", "bal_acc", "xai/pointing_game", "robust/pgd10/2_255/accuracy",
                                 "profile/params"]
    assert columns["clean"][:2] == ["0.8000", "0.7000"] and columns["pgd-10 eps=2/255"][:2] == ["0.5000", "—"]


def test_a_run_without_attack_has_no_empty_robust_column():
    columns = _cells(results_table({"test": {"test/acc": 0.8480, "test/f1": 0.5}, "eval_attack": None}, META))
    assert list(columns) == ["metric", "clean"] and columns["clean"] == ["0.8480", "0.5000"]
