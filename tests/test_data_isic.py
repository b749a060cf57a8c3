"""ISIC 2018 Task 3 and HAM10000 in their official layouts."""

from __future__ import annotations

import pytest
from data_fixtures import ISIC_TRAIN, make_ham10000, make_isic2018, write_csv, write_image

from trixai.core.errors import TrixaiError
from trixai.data.ham10000 import HAM10000
from trixai.data.images import BadImageError
from trixai.data.isic import ISIC2018

CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")


def _levels(dataset) -> list[int]:
    return [round(float(dataset[i]["image"][0, 0, 0]) * 255) for i in range(len(dataset))]


def test_isic_official_splits(tmp_path):
    bundle = ISIC2018(root=make_isic2018(tmp_path / "isic"), image_size=16, cache_dir=tmp_path / "cache").load()
    assert bundle.info.class_names == CLASSES and bundle.info.task == "multiclass" and bundle.info.in_chans == 3
    assert bundle.train.targets.tolist() == [1, 1, 0, 4, 4, 2, 5, 6, 3, 0]
    assert bundle.val.targets.tolist() == [1, 0] and bundle.test.targets.tolist() == [2, 1]
    assert _levels(bundle.train) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]  # each row got its own file
    assert _levels(bundle.test) == [130, 140]
    sample = bundle.train[0]
    assert sample["image"].shape == (3, 16, 16) and sample["target"].dtype.is_floating_point is False
    assert bundle.stats["class_counts"]["train"] == [2, 2, 1, 1, 2, 1, 1]
    assert bundle.stats["num_samples"] == {"train": 10, "val": 2, "test": 2}


def test_isic_as_grayscale(tmp_path):
    bundle = ISIC2018(root=make_isic2018(tmp_path / "isic"), image_size=8, channels=1).load()
    assert bundle.info.in_chans == 1 and bundle.val[1]["image"].shape == (1, 8, 8)
    assert _levels(bundle.val) == [110, 120]


def test_isic_lesion_resplit_keeps_lesions_together(tmp_path):
    source = ISIC2018(root=make_isic2018(tmp_path / "isic"), image_size=16, split="lesion", val_fraction=0.3,
                      cache_dir=None)
    tables = source.tables()
    lesions = {split: set(tables[split].groups) for split in ("train", "val")}
    assert not lesions["train"] & lesions["val"]
    assert lesions["train"] | lesions["val"] == {lesion for _, _, lesion in ISIC_TRAIN}
    assert len(lesions["val"]) == 2  # 30% of 7 lesions, rounded
    assert [p.stem for p in tables["test"].paths] == ["ISIC_0034524", "ISIC_0034525"]
    bundle = source.load()
    assert len(bundle.train) + len(bundle.val) == 10


def test_isic_errors(tmp_path):
    root = make_isic2018(tmp_path / "isic")
    truth = root / "ISIC2018_Task3_Validation_GroundTruth" / "ISIC2018_Task3_Validation_GroundTruth.csv"
    write_csv(truth, ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"],
              [["ISIC_0034321", "1.0", "1.0", "0.0", "0.0", "0.0", "0.0", "0.0"]])
    with pytest.raises(TrixaiError, match=r"line 2: \{'MEL': 1.0, 'NV': 1.0, .*\} is not one-hot"):
        ISIC2018(root=root, image_size=16).load()
    write_csv(truth, ["image", "MEL", "NV"], [["ISIC_0034321", "1.0", "0.0"]])
    with pytest.raises(TrixaiError, match=r"has no column 'BCC' \(required: \['image', 'MEL', 'NV', 'BCC'"):
        ISIC2018(root=root, image_size=16).load()
    truth.unlink()
    with pytest.raises(TrixaiError, match=r"ISIC2018_Task3_Validation_GroundTruth.csv not found: expected .*"):
        ISIC2018(root=root, image_size=16).load()
    with pytest.raises(TrixaiError, match=r"dataset.split='random' is not one of \['official', 'lesion'\]"):
        ISIC2018(root=root, image_size=16, split="random")
    with pytest.raises(TrixaiError, match=r"dataset.root=.*nowhere does not exist"):
        ISIC2018(root=tmp_path / "nowhere", image_size=16)


def test_isic_missing_and_corrupt_images(tmp_path, caplog):
    root = make_isic2018(tmp_path / "isic")
    (root / "ISIC2018_Task3_Training_Input" / "ISIC_0024308.jpg").unlink()
    (root / "ISIC2018_Task3_Training_Input" / "ISIC_0024311.jpg").write_bytes(b"garbage")
    with pytest.raises(BadImageError, match=r"image file .*ISIC_0024308.jpg \(listed in .*Training_GroundTruth.csv\) "
                                            r"does not exist; set dataset.skip_bad_files=true"):
        ISIC2018(root=root, image_size=16, cache_dir=tmp_path / "cache").load()
    (root / "ISIC2018_Task3_Training_Input" / "ISIC_0024308.jpg").write_bytes(b"")
    with pytest.raises(BadImageError, match=r"cannot decode image .*ISIC_0024308.jpg"):
        ISIC2018(root=root, image_size=16, cache_dir=tmp_path / "cache").load()
    bundle = ISIC2018(root=root, image_size=16, cache_dir=tmp_path / "cache", skip_bad_files=True).load()
    assert bundle.stats["skipped"] == {"train": 2, "val": 0, "test": 0}
    assert bundle.train.targets.tolist() == [1, 1, 4, 4, 5, 6, 3, 0]  # rows 3 (MEL) and 6 (BCC) dropped
    assert "skipped 2 unreadable or missing files" in caplog.text
    with pytest.raises(BadImageError, match=r"\(2 bad files in the cache\); set dataset.skip_bad_files=true"):
        ISIC2018(root=root, image_size=16, cache_dir=tmp_path / "cache").load()


def test_ham10000_lesion_split(tmp_path):
    source = HAM10000(root=make_ham10000(tmp_path / "ham"), image_size=16, seed=1, cache_dir=None)
    tables = source.tables()
    lesions = {s: set(t.groups) for s, t in tables.items()}
    assert not (lesions["train"] & lesions["val"] or lesions["train"] & lesions["test"]
                or lesions["val"] & lesions["test"])
    bundle = source.load()
    assert bundle.info.class_names == CLASSES
    images = {p.stem: i for i, p in enumerate(p for _, t in tables.items() for p in t.paths)}
    assert len(images) == 10 and sum(len(bundle.split(s)) for s in ("train", "val", "test")) == 10
    expected = {image: CLASSES.index(label) for image, label, _ in ISIC_TRAIN}
    for split in ("train", "val", "test"):
        assert [expected[p.stem] for p in tables[split].paths] == bundle.split(split).targets.tolist()
    level = {image: 20 * (i + 1) for i, (image, _, _) in enumerate(ISIC_TRAIN)}
    assert _levels(bundle.test) == [level[p.stem] for p in tables["test"].paths]


def test_ham10000_unknown_dx(tmp_path):
    root = make_ham10000(tmp_path / "ham")
    write_image(root / "HAM10000_images_part_1" / "ISIC_9.jpg", 5)
    write_csv(root / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
              [["HAM_1", "ISIC_9", "melanoma", "histo", "50", "male", "back"]])
    with pytest.raises(TrixaiError, match=r"HAM10000_metadata.csv line 2, column 'dx': unexpected value 'melanoma'; "
                                          r"expected one of \['akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc'\]"):
        HAM10000(root=root, image_size=16).load()
