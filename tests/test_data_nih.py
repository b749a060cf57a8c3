"""NIH ChestX-ray14: Finding Labels, official lists, patient-wise validation, bounding boxes as masks."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import NIH_ENTRIES, NIH_HEADER, make_nih

from trixai.core.errors import TrixaiError
from trixai.data.labels import NIH_FINDINGS as FINDINGS
from trixai.data.nih import NIHChestXray14, read_boxes


def test_labels_lists_and_boxes(tmp_path):
    bundle = NIHChestXray14(root=make_nih(tmp_path), image_size=16, val_fraction=0.3, cache_dir=tmp_path / "c").load()
    assert bundle.info.class_names == FINDINGS and bundle.info.task == "multilabel" and bundle.info.in_chans == 1
    test = bundle.test  # test_list.txt order: 00000006_000, 00000007_000, 00000007_001
    expected = np.zeros((3, 14), np.float32)
    expected[0, FINDINGS.index("Effusion")] = 1
    expected[1, [FINDINGS.index(f) for f in ("Atelectasis", "Effusion", "Pneumothorax")]] = 1
    expected[2, FINDINGS.index("Pleural_Thickening")] = 1
    assert test.targets.tolist() == expected.tolist()
    assert [round(float(test[i]["image"][0, 5, 5]) * 255) for i in range(3)] == [140, 160, 180]
    assert test.has_masks.tolist() == [True, True, False]
    masks = [test[i]["mask"].numpy() for i in range(3)]
    assert all(m.shape == (14, 16, 16) and m.dtype == np.uint8 for m in masks)
    # 64 px images -> 16 px: Effusion (16, 32, 16, 8) -> columns 4..8, rows 8..10
    want = np.zeros((14, 16, 16), np.uint8)
    want[2, 8:10, 4:8] = 1
    assert np.array_equal(masks[0], want)
    want = np.zeros((14, 16, 16), np.uint8)
    want[0, 0:2, 0:2] = 1  # Atelectasis (0, 0, 8, 8)
    want[2, 12:16, 8:16] = 1  # Effusion (32, 48, 32, 16)
    assert np.array_equal(masks[1], want)
    assert masks[2].sum() == 0 and test[2]["has_mask"] is False
    assert bundle.stats["boxes"]["test"] == 3
    assert bundle.stats["boxes"].get("train", 0) + bundle.stats["boxes"].get("val", 0) == 1  # the Infiltrate box


def test_no_finding_infiltrate_spelling_and_patient_split(tmp_path):
    source = NIHChestXray14(root=make_nih(tmp_path), image_size=16, val_fraction=0.3, seed=2)
    tables = source.tables()
    patients = {s: set(t.groups) for s, t in tables.items()}
    assert not (patients["train"] & patients["val"] or patients["train"] & patients["test"]
                or patients["val"] & patients["test"])
    assert patients["test"] == {"6", "7"} and patients["train"] | patients["val"] == {"1", "2", "3", "4", "5"}
    rows = {p.name: (t.targets[i], t.boxes[i]) for t in tables.values() for i, p in enumerate(t.paths)}
    assert rows["00000002_000.png"][0].sum() == 0  # No Finding: all zeros
    target, boxes = rows["00000003_000.png"]
    assert np.flatnonzero(target).tolist() == [FINDINGS.index("Infiltration"), FINDINGS.index("Hernia")]
    assert boxes == [(FINDINGS.index("Infiltration"), (0.0, 0.0, 64.0, 64.0))]
    pa = NIHChestXray14(root=tmp_path, image_size=16, view_positions=["PA"], val_fraction=0.3).tables()
    assert sum(len(t.paths) for t in pa.values()) == sum(view == "PA" for *_, view in NIH_ENTRIES) == 6


def test_without_box_file_there_are_no_masks(tmp_path):
    bundle = NIHChestXray14(root=make_nih(tmp_path, boxes=False), image_size=16, val_fraction=0.3).load()
    assert "mask" not in bundle.test[0] and "boxes" not in bundle.stats
    with pytest.raises(TrixaiError, match=r"NIH bounding-box list not found: expected the file .*my_boxes.csv"):
        NIHChestXray14(root=tmp_path, image_size=16, bbox_file="my_boxes.csv").tables()


def test_errors(tmp_path):
    root = make_nih(tmp_path)
    entry = (root / "Data_Entry_2017.csv").read_text().replace("Mass|Nodule", "Mass|Covid")
    (root / "Data_Entry_2017.csv").write_text(entry)
    with pytest.raises(TrixaiError, match=r"Data_Entry_2017.csv line 6, column 'Finding Labels': unexpected value "
                                          r"'Covid'; expected 'No Finding' or '\|'-separated names"):
        NIHChestXray14(root=root, image_size=16).tables()
    (root / "Data_Entry_2017.csv").write_text(NIH_HEADER.replace("Patient ID", "Patient") + "\n")
    with pytest.raises(TrixaiError, match=r"Data_Entry_2017.csv has no column 'Patient ID'"):
        NIHChestXray14(root=root, image_size=16).tables()
    make_nih(tmp_path)
    with open(root / "test_list.txt", "a") as handle:
        handle.write("99999999_000.png\n")
    with pytest.raises(TrixaiError, match=r"test_list.txt: image '99999999_000.png' has no row in .*Data_Entry_2017"):
        NIHChestXray14(root=root, image_size=16).tables()
    make_nih(tmp_path)
    (root / "Data_Entry_2017.csv").rename(root / "Data_Entry_2017_v2020.csv")
    assert len(NIHChestXray14(root=root, image_size=16).tables()["test"].paths) == 3  # the 2020 file name
    (root / "Data_Entry_2017_v2020.csv").unlink()
    with pytest.raises(TrixaiError, match=r"NIH data entry table not found: expected .*Data_Entry_2017.csv or "
                                          r".*Data_Entry_2017_v2020.csv"):
        NIHChestXray14(root=root, image_size=16).tables()
    make_nih(tmp_path)
    (root / "test_list.txt").unlink()
    with pytest.raises(TrixaiError, match=r"official NIH list test_list.txt not found"):
        NIHChestXray14(root=root, image_size=16).tables()


def test_box_file_header_and_values(tmp_path):
    path = tmp_path / "BBox_List_2017.csv"
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
                    "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,"
                    "79.1864406779661,,,\n")
    boxes = read_boxes(path)
    assert boxes == {"00013118_008.png": [(0, (225.084745762712, 547.019216763771, 86.7796610169491,
                                                79.1864406779661))]}
    path.write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n00013118_008.png,Lesion,1,2,3,4,,,\n")
    with pytest.raises(TrixaiError, match=r"line 2, column 'Finding Label': unexpected value 'Lesion'"):
        read_boxes(path)
