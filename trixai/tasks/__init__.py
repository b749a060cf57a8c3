"""Task functions behind the console scripts; each module exposes a Hydra ``main``."""

from trixai.resolvers import register

register()
