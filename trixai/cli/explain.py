"""``trixai-explain``: the explanation suite on a trained model or image files.

Hydra composes ``conf/explain.yaml`` here; the task (torch, timm, Lightning) is imported only once a job runs, so
``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trixai.core.errors import user_errors


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="explain")
def main(cfg: DictConfig) -> None:
    from trixai.tasks.explain import run

    with user_errors():
        run(cfg)


if __name__ == "__main__":  # torchrun -m trixai.cli.explain ...
    main()
