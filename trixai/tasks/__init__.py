"""Task functions behind the console scripts (Hydra mains in :mod:`trixai.cli`): train, eval, explain, report, profile."""
