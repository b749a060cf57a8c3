"""Hydra search-path plugin: any Hydra app (yours too) can compose trixai's shipped configs.

With trixai installed, a project's own ``@hydra.main(config_path="conf")`` can use ``model: efficientnet_b0``
or ``attack: pgd10`` from ``pkg://trixai.conf`` and add experiment files of its own. Hydra imports this module
before it composes any config, which registers the OmegaConf resolvers those configs use (:mod:`trixai.resolvers`).
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from trixai.resolvers import register

register()


class TrixaiSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="trixai", path="pkg://trixai.conf")
