"""``trixai-eval``: the robustness suite on a trained model.

Hydra composes ``conf/eval.yaml`` here; the task (torch, timm, Lightning) is imported only once a job runs, so
``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trixai.core.errors import user_errors


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    from trixai.tasks.eval import evaluate

    with user_errors():
        evaluate(cfg)


if __name__ == "__main__":  # torchrun -m trixai.cli.eval ...
    main()
