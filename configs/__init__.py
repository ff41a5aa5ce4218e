"""Experiment configs shipped with keras-amb."""
