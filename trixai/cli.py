"""Console entry points. Each imports its task lazily so ``--help`` stays fast."""

from __future__ import annotations

import re
import sys
from importlib.resources import files

_GROUP_NULL = re.compile(r"^(?P<key>\+{0,2}(?P<group>[\w/]+)(?:@[\w.]+)?)=null$")


def check_group_overrides(argv: list[str]) -> None:
    """Exit with one message for ``<config group>=null``, which Hydra rejects with a traceback: a group is chosen
    by name, and the groups that can be off have a ``none`` option."""
    for arg in argv:
        match = _GROUP_NULL.match(arg)
        if match is None:
            continue
        key, group = match["key"], match["group"]
        if group.startswith("hydra/"):
            detail = "; --hydra-help lists the options"
        elif (path := files("trixai.conf").joinpath(group)).is_dir():
            names = sorted(p.name.removesuffix(".yaml") for p in path.iterdir() if p.name.endswith(".yaml"))
            detail = (f" ({key}=none switches it off)" if "none" in names else "") + f"; options: {', '.join(names)}"
        else:
            continue
        print(f"trixai: error: {arg}: '{group}' is a config group, chosen by name{detail}", file=sys.stderr)
        raise SystemExit(2)


def train() -> None:
    from trixai.tasks.train import main

    check_group_overrides(sys.argv[1:])
    main()


def evaluate() -> None:
    from trixai.tasks.eval import main

    check_group_overrides(sys.argv[1:])
    main()


def explain() -> None:
    from trixai.tasks.explain import main

    check_group_overrides(sys.argv[1:])
    main()


def report() -> None:
    from trixai.tasks.report import main

    check_group_overrides(sys.argv[1:])
    main()


def profile() -> None:
    from trixai.tasks.profile import main

    check_group_overrides(sys.argv[1:])
    main()
