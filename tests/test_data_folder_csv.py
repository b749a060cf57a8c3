"""Class-per-subfolder and CSV datasets, including DICOM files and the bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import make_csv_dataset, make_folder, write_csv, write_dicom

from trixai.core.errors import TrixaiError
from trixai.data.csv_table import CsvTable
from trixai.data.folder import ImageFolder
from trixai.data.images import BadImageError


def test_folder_stratified_split_with_dicom(tmp_path):
    root = make_folder(tmp_path / "data")
    write_dicom(root / "normal" / "scan.dcm", np.full((8, 8), 1000, np.uint16), window=(500.0, 100.0))
    (root / "normal" / "notes.txt").write_text("ignored: not an image")
    source = ImageFolder(root=root, image_size=8, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    bundle = source.load()
    assert bundle.info.class_names == ("benign", "malignant", "normal") and bundle.info.in_chans == 3
    counts = {s: bundle.stats["class_counts"][s] for s in ("train", "val", "test")}
    assert counts == {"train": [3, 2, 2], "val": [1, 1, 1], "test": [1, 1, 1]}  # every class in every split
    tables = source.tables()
    for split, table in tables.items():
        levels = [round(float(bundle.split(split)[i]["image"][0, 0, 0]) * 255) for i in range(len(table.paths))]
        expected = [255 if p.suffix == ".dcm" else 50 * int(table.targets[i]) + int(p.stem[3:])
                    for i, p in enumerate(table.paths)]
        assert levels == expected


def test_folder_with_split_folders_and_class_names(tmp_path):
    for split in ("train", "val", "test"):
        make_folder(tmp_path / split, {"b": 2, "a": 1})
    bundle = ImageFolder(root=tmp_path, image_size=8, class_names=["b", "a"], channels=1).load()
    assert bundle.info.class_names == ("b", "a") and bundle.info.in_chans == 1
    assert bundle.train.targets.tolist() == [0, 0, 1] and bundle.train[0]["image"].shape == (1, 8, 8)
    with pytest.raises(TrixaiError, match=r"folder 'b' in .* is not in dataset.class_names=\['a'\]"):
        ImageFolder(root=tmp_path, image_size=8, class_names=["a"])
    (tmp_path / "test").rename(tmp_path / "holdout")
    with pytest.raises(TrixaiError, match=r"has a train/ folder but no test/ folder"):
        ImageFolder(root=tmp_path, image_size=8).load()


def test_folder_bad_files_skip_or_stop(tmp_path, caplog):
    root = make_folder(tmp_path / "data", {"x": 4, "y": 4})
    (root / "y" / "img2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(BadImageError, match=r"cannot decode image .*y/img2.png"):
        ImageFolder(root=root, image_size=8).load()
    bundle = ImageFolder(root=root, image_size=8, skip_bad_files=True).load()
    assert sum(bundle.stats["skipped"].values()) == 1 and sum(bundle.stats["num_samples"].values()) == 7
    assert "img2.png" in caplog.text


def test_csv_multiclass_with_groups(tmp_path):
    root = make_csv_dataset(tmp_path)
    source = CsvTable(root=root, image_size=8, group_column="patient", seed=1)
    tables = source.tables()
    patients = {s: set(t.groups) for s, t in tables.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    bundle = source.load()
    assert bundle.info.class_names == ("cat", "dog") and bundle.info.task == "multiclass"
    for split in ("train", "val", "test"):
        index = [int(p.stem) for p in tables[split].paths]
        assert bundle.split(split).targets.tolist() == [i % 2 for i in index]
        assert [round(float(bundle.split(split)[k]["image"][0, 0, 0]) * 255) for k in range(len(index))] == \
            [20 * i for i in index]


def test_csv_multilabel_modes_and_split_column(tmp_path):
    root = make_csv_dataset(tmp_path)
    separated = CsvTable(root=root, image_size=8, label_columns=["findings"], label_separator="|",
                         split_column="split").load()
    assert separated.info.task == "multilabel" and separated.info.class_names == ("a", "b", "c")
    # split column: train rows are i % 4 in (0, 1) -> i = 0, 1, 4, 5 with findings "", "a", "", "a"
    assert separated.train.targets.tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]]
    assert separated.val.targets.tolist() == [[1, 1, 0], [1, 1, 0]]
    columns = CsvTable(root=root, image_size=8, label_columns=["a", "b"], split_column="split").load()
    assert columns.info.class_names == ("a", "b") and columns.test.targets.tolist() == [[1, 0], [1, 0]]


def test_csv_errors(tmp_path):
    root = make_csv_dataset(tmp_path)
    with pytest.raises(TrixaiError, match=r"labels.csv has no column 'diagnosis' \(required: \['image', 'diagnosis'\]"):
        CsvTable(root=root, image_size=8, label_columns=["diagnosis"])
    with pytest.raises(TrixaiError, match=r"labels.csv line 3, column 'label': unexpected value 'dog'; expected one of "
                                          r"\['cat', 'bird'\]"):
        CsvTable(root=root, image_size=8, class_names=["cat", "bird"]).tables()
    with pytest.raises(TrixaiError, match=r"labels.csv line 2, column 'label': unexpected value 'cat'; "
                                          r"expected 0 or 1"):
        CsvTable(root=root, image_size=8, label_columns=["label", "a"]).tables()
    rows = [[f"imgs/{i}.png", "cat", "train" if i < 6 else "val"] for i in range(8)]
    write_csv(root / "no_test.csv", ["image", "label", "split"], rows)
    with pytest.raises(TrixaiError, match=r"dataset csv: the test split is empty \(rows from .*no_test.csv\)"):
        CsvTable(root=root, csv="no_test.csv", image_size=8, split_column="split").load()
    write_csv(root / "missing.csv", ["image", "label"], [["imgs/0.png", "cat"], ["imgs/404.png", "dog"]] * 3)
    with pytest.raises(BadImageError, match=r"image file .*imgs/404.png \(listed in .*missing.csv\) does not exist"):
        CsvTable(root=root, csv="missing.csv", image_size=8, fractions={"train": 0.5, "val": 0.25,
                                                                        "test": 0.25}).load()
