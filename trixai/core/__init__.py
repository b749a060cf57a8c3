"""The bottom layer: errors, task kinds, frozen evaluation, metric collections, atomic files, config values."""
