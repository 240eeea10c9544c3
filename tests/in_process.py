"""The ``hkmeans`` command run in this process, as its console script runs it."""

import contextlib
import io
import logging
import warnings
from types import SimpleNamespace

from hkmeans.cli.main import main


def run_in_process(argv):
    """``main(argv)`` as the console script runs it, its output captured and the
    process-wide settings it changes (warnings display, log handlers) restored."""
    out, err = io.StringIO(), io.StringIO()
    log = logging.getLogger("hkmeans")
    handlers, level, show = list(log.handlers), log.level, warnings.showwarning
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            try:
                code = main(argv)
            except SystemExit as e:  # argparse: --help, bad flags
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        log.handlers[:], warnings.showwarning = handlers, show
        log.setLevel(level)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
