"""Compiled kernels. ``cpu`` holds the Numba CPU versions, one module per job.

Kernels compile lazily, for the argument types they are first called with, and are
cached on disk: the first run on a machine compiles those it needs, and says so once
on stderr before it starts; later runs load them in well under a second.

Numba caches compiled kernels beside their source (``__pycache__``) or in the user's
cache folder. Where neither can be written (a read-only install and no writable home),
the kernels are cached in a folder under the system's temporary directory instead,
with a warning, rather than failing at import.
"""

import os
import sys
import tempfile
import warnings

import numba
from numba.core import event

#: Said once per process, before the first kernel compiles (never when all load from
#: the cache). The time: a first `hkmeans demo` on an idle 2-core machine (about 27 s).
COMPILE_NOTICE = "hkmeans: compiling kernels for this machine, once (about 30 s; then cached)"


def _probe():
    pass


def _ensure_cache() -> None:
    try:
        numba.njit(cache=True)(_probe)  # numba looks for a cache folder as it decorates
    except RuntimeError:
        path = os.path.join(tempfile.gettempdir(), f"hkmeans-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 0}")
        numba.config.CACHE_DIR = path
        warnings.warn(
            f"hkmeans: neither the package folder nor the user cache folder is writable; compiled kernels "
            f"are cached in {path} (set NUMBA_CACHE_DIR to choose the folder).",
            RuntimeWarning,
            stacklevel=2,
        )


_ensure_cache()


class _CompileNotice(event.Listener):
    """Prints :data:`COMPILE_NOTICE` on stderr when the first hkmeans kernel starts
    compiling."""

    said = False

    def on_start(self, ev):
        func = getattr(ev.data["dispatcher"], "py_func", None)
        if not self.said and func is not None and func.__module__.startswith("hkmeans."):
            self.said = True
            print(COMPILE_NOTICE, file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


event.register("numba:compile", _CompileNotice())
