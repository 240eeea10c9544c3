"""Progress reporting: tqdm bars on stderr, and the ``hkmeans`` logger."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

log = logging.getLogger("hkmeans")


def bar(verbose, total, desc, leave=False, unit="it", iterable=None):
    """A progress bar on stderr (over ``iterable`` if given), shown only when ``verbose``."""
    return tqdm(
        iterable, total=total, desc=desc, leave=leave, unit=unit, disable=not verbose, file=sys.stderr, dynamic_ncols=True
    )


def report(verbose, message) -> None:
    """Log ``message`` at INFO; with ``verbose`` and no handler set on the ``hkmeans``
    logger (the command line sets one), also write it to stderr."""
    log.info(message)
    if verbose and not log.handlers:
        tqdm.write(f"[hkmeans] {message}", file=sys.stderr)


class TqdmHandler(logging.Handler):
    """Log records to stderr through ``tqdm.write``, so that bars stay intact."""

    def emit(self, record):
        tqdm.write(self.format(record), file=sys.stderr)
