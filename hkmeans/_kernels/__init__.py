"""Compiled kernels. ``cpu`` holds the Numba CPU versions, one module per job.

Kernels compile lazily, for the argument types they are first called with, and are
cached on disk: the first run on a machine compiles those it needs, and says so once
on stderr before it starts; later runs load them in well under a second.

Numba caches compiled kernels beside their source (``__pycache__``) or in the user's
cache folder, each checked against the sources of every kernel module (a change to any
of them compiles them all anew). Where neither can be written (a read-only install and
no writable home), the kernels are cached in a private folder under the system's
temporary directory
(owned by this user, mode 0700; refused if another user made it first or opened its
mode), else in a new private folder that lives as long as the process, with a warning,
rather than failing at import. A cache folder is code that Numba runs: one that
another user could write would let that user run code as this one.
"""

import atexit
import contextlib
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
import warnings

import numba
from numba.core import event, sigutils
from numba.core.compiler_lock import global_compiler_lock

try:
    import fcntl
except ImportError:  # not on Windows: there processes compile side by side
    fcntl = None  # type: ignore[assignment]

#: Said once per process, before the first kernel compiles (never when all load from
#: the cache). The time: a first `hkmeans demo` in a fresh install on an idle 2-core
#: machine (21-27 s on an Intel Xeon VM, 35-38 s on an AMD EPYC VM).
COMPILE_NOTICE = "hkmeans: compiling kernels for this machine, once (20-40 s on 2 cores; then cached)"


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
        # every Numba compile of the process comes here, the user's own functions too,
        # whose module may be None (made by exec)
        module = getattr(func, "__module__", None)
        if not self.said and isinstance(module, str) and module.startswith("hkmeans."):
            self.said = True
            print(COMPILE_NOTICE, file=sys.stderr, flush=True)

    def on_end(self, ev):
        pass


_NOTICE = _CompileNotice()
event.register("numba:compile", _NOTICE)


def silence_compile_notice() -> None:
    """Print no :data:`COMPILE_NOTICE` in this process (``hkmeans -q``)."""
    _NOTICE.said = True


#: How long a process waits for another one compiling the same kernel before it
#: compiles the kernel itself.
COMPILE_WAIT_S = 600.0


@contextlib.contextmanager
def _file_lock(path, timeout):
    """An exclusive lock on the file at ``path`` (made if missing) for the ``with``
    block, or none where it cannot be had within ``timeout`` seconds or at all."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            except OSError:  # a file system without locks
                break
        yield
    finally:
        os.close(fd)  # releases the lock


#: The folder of the kernel modules.
KERNELS_ROOT = os.path.join(os.path.dirname(__file__), "cpu")


@functools.cache
def sources_digest(root=KERNELS_ROOT):
    """A digest of the kernel modules under ``root`` (the names and contents of its
    ``.py`` files, hidden ones and other than plain files left out: an editor's lock
    link), or None where ``root`` is no folder (e.g. inside a zip file) or one of
    them cannot be read."""
    if not os.path.isdir(root):
        return None
    digest = hashlib.sha256()

    def refuse(error):
        raise error

    try:
        for folder, subfolders, names in os.walk(root, onerror=refuse):
            subfolders[:] = sorted(f for f in subfolders if not f.startswith("."))
            for name in sorted(names):
                path = os.path.join(folder, name)
                if name.startswith(".") or not name.endswith(".py") or not os.path.isfile(path):
                    continue
                digest.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def compile_once(dispatcher):
    """``dispatcher`` (a Numba CPU dispatcher with ``cache=True``) made to compile each
    signature in one process at a time: processes started together on one machine
    (test workers, Dask workers, parallel jobs) then compile a kernel once, and the
    others load it from the disk cache as the first one saves it.

    The lock is a file beside the kernel's cache index, one per signature, taken
    inside Numba's own compiler lock (so threads of one process never wait on each
    other's file locks). A kernel holds its lock while the kernels it calls compile
    and take theirs; calls between kernels form no cycle, so neither do the waits.
    """
    cache = getattr(dispatcher, "_cache", None)  # none: a plain function under NUMBA_DISABLE_JIT=1
    cache_file = getattr(cache, "_cache_file", None)
    # Numba checks a cached kernel against its own file only, while the kernel holds
    # the code of what it calls from other files (kernels, SIMD intrinsics): a kernel
    # cached before any kernel module changed (an upgrade, an edit) must not load
    if hasattr(cache_file, "_source_stamp") and sources_digest() is not None:
        cache_file._source_stamp = (cache_file._source_stamp, sources_digest())
    index = getattr(cache_file, "_index_path", None)
    if fcntl is None or index is None:
        return dispatcher
    compile_signature = dispatcher.compile

    def compile(sig):
        with global_compiler_lock:
            args, _ = sigutils.normalize_signature(sig)
            if tuple(args) in dispatcher.overloads:  # typing a caller asks again
                return compile_signature(sig)
            key = hashlib.sha1(str(tuple(args)).encode()).hexdigest()[:16]
            with _file_lock(f"{index}.{key}.lock", COMPILE_WAIT_S):
                return compile_signature(sig)

    dispatcher.compile = compile
    return dispatcher
