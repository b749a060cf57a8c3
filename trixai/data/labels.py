"""Class lists in their official order, shared by the embedded generators and the real loaders.

The order is the class index: a model's output k is ``class_names[k]``, recorded with every checkpoint.
"""

# ISIC 2018 Task 3 ground-truth columns; HAM10000's ``dx`` codes are the same classes in lower case.
ISIC_CLASSES = ("MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC")
# HAM10000 training-set counts (ISIC 2018 Task 3: 10,015 images).
HAM_COUNTS = {"MEL": 1113, "NV": 6705, "BCC": 514, "AKIEC": 327, "BKL": 1099, "DF": 115, "VASC": 142}

# NIH ChestX-ray14 (Wang et al. 2017): the 14 findings of ``Finding Labels``.
NIH_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
# MedMNIST ChestMNIST: NIH's 14 findings in NIH's order, under its own spellings.
CHESTMNIST_LABELS = tuple(name.lower() for name in NIH_FINDINGS[:12]) + ("pleural", "hernia")

# CheXpert (Irvin et al. 2019): the 14 observations of train.csv/valid.csv and the 5 competition tasks.
CHEXPERT_OBSERVATIONS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture",
    "Support Devices",
)
CHEXPERT_COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")

# The embedded chest X-ray generator's findings (a subset of NIH's names).
SYNTHETIC_CXR_FINDINGS = ("Cardiomegaly", "Effusion", "Nodule", "Pneumothorax", "Consolidation")
