"""Tiny dataset trees in the exact official layouts (real file names, column names and value conventions).

Every image is a flat gray level so tests can check which file ended up in which row.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

ISIC_COLUMNS = ["image", "MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                    "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
                    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices"]
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")


def write_image(path: Path, level: int, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> Path:
    """A flat image of gray ``level``; ``size`` is (width, height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (level,) * 3 if mode == "RGB" else level).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def one_hot(label: str) -> list[str]:
    return ["1.0" if c == label else "0.0" for c in ISIC_COLUMNS[1:]]


# ISIC 2018 Task 3: (image id, class, lesion id) for the training set; 2 validation and 2 test images.
ISIC_TRAIN = [("ISIC_0024306", "NV", "HAM_0000550"), ("ISIC_0024307", "NV", "HAM_0000550"),
              ("ISIC_0024308", "MEL", "HAM_0002730"), ("ISIC_0024309", "BKL", "HAM_0000118"),
              ("ISIC_0024310", "BKL", "HAM_0000118"), ("ISIC_0024311", "BCC", "HAM_0004000"),
              ("ISIC_0024312", "DF", "HAM_0001111"), ("ISIC_0024313", "VASC", "HAM_0003333"),
              ("ISIC_0024314", "AKIEC", "HAM_0005555"), ("ISIC_0024315", "MEL", "HAM_0006666")]
ISIC_VAL = [("ISIC_0034321", "NV"), ("ISIC_0034322", "MEL")]
ISIC_TEST = [("ISIC_0034524", "BCC"), ("ISIC_0034525", "NV")]


def make_isic2018(root: Path) -> Path:
    prefix = "ISIC2018_Task3_"
    level = 10
    for part, rows in (("Training", ISIC_TRAIN), ("Validation", ISIC_VAL), ("Test", ISIC_TEST)):
        for row in rows:
            write_image(root / f"{prefix}{part}_Input" / f"{row[0]}.jpg", level)
            level += 10
        folder = root / f"{prefix}{part}_GroundTruth"
        write_csv(folder / f"{prefix}{part}_GroundTruth.csv", ISIC_COLUMNS, [[r[0], *one_hot(r[1])] for r in rows])
    write_csv(root / f"{prefix}Training_GroundTruth" / f"{prefix}Training_LesionGroupings.csv",
              ["image", "lesion_id", "diagnosis_confirm_type"],
              [[image, lesion, "histopathology"] for image, _, lesion in ISIC_TRAIN])
    (root / f"{prefix}Training_Input" / "ATTRIBUTION.txt").write_text("official zips ship this file\n")
    return root


def make_ham10000(root: Path) -> Path:
    rows = []
    for i, (image, label, lesion) in enumerate(ISIC_TRAIN):
        part = 1 if i < 5 else 2
        write_image(root / f"HAM10000_images_part_{part}" / f"{image}.jpg", 20 * (i + 1))
        rows.append([lesion, image, label.lower(), "histo", "80.0", "male", "scalp"])
    write_csv(root / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"],
              rows)
    return root


# CheXpert: (patient, study, view, Frontal/Lateral, {observation: raw value}); others blank.
CHEXPERT_TRAIN = [
    ("patient00001", 1, "view1_frontal", "Frontal", {"No Finding": "1.0"}),
    ("patient00002", 2, "view1_frontal", "Frontal", {"Atelectasis": "-1.0", "Cardiomegaly": "1.0", "Edema": "0.0"}),
    ("patient00002", 1, "view1_frontal", "Frontal", {"Pleural Effusion": "1.0", "Consolidation": "-1.0"}),
    ("patient00002", 1, "view2_lateral", "Lateral", {"Pleural Effusion": "1.0"}),
    ("patient00003", 1, "view1_frontal", "Frontal", {"Edema": "1.0", "Atelectasis": "0.0"}),
    ("patient00004", 1, "view1_frontal", "Frontal", {"Cardiomegaly": "-1.0"}),
    ("patient00005", 1, "view1_frontal", "Frontal", {"Consolidation": "1.0", "Atelectasis": "1.0"}),
    ("patient00006", 1, "view1_frontal", "Frontal", {"Edema": "-1.0"}),
]
CHEXPERT_VALID = [
    ("patient64541", 1, "view1_frontal", "Frontal", {"Cardiomegaly": "1.0", "Edema": "0.0", "Atelectasis": "0.0",
                                                     "Consolidation": "0.0", "Pleural Effusion": "0.0"}),
    ("patient64542", 1, "view1_frontal", "Frontal", {"Cardiomegaly": "0.0", "Edema": "1.0", "Atelectasis": "1.0",
                                                     "Consolidation": "0.0", "Pleural Effusion": "1.0"}),
]


def make_chexpert(parent: Path, folder: str = "CheXpert-v1.0-small") -> Path:
    root = parent / folder
    level = 30
    for name, rows in (("train", CHEXPERT_TRAIN), ("valid", CHEXPERT_VALID)):
        table = []
        for patient, study, view, frontal, values in rows:
            rel = f"{folder}/{name}/{patient}/study{study}/{view}.jpg"
            write_image(parent / rel, level, size=(32, 40), mode="L")
            level += 20
            table.append([rel, "Female", "68", frontal, "AP" if frontal == "Frontal" else "",
                          *[values.get(c, "") for c in CHEXPERT_COLUMNS[5:]]])
        write_csv(root / f"{name}.csv", CHEXPERT_COLUMNS, table)
    return root


# NIH ChestX-ray14: (image, findings, patient id, view); images are 64 x 64 PNGs (boxes scaled accordingly).
NIH_ENTRIES = [
    ("00000001_000.png", "Cardiomegaly", 1, "PA"), ("00000001_001.png", "Cardiomegaly|Emphysema", 1, "PA"),
    ("00000002_000.png", "No Finding", 2, "PA"), ("00000003_000.png", "Hernia|Infiltration", 3, "AP"),
    ("00000004_000.png", "Mass|Nodule", 4, "PA"), ("00000005_000.png", "No Finding", 5, "AP"),
    ("00000006_000.png", "Effusion", 6, "PA"), ("00000007_000.png", "Atelectasis|Effusion|Pneumothorax", 7, "PA"),
    ("00000007_001.png", "Pleural_Thickening", 7, "AP"),
]
NIH_TEST = ["00000006_000.png", "00000007_000.png", "00000007_001.png"]
NIH_BOXES = [("00000006_000.png", "Effusion", 16, 32, 16, 8), ("00000007_000.png", "Atelectasis", 0, 0, 8, 8),
             ("00000007_000.png", "Effusion", 32, 48, 32, 16), ("00000003_000.png", "Infiltrate", 0, 0, 64, 64)]
NIH_SIZE = 64


def make_nih(root: Path, boxes: bool = True) -> Path:
    lines = [NIH_HEADER]
    for i, (image, findings, patient, view) in enumerate(NIH_ENTRIES):
        folder = root / f"images_{1 + i // 5:03d}" / "images"
        write_image(folder / image, 20 * (i + 1), size=(NIH_SIZE, NIH_SIZE), mode="L")
        lines.append(f"{image},{findings},{image[9:12].lstrip('0') or 0},{patient},58,M,{view},2682,2749,0.143,0.143")
    (root / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    test = set(NIH_TEST)
    (root / "train_val_list.txt").write_text("\n".join(e[0] for e in NIH_ENTRIES if e[0] not in test) + "\n")
    (root / "test_list.txt").write_text("\n".join(NIH_TEST) + "\n")
    if boxes:
        rows = [f"{image},{label},{x},{y},{w},{h},,," for image, label, x, y, w, h in NIH_BOXES]
        header = "Image Index,Finding Label,Bbox [x,y,w,h],,,"
        (root / "BBox_List_2017.csv").write_text("\n".join([header, *rows]) + "\n")
    return root


def make_medmnist(path: Path, *, multilabel: bool = False, rgb: bool = False, size: int = 28,
                  counts: tuple[int, int, int] = (12, 4, 4), num_classes: int = 3) -> Path:
    """A MedMNIST-style .npz with images whose gray level is 10 x the row index within the split."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts, strict=True):
        levels = (10 * np.arange(n)).astype(np.uint8)
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{split}_images"] = np.broadcast_to(levels.reshape(-1, *([1] * (len(shape) - 1))), shape).copy()
        if multilabel:
            arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 14)).astype(np.uint8)
        else:
            arrays[f"{split}_labels"] = (np.arange(n) % num_classes).reshape(n, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def write_dicom(path: Path, pixels: np.ndarray, *, photometric: str = "MONOCHROME2", slope: float = 1.0,
                intercept: float = 0.0, window: tuple[float, float] | None = None) -> Path:
    """A minimal single-frame uint16 DICOM (CR) written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID = "CT", "anon"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def make_folder(root: Path, counts: dict[str, int] | None = None) -> Path:
    """``root/<class>/img<i>.png`` with gray level 50 * class index + i."""
    counts = counts or {"benign": 5, "malignant": 4, "normal": 3}
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            write_image(root / name / f"img{i}.png", 50 * c + i)
    return root


def make_csv_dataset(root: Path) -> Path:
    """``root/labels.csv`` over ``root/imgs/<i>.png`` (gray 20 * i) with single-, multi-label, group, split columns."""
    rows = []
    for i in range(8):
        write_image(root / "imgs" / f"{i}.png", 20 * i)
        rows.append([f"imgs/{i}.png", ["cat", "dog"][i % 2], f"P{i // 2}", "|".join(["a", "b", "c"][: i % 4]),
                     i % 2, (i + 1) % 2, ["train", "train", "val", "test"][i % 4]])
    write_csv(root / "labels.csv", ["image", "label", "patient", "findings", "a", "b", "split"], rows)
    return root
