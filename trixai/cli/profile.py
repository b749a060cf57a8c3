"""``trixai-profile``: params, FLOPs, latency and memory of a model.

Hydra composes ``conf/profile.yaml`` here; the task (torch, timm, Lightning) is imported only once a job runs, so
``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trixai.core.errors import user_errors


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="profile")
def main(cfg: DictConfig) -> None:
    from trixai.tasks.profile import run_profile

    with user_errors():
        run_profile(cfg)


if __name__ == "__main__":  # torchrun -m trixai.cli.profile ...
    main()
