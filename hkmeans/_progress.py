"""Progress reporting: tqdm bars on stderr, and the ``hkmeans`` logger."""

from __future__ import annotations

import logging
import sys
import threading
import time

from tqdm import tqdm

log = logging.getLogger("hkmeans")


def bar(verbose, total, desc, leave=False, unit="it", iterable=None):
    """A progress bar on stderr (over ``iterable`` if given), shown only when ``verbose``."""
    return tqdm(
        iterable,
        total=total,
        desc=desc,
        leave=leave,
        unit=unit,
        disable=not verbose,
        file=sys.stderr,
        dynamic_ncols=True,
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


class Heartbeat(TqdmHandler):
    """:class:`TqdmHandler` that, while nothing is logged for ``every`` seconds, logs
    that the last step is still running: progress for a log file or a batch job,
    where no bar is drawn."""

    def __init__(self, every: float = 10.0):
        super().__init__()
        self.every = every
        self._last = (time.monotonic(), None)  # time and record of the last line
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hkmeans-heartbeat", daemon=True)
        self._thread.start()

    def emit(self, record):
        self._last = (time.monotonic(), record)
        super().emit(record)

    def _beat(self):
        start = time.monotonic()
        while not self._stop.wait(1.0):
            since, record = self._last
            if time.monotonic() - since >= self.every:
                after = f"after: {record.getMessage()}" if record is not None else "starting"
                self.emit(
                    log.makeRecord(
                        log.name,
                        logging.INFO,
                        __file__,
                        0,
                        "still working (%.0f s in all; %s)",
                        (time.monotonic() - start, after),
                        None,
                    )
                )
                self._last = (self._last[0], record)  # keep naming the last real step

    def close(self):
        self._stop.set()
        super().close()
