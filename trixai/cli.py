"""Console entry points. Each imports its task lazily so ``--help`` stays fast."""

from __future__ import annotations


def train() -> None:
    from trixai.tasks.train import main

    main()


def evaluate() -> None:
    from trixai.tasks.eval import main

    main()


def explain() -> None:
    from trixai.tasks.explain import main

    main()


def report() -> None:
    from trixai.tasks.report import main

    main()


def profile() -> None:
    from trixai.tasks.profile import main

    main()
