"""CheXpert: 1/0/-1/blank conventions, uncertainty and blank policies, frontal filter, patient-wise splits."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import CHEXPERT_COLUMNS, make_chexpert, write_csv

from trixai.core.errors import TrixaiError
from trixai.data.chexpert import CheXpert

# patient00002/study2/view1_frontal: Atelectasis -1, Cardiomegaly 1, Edema 0, Consolidation and Effusion blank.
ROW = "patient00002/study2/view1_frontal.jpg"


def _row(source: CheXpert, suffix: str = ROW):
    for table in source.tables().values():
        for i, path in enumerate(table.paths):
            if path.as_posix().endswith(suffix):
                mask = None if table.label_masks is None else table.label_masks[i].tolist()
                return table.targets[i].tolist(), mask
    raise AssertionError(f"{suffix} not found")


@pytest.mark.parametrize(("uncertain", "blank", "target", "mask"), [
    ("u_ignore", "zeros", [0, 1, 0, 0, 0], [0, 1, 1, 1, 1]),
    ("u_zeros", "zeros", [0, 1, 0, 0, 0], None),
    ("u_ones", "zeros", [1, 1, 0, 0, 0], None),
    ("u_ignore", "ignore", [0, 1, 0, 0, 0], [0, 1, 0, 1, 0]),
    ("u_ones", "ignore", [1, 1, 0, 0, 0], [1, 1, 0, 1, 0]),
])
def test_policies(tmp_path, uncertain, blank, target, mask):
    source = CheXpert(root=make_chexpert(tmp_path), image_size=16, uncertain=uncertain, blank=blank, val_fraction=0.3)
    assert source.class_names() == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    assert _row(source) == (target, mask)


def test_bundle_splits_masks_and_images(tmp_path):
    bundle = CheXpert(root=make_chexpert(tmp_path), image_size=16, val_fraction=0.3, cache_dir=tmp_path / "c").load()
    assert bundle.info.task == "multilabel" and bundle.info.in_chans == 1
    assert bundle.test.targets.tolist() == [[0, 1, 0, 0, 0], [1, 0, 0, 1, 1]]  # valid.csv is the test split
    assert bundle.test.label_masks.tolist() == [[1] * 5, [1] * 5]
    sample = bundle.test[1]
    assert sample["image"].shape == (1, 16, 16) and sample["label_mask"].dtype.is_floating_point
    assert round(float(sample["image"][0, 3, 3]) * 255) == 210  # 10th image written: level 30 + 9 * 20
    assert len(bundle.train) + len(bundle.val) == 8
    assert bundle.stats["labelled_counts"]["test"] == [2, 2, 2, 2, 2]


def test_patient_wise_split_and_frontal_only(tmp_path):
    root = make_chexpert(tmp_path)
    tables = CheXpert(root=root, image_size=16, val_fraction=0.5, seed=4).tables()
    patients = {s: set(t.groups) for s, t in tables.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    split_of_p2 = {s for s, t in tables.items() for g in t.groups if g == "patient00002"}
    assert len(split_of_p2) == 1  # all three images of patient00002 together
    assert patients["test"] == {"patient64541", "patient64542"}
    frontal = CheXpert(root=root, image_size=16, frontal_only=True, val_fraction=0.5, seed=4).tables()
    assert sum(len(t.paths) for s, t in frontal.items() if s != "test") == 7
    assert not any("lateral" in p.name for t in frontal.values() for p in t.paths)


def test_root_may_be_the_parent_folder(tmp_path):
    make_chexpert(tmp_path)
    from_parent = CheXpert(root=tmp_path / "CheXpert-v1.0-small", image_size=16).tables()
    # paths in the CSV start with the dataset folder name; root may also be the folder that holds it
    (tmp_path / "CheXpert-v1.0-small" / "train.csv").rename(tmp_path / "train.csv")
    (tmp_path / "CheXpert-v1.0-small" / "valid.csv").rename(tmp_path / "valid.csv")
    from_holder = CheXpert(root=tmp_path, image_size=16).tables()
    assert from_parent["test"].paths == from_holder["test"].paths
    assert all(p.is_file() for p in from_holder["test"].paths)


def test_errors(tmp_path):
    root = make_chexpert(tmp_path)
    rows = [["CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg", "Male", "50", "Frontal", "AP",
             *[""] * 14]]
    rows[0][CHEXPERT_COLUMNS.index("Edema")] = "2.0"
    write_csv(root / "valid.csv", CHEXPERT_COLUMNS, rows)
    with pytest.raises(TrixaiError, match=r"valid.csv line 2, column 'Edema': unexpected value '2.0'; expected 1.0, "
                                          r"0.0, -1.0 or blank"):
        CheXpert(root=root, image_size=16).tables()
    write_csv(root / "valid.csv", [c for c in CHEXPERT_COLUMNS if c != "Edema"], [r[:10] + r[11:] for r in rows])
    with pytest.raises(TrixaiError, match=r"valid.csv has no column 'Edema'"):
        CheXpert(root=root, image_size=16).tables()
    with pytest.raises(TrixaiError, match=r"dataset.uncertain='u_maybe' is not one of \['u_ignore', 'u_zeros', "
                                          r"'u_ones'\]"):
        CheXpert(root=root, image_size=16, uncertain="u_maybe")
    with pytest.raises(TrixaiError, match=r"dataset.labels=\['Effusion'\]: each must be one of \['No Finding'"):
        CheXpert(root=root, image_size=16, labels=["Effusion"])
    with pytest.raises(TrixaiError, match=r"CheXpert train.csv not found: expected the file .*train/train.csv"):
        CheXpert(root=root / "train", image_size=16).tables()
    elsewhere = tmp_path / "elsewhere" / "csvs"
    elsewhere.mkdir(parents=True)
    (root / "train.csv").rename(elsewhere / "train.csv")
    with pytest.raises(TrixaiError, match=r"train.csv: the first image 'CheXpert-v1.0-small/train/patient00001/study1/"
                                          r"view1_frontal.jpg' is neither .* dataset.root must be the folder holding"):
        CheXpert(root=elsewhere, image_size=16).tables()


def test_label_subset_order_is_the_class_order(tmp_path):
    source = CheXpert(root=make_chexpert(tmp_path), image_size=16, labels=["Edema", "No Finding"],
                      uncertain="u_ones")
    tables = source.tables()
    assert source.class_names() == ("Edema", "No Finding")
    first = tables["test"].targets
    assert first.tolist() == [[0, 0], [1, 0]]
    assert np.isin(np.concatenate([t.targets for t in tables.values()]), [0, 1]).all()
