"""`trixai-train dataset=<each> dataset.root=<fixture>` runs a fast_dev_run and stores the class order."""

from __future__ import annotations

import json

import pytest
from data_fixtures import (
    make_chexpert,
    make_csv_dataset,
    make_folder,
    make_ham10000,
    make_isic2018,
    make_medmnist,
    make_nih,
)
from hydra import compose, initialize_config_module

from trixai.tasks.train import train

ISIC = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
CASES = {  # config name -> (fixture builder, class order, in_chans)
    "isic2018": (lambda tmp: make_isic2018(tmp / "isic"), ISIC, 3),
    "ham10000": (lambda tmp: make_ham10000(tmp / "ham"), ISIC, 3),
    "chexpert": (make_chexpert, ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"], 1),
    "nih_cxr14": (lambda tmp: make_nih(tmp / "nih"), None, 1),
    "medmnist": (lambda tmp: make_medmnist(tmp / "dermamnist.npz", rgb=True), ["0", "1", "2"], 3),
    "folder": (lambda tmp: make_folder(tmp / "folder"), ["benign", "malignant", "normal"], 3),
    "csv": (lambda tmp: make_csv_dataset(tmp / "csv"), ["cat", "dog"], 3),
}


@pytest.mark.parametrize("dataset", list(CASES))
def test_fast_dev_run(tmp_path, dataset):
    build, class_names, in_chans = CASES[dataset]
    root = build(tmp_path)
    run_dir = tmp_path / "run"
    overrides = [f"dataset={dataset}", f"dataset.root={root}", "model.name=test_efficientnet", "model.resolution=32",
                 "trainer.fast_dev_run=true", "logger=none", "attack=none", "data.batch_size=4",
                 "data.eval_batch_size=4", "robustness=none", "explainer=none", "profile=null",  # data, not suites
                 f"paths.root_dir={tmp_path}", f"paths.output_dir={run_dir}",
                 f"paths.data_dir={tmp_path / 'cache'}"]
    with initialize_config_module(config_module="trixai.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    metrics = train(cfg)
    meta = json.loads((run_dir / "model.json").read_text())
    if dataset == "nih_cxr14":
        assert meta["class_names"][:3] == ["Atelectasis", "Cardiomegaly", "Effusion"] and len(meta["class_names"]) == 14
    else:
        assert meta["class_names"] == class_names
    assert meta["in_chans"] == in_chans and meta["input_size"] == 32
    assert metrics["test"] and (run_dir / "model.safetensors").is_file()
    assert any((tmp_path / "cache").iterdir())  # decoded once into the shared cache
