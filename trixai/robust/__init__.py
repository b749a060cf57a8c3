"""Robustness: attacks (shared by training and evaluation), losses and training objectives."""
