"""The suites: robustness and explanation evaluations of a model over a loader, and their reports."""
