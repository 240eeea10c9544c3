"""Compiled kernels. ``cpu`` holds the Numba CPU versions, one module per job.

Numba caches compiled kernels beside their source (``__pycache__``) or in the user's
cache folder. Where neither can be written (a read-only install and no writable home),
the kernels are cached in a folder under the system's temporary directory instead,
with a warning, rather than failing at import.
"""

import os
import tempfile
import warnings

import numba


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
