"""``trixai-train``: fit, test on clean and attacked data, run the suites, export.

Hydra composes ``conf/train.yaml`` here; the task (torch, timm, Lightning) is imported only once a job runs, so
``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trixai.core.errors import user_errors


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from trixai.tasks.train import train

    with user_errors():
        metrics = train(cfg)
    return metrics["best_score"]


if __name__ == "__main__":  # torchrun -m trixai.cli.train ...
    main()
