"""Auditing models trixai did not train: a timm name + a safetensors file, a TorchScript file, a module in memory
(trixai.audit); the numbers equal a plain PyTorch evaluation of the same weights, and bad input gets one message."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import warnings

import pytest
import timm
import torch
from data_fixtures import make_folder
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trixai
from trixai.core.errors import TrixaiError
from trixai.models.external import ORIGINS, ExternalSpec, load_external
from trixai.tasks.eval import evaluate
from trixai.tasks.explain import run as explain

CLASSES = ["benign", "malignant", "normal"]
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # timm's pretrained_cfg of test_resnet
SMALL_SUITE = ["robustness=cpu", "robustness.attacks=[clean,fgsm]", "robustness.masking.large_eps=null",
               "logger=none", "progress=false", "overwrite=true"]


@pytest.fixture
def outside(tmp_path):
    """A colleague's checkpoint: timm test_resnet weights (3 classes) as safetensors, and a folder of images."""
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=3).eval()
    with torch.no_grad():  # a head that separates the flat gray images a little
        net.fc.bias.copy_(torch.tensor([0.3, -0.1, 0.0]))
    save_file(net.state_dict(), str(tmp_path / "mine.safetensors"))
    make_folder(tmp_path / "images", {c: 5 for c in CLASSES})
    return net, tmp_path


def _eval_cfg(compose_cfg, root, *overrides):
    return compose_cfg(f"external.file={root / 'mine.safetensors'}", "external.arch=test_resnet",
                       "external.input_size=32", "dataset=folder", f"dataset.root={root / 'images'}",
                       "dataset.fractions={train: 0.4, val: 0.2, test: 0.4}", "split=test", *SMALL_SUITE, *overrides,
                       config_name="eval", tiny=False)


def _reference(net, out):
    """Plain PyTorch: the test split (the dataset config recorded in provenance.json) through the timm model with
    the pretrained_cfg normalisation."""
    from hydra.utils import instantiate

    data = json.loads((out / "provenance.json").read_text())["eval"]["config"]["dataset"]
    assert data["image_size"] == 32
    split = instantiate(data, _convert_="all").load().split("test")
    x = torch.stack([split[i]["image"] for i in range(len(split))])
    y = torch.tensor([int(split[i]["target"]) for i in range(len(split))])
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        z = net((x - mean) / std)
    others = torch.stack([torch.cat([z[i, :y[i]], z[i, y[i] + 1:]]).max() for i in range(len(y))])
    margins = z[torch.arange(len(y)), y] - others  # z_y - max_{k != y} z_k
    return {"accuracy": float((z.argmax(1) == y).float().mean()), "mean_margin": float(margins.mean()), "n": len(y)}


def test_eval_of_a_timm_name_plus_safetensors(compose_cfg, outside):
    net, root = outside
    cfg = _eval_cfg(compose_cfg, root, "external.class_names=[benign,malignant,normal]")
    evaluate(cfg)
    out = root / "run"
    report = json.loads((out / "robustness.json").read_text())
    reference = _reference(net, out)
    assert report["n_points"] == reference["n"] == 6
    assert report["clean"]["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-6)
    assert report["clean"]["mean_margin"] == pytest.approx(reference["mean_margin"], rel=1e-4, abs=1e-6)
    origin = json.loads((out / "provenance.json").read_text())["eval"]["model"]
    assert origin["sha256"] == hashlib.sha256((root / "mine.safetensors").read_bytes()).hexdigest()
    assert origin["architecture"] == "test_resnet"
    assert origin["metadata"]["mean"] == pytest.approx(MEAN) and origin["metadata"]["input_size"] == 32
    assert origin["metadata_from"] == {"class_names": "given", "input_size": "given", "mean":
                                       "timm pretrained_cfg of test_resnet", "std": "timm pretrained_cfg of test_resnet",
                                       "task": "default", "in_chans": "length of mean"}
    html = (out / "report.html").read_text()
    assert origin["sha256"] in html and "timm pretrained_cfg of test_resnet" in html


def test_class_names_from_a_metadata_file_or_the_dataset(compose_cfg, outside):
    net, root = outside
    (root / "meta.yaml").write_text("class_names: [benign, malignant, normal]\nmean: [0.485, 0.456, 0.406]\n")
    cfg = _eval_cfg(compose_cfg, root, f"external.meta={root / 'meta.yaml'}")
    evaluate(cfg)
    origin = json.loads((root / "run" / "provenance.json").read_text())["eval"]["model"]
    assert origin["metadata_from"]["class_names"] == f"metadata file {root / 'meta.yaml'}"
    assert origin["metadata_from"]["std"] == "timm pretrained_cfg of test_resnet"
    evaluate(_eval_cfg(compose_cfg, root))  # no class names at all: the dataset's, recorded as an assumption
    origin = json.loads((root / "run" / "provenance.json").read_text())["eval"]["model"]
    assert origin["metadata_from"]["class_names"].startswith("dataset ImageFolder (assumed")


def test_bad_input_gets_one_clear_message(compose_cfg, outside):
    net, root = outside
    torch.manual_seed(0)
    save_file(timm.create_model("test_efficientnet", num_classes=3).state_dict(), str(root / "other.safetensors"))
    with pytest.raises(TrixaiError, match=r"(?s)does not fit test_resnet: \d+ missing, \d+ unexpected.*likely cause: weights of another"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={root / 'other.safetensors'}"))
    with pytest.raises(TrixaiError, match=r"classifier \(fc\) has 3 outputs, but 2 class names came from given"):
        evaluate(_eval_cfg(compose_cfg, root, "external.class_names=[a,b]"))
    with pytest.raises(TrixaiError, match=r"differ from the dataset's 3 \['benign', 'malignant', 'normal'\]"):
        evaluate(_eval_cfg(compose_cfg, root, "external.class_names=[x,y,z]"))
    with pytest.raises(TrixaiError, match=r"dataset yields 1-channel images, the model takes 3 .*dataset.channels=3"):
        evaluate(_eval_cfg(compose_cfg, root, "dataset.channels=1"))
    with pytest.raises(TrixaiError, match=r"both given"):
        evaluate(_eval_cfg(compose_cfg, root, f"ckpt={root}"))
    with pytest.raises(TrixaiError, match=r"not a TorchScript file: a state dict .* needs its architecture"):
        evaluate(_eval_cfg(compose_cfg, root, "external.arch=null"))
    with pytest.raises(TrixaiError, match="no model: ckpt="):
        evaluate(compose_cfg("dataset=folder", f"dataset.root={root / 'images'}", config_name="eval", tiny=False))


def _script(module: nn.Module, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.trace(module, torch.rand(1, 3, 32, 32)), str(path))
    return path


def test_torchscript_with_its_metadata_and_a_softmax_refused(compose_cfg, outside):
    net, root = outside
    _script(net, root / "net.pt")
    cfg = _eval_cfg(compose_cfg, root, f"external.file={root / 'net.pt'}", "external.arch=null",
                    f"external.mean={list(MEAN)}", f"external.std={list(STD)}")
    evaluate(cfg)
    report, reference = json.loads((root / "run" / "robustness.json").read_text()), _reference(net, root / "run")
    assert report["clean"]["mean_margin"] == pytest.approx(reference["mean_margin"], rel=1e-4, abs=1e-6)
    with pytest.raises(TrixaiError, match="external.mean, external.std needed for a TorchScript model"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={root / 'net.pt'}", "external.arch=null"))
    _script(nn.Sequential(net, nn.Softmax(dim=1)), root / "probs.pt")
    with pytest.raises(TrixaiError, match=r"outputs probabilities, not logits.* Attacks and Grad-CAM need logits"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={root / 'probs.pt'}", "external.arch=null",
                           "external.mean=[0,0,0]", "external.std=[1,1,1]"))
    with pytest.raises(TrixaiError, match="TorchScript model cannot be explained"):
        explain(compose_cfg(f"external.file={root / 'net.pt'}", "external.input_size=32", f"external.mean={list(MEAN)}",
                            f"external.std={list(STD)}", "dataset=folder", f"dataset.root={root / 'images'}",
                            config_name="explain", tiny=False))


def test_explain_of_a_timm_name_plus_safetensors(compose_cfg, outside):
    net, root = outside
    cfg = compose_cfg(f"external.file={root / 'mine.safetensors'}", "external.arch=test_resnet",
                      "external.input_size=32", "dataset=folder", f"dataset.root={root / 'images'}",
                      "explanation.max_points=3", "explanation.batch_size=3", "explanation.metrics.sanity=false",
                      "attack=fgsm", config_name="explain", tiny=False)
    explain(cfg)
    out = root / "run"
    report = json.loads((out / "explanations.json").read_text())
    assert report["n_samples"] == 3 and report["model"] == "test_resnet"
    provenance = json.loads((out / "provenance.json").read_text())["explain"]
    assert provenance["model"]["architecture"] == "test_resnet"
    assert 'id="explanations"' in (out / "report.html").read_text()


def test_python_api_on_a_module_in_memory(outside, tmp_path):
    net, _ = outside
    torch.manual_seed(1)
    x, y = torch.rand(12, 3, 32, 32), torch.randint(0, 3, (12,))
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = float((net((x - mean) / std).argmax(1) == y).float().mean())
    assert 0 < expected < 1
    loader = DataLoader(TensorDataset(x, y), batch_size=6)
    flat = trixai.audit(net, loader, class_names=CLASSES, mean=MEAN, std=STD, out_dir=tmp_path / "audit",
                        robustness={"attacks": ["clean", "fgsm"], "eps": [2 / 255], "masking": {"large_eps": None}},
                        attack="fgsm", explanation={"max_points": 4, "batch_size": 4}, cam_layer="layer4")
    assert flat["robust/clean/accuracy"] == pytest.approx(expected, abs=1e-6)
    assert json.loads((tmp_path / "audit" / "explanations.json").read_text())["n_samples"] == 4
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "module in memory (trixai.audit)" in html and 'id="explanations"' in html
    with pytest.raises(TrixaiError, match="outputs 3 scores per image, the loader has 4 classes"):
        trixai.audit(net, loader, class_names=[*CLASSES, "extra"], out_dir=tmp_path / "bad")
    gray = DataLoader(TensorDataset(x[:, :1], y), batch_size=6)
    with pytest.raises(TrixaiError, match=r"yields images of shape \(1, 32, 32\).*the model takes 3 channels"):
        trixai.audit(net, gray, class_names=CLASSES, mean=MEAN, std=STD, out_dir=tmp_path / "bad")


def _export(module: nn.Module, path, *, batch: int = 2, dynamic: bool = True):
    """``module`` as a torch.export ``.pt2`` file, with a dynamic batch dimension unless ``dynamic=False``."""
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    torch.export.save(torch.export.export(module, (torch.rand(batch, 3, 32, 32),), dynamic_shapes=shapes), str(path))
    return path


def _scores(report: dict, metric: str) -> dict[str, float]:
    """``metric`` of a robustness.json for clean, each attack at each eps and (accuracy) the worst case at each eps."""
    rows = {"clean": report["clean"][metric]}
    rows |= {f"{attack} {eps}": entry[metric] for attack, per_eps in report["results"].items()
             for eps, entry in per_eps.items()}
    return rows | {f"worst case {eps}": entry[metric] for eps, entry in report["worst_case"].items() if metric in entry}


def test_state_dict_torchscript_and_exported_program_give_identical_robustness(compose_cfg, outside):
    net, root = outside
    given = ["external.class_names=[benign,malignant,normal]", f"external.mean={list(MEAN)}",
             f"external.std={list(STD)}", "robustness.eps=[2/255,32/255]", "batch_size=4"]  # batches of 4 and 2
    files = {"state dict": [], "TorchScript": [f"external.file={_script(net, root / 'net.pt')}", "external.arch=null"],
             "ExportedProgram": [f"external.file={_export(net, root / 'net.pt2')}", "external.arch=null"]}
    reports = {}
    for kind, overrides in files.items():
        out = root / kind.replace(" ", "_")
        evaluate(_eval_cfg(compose_cfg, root, *given, *overrides, f"out_dir={out}"))
        assert json.loads((out / "provenance.json").read_text())["eval"]["model"]["source"] == ORIGINS[kind]
        reports[kind] = json.loads((out / "robustness.json").read_text())
    accuracies = {kind: _scores(report, "accuracy") for kind, report in reports.items()}
    assert set(accuracies["state dict"]) == {"clean", "fgsm 2/255", "fgsm 32/255", "worst case 2/255",
                                             "worst case 32/255"}
    reference = _reference(net, root / "state_dict")  # plain PyTorch on the same split
    assert accuracies["state dict"]["clean"] == pytest.approx(reference["accuracy"], abs=1e-9)
    assert accuracies["TorchScript"] == accuracies["ExportedProgram"] == accuracies["state dict"]
    margins = {kind: _scores(report, "mean_margin") for kind, report in reports.items()}
    for kind in ("TorchScript", "ExportedProgram"):  # the same gradients: the same FGSM images
        assert margins[kind] == pytest.approx(margins["state dict"], rel=1e-5, abs=1e-7), kind
    assert all(abs(margins["ExportedProgram"][f"fgsm {eps}"] - margins["ExportedProgram"]["clean"]) > 1e-3
               for eps in ("2/255", "32/255"))  # the attack moved the logits: gradients flow through the program


def test_program_files_get_one_clear_message(compose_cfg, outside):
    net, root = outside
    program = ["external.arch=null", f"external.mean={list(MEAN)}", f"external.std={list(STD)}"]
    with pytest.raises(TrixaiError, match=r"net.pt' is a TorchScript file, which carries its own architecture: "
                                          r"external.arch is for state dicts \(.safetensors, .pth\), drop "
                                          r"external.arch=test_resnet"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={_script(net, root / 'net.pt')}"))
    exported = _export(net, root / "net.pt2")
    with pytest.raises(TrixaiError, match=r"net.pt2' is an ExportedProgram \(torch.export\) file, which carries its "
                                          r"own architecture: .* drop external.arch=test_resnet"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={exported}"))
    with pytest.raises(TrixaiError, match=r"external.mean, external.std needed for an ExportedProgram"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={exported}", "external.arch=null"))
    with pytest.raises(TrixaiError, match=r"exported for 32x32 images, external.input_size is 64 \(given\): set "
                                          r"external.input_size=32"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={exported}", *program, "external.input_size=64"))
    training = _export(copy.deepcopy(net).train(), root / "training.pt2")
    with pytest.raises(TrixaiError, match=r"training.pt2' was exported in training mode: \d+ operations "
                                          r"\(aten.batch_norm.default, ...\) use batch statistics or dropout"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={training}", *program))
    static = _export(net, root / "static.pt2", batch=4, dynamic=False)
    with pytest.raises(TrixaiError, match=r"static.pt2' was exported with a static batch of 4, this batch has 6 "
                                          r"images .*dynamic_shapes=\(\{0: torch.export.Dim\('batch'\)\},\)"):
        evaluate(_eval_cfg(compose_cfg, root, f"external.file={static}", *program))
    with pytest.raises(TrixaiError, match=r"this ExportedProgram model cannot be explained: an ExportedProgram's "
                                          r"module runs one flat graph, in which hooks on its layers never fire"):
        explain(compose_cfg(f"external.file={exported}", "external.input_size=32", *program[1:], "dataset=folder",
                            f"dataset.root={root / 'images'}", config_name="explain", tiny=False))


def test_the_spec_resolves_into_one_frozen_record(outside):
    _, root = outside
    (root / "meta.json").write_text(json.dumps({"class_names": ["b", "m", "n"], "std": [0.25, 0.25, 0.25]}))
    spec = ExternalSpec(str(root / "mine.safetensors"), arch="test_resnet", meta=str(root / "meta.json"),
                        input_size=32)
    info = spec.resolve()
    assert (info.format, info.arch, info.class_names, info.input_size) == ("state dict", "test_resnet",
                                                                           ("b", "m", "n"), 32)
    assert (info.mean, info.std, info.task, info.in_chans) == (MEAN, (0.25, 0.25, 0.25), "multiclass", 3)
    meta_file, timm_cfg = f"metadata file {root / 'meta.json'}", "timm pretrained_cfg of test_resnet"
    assert dict(info.sources) == {"class_names": meta_file, "input_size": "given", "std": meta_file, "mean": timm_cfg,
                                  "task": "default", "in_chans": "length of mean"}
    assert info.with_class_names(["x", "y", "z"], "a dataset") is info  # the model's own names win
    bare = ExternalSpec(str(root / "mine.safetensors"), arch="test_resnet").resolve()
    named = bare.with_class_names(["x", "y", "z"], "a dataset")
    assert bare.class_names is None and "class_names" not in bare.sources  # unchanged: a new record comes back
    assert named.class_names == ("x", "y", "z") and named.sources["class_names"] == "a dataset"
    assert named.provenance()["metadata"] == {"architecture": "test_resnet", "class_names": ["x", "y", "z"],
                                              "input_size": 160, "mean": list(MEAN), "std": list(STD),
                                              "task": "multiclass", "in_chans": 3}
    with pytest.raises(dataclasses.FrozenInstanceError):
        named.input_size = 64
    model = load_external(named)
    assert model.meta["external"] == named.provenance() and model.class_names == ("x", "y", "z")
