"""The ``hkmeans`` command line: fit, sample, curate, demo, info."""

from .main import main

__all__ = ["main"]
