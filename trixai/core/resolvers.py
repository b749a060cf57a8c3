"""Deprecated: the resolvers moved to :mod:`trixai.resolvers`; delete this module once ``trixai.tasks`` imports that.

``trixai.core`` may not import :mod:`trixai.resolvers` (it reaches up to ``trixai.models``), so this shim only keeps
the old import working; the Hydra search-path plugin registers the resolvers before any config is composed.
"""

from __future__ import annotations


def register() -> None:
    """No-op: ``hydra_plugins.trixai_searchpath`` already called :func:`trixai.resolvers.register`."""
