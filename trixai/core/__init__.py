"""The bottom layer: errors, task kinds, frozen evaluation, metrics, atomic files, resolvers."""
