"""Console entry points: ``trixai-train`` ... ``trixai-profile``. Each imports its Hydra main (and that main its task)
only when called, so ``--help`` and ``--cfg job`` import neither torch nor timm."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from importlib import import_module
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


def _console_script(task: str) -> Callable[[], None]:
    """The ``trixai-<task>`` entry point: check the overrides, then run ``trixai.cli.<task>.main``."""

    def run() -> None:
        check_group_overrides(sys.argv[1:])
        import_module(f"trixai.cli.{task}").main()

    run.__name__ = run.__qualname__ = task
    return run


train, evaluate, explain, report, profile = map(_console_script, ("train", "eval", "explain", "report", "profile"))
