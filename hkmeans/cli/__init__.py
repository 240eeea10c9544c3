"""The ``hkmeans`` command line: fit, sample, curate, info, report, advise, demo."""

from .main import main

__all__ = ["main"]
