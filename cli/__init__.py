"""The keras-amb command-line application."""
