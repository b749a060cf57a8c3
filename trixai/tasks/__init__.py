"""Task functions behind the console scripts; each module exposes a Hydra ``main``."""

from trixai.core.resolvers import register

register()
