"""Third-party noise silenced where it is made, one message at a time (no blanket filters)."""

from __future__ import annotations

import logging
import warnings


class _DropTips(logging.Filter):
    """Lightning's advertising tips ("💡 Tip: ... litlogger") on its rank-zero logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_third_party() -> None:
    """Drop Lightning's tips, its second copy of every log line, and the FutureWarning that Lightning's own pytree
    helper triggers in torch >= 2.10 (``isinstance(treespec, LeafSpec)``: nothing a trixai user can act on).
    Idempotent; call it after Lightning is imported."""
    root = logging.getLogger()
    if root.handlers:  # Hydra's job logging prints (and files) every record; lightning's own console handler,
        package = logging.getLogger("lightning")  # added when the package is imported, would print it again
        for handler in [h for h in package.handlers if type(h) is logging.StreamHandler]:
            package.removeHandler(handler)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")
