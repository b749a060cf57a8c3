"""TCAV over a dataset sample: concept and random sets from the config, one result per class, reports."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from trixai.core.errors import TrixaiError
from trixai.core.reports import TcavReport
from trixai.xai.concepts import EMBEDDED_CONCEPTS, folder_images, random_subsets, ruler_sets
from trixai.xai.explainers import TCAV
from trixai.xai.tcav import bonferroni_hypotheses, tcav


def _match_channels(images: Tensor, in_chans: int) -> Tensor:
    if images.shape[1] == in_chans:
        return images
    if in_chans == 1 and images.shape[1] == 3:
        return (0.299 * images[:, :1] + 0.587 * images[:, 1:2] + 0.114 * images[:, 2:3])
    raise TrixaiError(f"concept images have {images.shape[1]} channels; the model takes {in_chans}")


def concept_and_random_sets(settings: TCAV, samples_images: Tensor, *, size: int, in_chans: int
                            ) -> tuple[str, Tensor, list[Tensor]]:
    """(concept name, concept images, random sets) as configured; all (N, in_chans, size, size)."""
    n, seed = int(settings.n_concept), int(settings.seed)
    n_sets = 3 * int(settings.n_runs)  # per run: one counter-set, two for a random-vs-random CAV
    concept = str(settings.concept)
    random_dir = settings.random_dir
    if concept in EMBEDDED_CONCEPTS:
        images, randoms = ruler_sets(n, size, n_random=n_sets, seed=seed)
    else:
        images, randoms = folder_images(concept, size=size, in_chans=in_chans, limit=n), []
        concept = Path(concept).name
    if random_dir is not None:
        folders = sorted(p for p in Path(random_dir).expanduser().iterdir() if p.is_dir())
        if len(folders) < 6:
            raise TrixaiError(f"explainer.random_dir={random_dir}: needs >= 6 subfolders (one per random set, 3 per "
                              f"TCAV run), found {len(folders)}")
        randoms = [folder_images(p, size=size, in_chans=in_chans, limit=n) for p in folders[:n_sets]]
    elif not randoms:
        randoms = random_subsets(samples_images, n, n_sets, seed=seed)
    return concept, _match_channels(images, in_chans), [_match_channels(r, in_chans) for r in randoms]


def _classes(spec, class_names: tuple[str, ...]) -> list[int]:
    if spec is None:
        return list(range(len(class_names)))
    out = []
    for item in [spec] if isinstance(spec, (str, int)) else list(spec):
        if isinstance(item, int) and 0 <= item < len(class_names):
            out.append(item)
        elif item in class_names:
            out.append(class_names.index(item))
        else:
            raise TrixaiError(f"explainer.classes: {item!r} is not a class of the model {list(class_names)}")
    return out


def tcav_suite(model: nn.Module, samples, settings: TCAV, *, class_names: tuple[str, ...]) -> TcavReport:
    """TCAV of the configured concept for each class with >= 2 images among ``samples``."""
    cfg = settings.settings()
    device = samples.images.device
    size, in_chans = samples.images.shape[-1], samples.images.shape[1]
    concept, concept_images, randoms = concept_and_random_sets(settings, samples.images, size=size, in_chans=in_chans)
    labels = samples.labels

    def members(index: int) -> Tensor:
        return (labels[:, index] > 0.5) if labels.is_floating_point() else labels == index

    tested = [i for i in _classes(settings.classes, class_names) if int(members(i).sum()) >= 2]
    if not tested:
        raise TrixaiError("TCAV found no class with >= 2 images in the sample: raise explainer.max_points")
    m = bonferroni_hypotheses(len(tested))  # one hypothesis per tested class (one concept, one layer)
    rows = [tcav(model, samples.images[members(index)], index, concept_images.to(device),
                 [r.to(device) for r in randoms], settings.layer, concept=concept, alpha=settings.alpha,
                 cav_classifier=settings.cav_classifier, cav_fit=settings.cav_fit, test=settings.t_test,
                 n_hypotheses=m, batch_size=settings.batch_size).as_dict() for index in tested]
    return TcavReport(explainer=cfg, model=getattr(model, "name", type(model).__name__), concept=concept,
                      layer=settings.layer, n_concept=len(concept_images), n_random_sets=len(randoms),
                      n_runs=rows[0]["n_runs"], variant={"cav_classifier": settings.cav_classifier,
                                                        "cav_fit": settings.cav_fit, "t_test": settings.t_test,
                                                        "bonferroni_hypotheses": m}, results=rows)
