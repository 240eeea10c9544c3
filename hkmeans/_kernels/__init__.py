"""Compiled kernels. ``cpu`` holds the Numba CPU versions, one module per job.

Kernels compile lazily, for the argument types they are first called with, and are
cached on disk: the first run on a machine compiles those it needs, and says so once
on stderr before it starts; later runs load them in well under a second.

Numba caches compiled kernels beside their source (``__pycache__``) or in the user's
cache folder. Where neither can be written (a read-only install and no writable home),
the kernels are cached in a private folder under the system's temporary directory
(owned by this user, mode 0700; refused if another user made it first or opened its
mode), else in a new private folder that lives as long as the process, with a warning,
rather than failing at import. A cache folder is code that Numba runs: one that
another user could write would let that user run code as this one.
"""

import atexit
import os
import shutil
import stat
import sys
import tempfile
import warnings

import numba
from numba.core import event

#: Said once per process, before the first kernel compiles (never when all load from
#: the cache). The time: a first `hkmeans demo` on an idle 2-core machine (38-46 s of
#: kernels in fresh installs).
COMPILE_NOTICE = "hkmeans: compiling kernels for this machine, once (about 40 s; then cached)"


def _probe():
    pass


def private_folder(path):
    """Why ``path`` cannot serve as this user's private cache folder (made, mode 0700,
    if missing), or None if it can: it must be a real folder (no link), owned by this
    user, that no one else may read or write."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        return f"cannot be made ({e.strerror})"
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return "is not a folder"
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):o}, open to other users"
    return None


def fallback_cache_dir(tmp=None):
    """``(folder, reason)``: the cache folder to use when Numba's own are not writable,
    and None or why the shared-name one was refused (then the folder is new, private,
    and removed when the process ends)."""
    tmp = tempfile.gettempdir() if tmp is None else tmp
    path = os.path.join(tmp, f"hkmeans-numba-cache-{os.getuid() if hasattr(os, 'getuid') else 0}")
    reason = private_folder(path)
    if reason is None:
        return path, None
    own = tempfile.mkdtemp(prefix="hkmeans-numba-cache-", dir=tmp)  # 0700, a fresh name
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    return own, f"{path} {reason}"


def _ensure_cache() -> None:
    try:
        numba.njit(cache=True)(_probe)  # numba looks for a cache folder as it decorates
    except RuntimeError:
        path, refused = fallback_cache_dir()
        setattr(numba.config, "CACHE_DIR", path)  # noqa: B010  (not in numba's type stubs)
        if refused is None:
            how = f"are cached in {path}"
        else:
            how = f"are cached for this process only, in {path}, since {refused}"
        warnings.warn(
            f"hkmeans: neither the package folder nor the user cache folder is writable; compiled kernels "
            f"{how} (set NUMBA_CACHE_DIR to choose the folder).",
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


_NOTICE = _CompileNotice()
event.register("numba:compile", _NOTICE)


def silence_compile_notice() -> None:
    """Print no :data:`COMPILE_NOTICE` in this process (``hkmeans -q``)."""
    _NOTICE.said = True
