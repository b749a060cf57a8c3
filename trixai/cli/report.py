"""``trixai-report``: tables and figures over finished runs and sweeps.

Hydra composes ``conf/report.yaml`` here; the task (torch, timm, Lightning) is imported only once a job runs, so
``--help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from trixai.core.errors import user_errors


@hydra.main(version_base="1.3", config_path="pkg://trixai.conf", config_name="report")
def main(cfg: DictConfig) -> None:
    from trixai.tasks.report import build_report

    with user_errors():
        build_report(cfg)


if __name__ == "__main__":  # torchrun -m trixai.cli.report ...
    main()
