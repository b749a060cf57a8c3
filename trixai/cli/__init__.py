"""Console entry points: ``trixai-train`` ... ``trixai-profile``. Each imports its Hydra main (and that main its task)
only when called, so ``--help`` and ``--cfg job`` import neither torch nor timm."""

from __future__ import annotations

import re
import sys
from importlib.resources import files

_GROUP_VALUE = re.compile(r"^(?P<key>\+{0,2}(?P<group>[\w/]+)(?:@[\w.]+)?)=(?:null|true|false)$")


def check_group_overrides(argv: list[str]) -> None:
    """Exit with one message for ``<config group>=null`` (or ``=true``/``=false``, which YAML reads as booleans),
    which Hydra rejects with a traceback: a group is chosen by name, and the groups that can be off have a ``none``
    option (``+quick=smoke``, not ``+quick=true``)."""
    for arg in argv:
        match = _GROUP_VALUE.match(arg)
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
    from trixai.cli.train import main

    check_group_overrides(sys.argv[1:])
    main()


def evaluate() -> None:
    from trixai.cli.eval import main

    check_group_overrides(sys.argv[1:])
    main()


def explain() -> None:
    from trixai.cli.explain import main

    check_group_overrides(sys.argv[1:])
    main()


def report() -> None:
    from trixai.cli.report import main

    check_group_overrides(sys.argv[1:])
    main()


def profile() -> None:
    from trixai.cli.profile import main

    check_group_overrides(sys.argv[1:])
    main()
