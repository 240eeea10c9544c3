"""Where the Dask tasks run: the client picked for a fit, the clusters hkmeans starts
on this machine, their scratch folders, and ``compute``/``persist`` on that client."""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import functools
import importlib.util
import logging
import os
import shutil
import stat
import sys
import tempfile
import weakref

try:
    import fcntl
except ImportError:  # Windows: stale scratch folders are not found
    fcntl = None  # type: ignore[assignment]

import dask

from ..._threads import numba_threads_from_environment, usable_cpus
from ..cuda import check_available


def cluster_layout(cores: int) -> tuple[int, int]:
    """``(workers, threads per worker)`` of the embedded cluster on ``cores`` cores:
    workers x threads <= cores, about 4 threads each."""
    threads = min(cores, 4)
    return max(1, cores // threads), threads


class _TaskFailureLogs(logging.Filter):
    """Drops a worker's log of a failed task (a multi-line traceback on the terminal
    of a cluster hkmeans started): the client raises the task's error itself."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("Compute Failed")


#: No dashboard, and the scheduler's HTTP server (which starts without one) on a free
#: port: on its default, 8787, a notebook's cluster would make it warn.
NO_DASHBOARD = dict(dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})


def _drop_task_failure_logs():
    logging.getLogger("distributed.worker").addFilter(_TaskFailureLogs())


def _set_up_workers(client) -> None:
    """What every worker of a cluster hkmeans started does first, replacements of lost
    workers too (a worker plugin): drop the task failure logs, and read Numba's
    settings from the environment its nanny set (see
    :func:`~hkmeans._threads.numba_threads_from_environment`; where the parent's
    script imports :mod:`hkmeans.backends.dask` at its top, the import's own reading
    came before the nanny's)."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class WorkerSetup(WorkerPlugin):
        name = "hkmeans-worker-setup"

        def setup(self, worker):
            _drop_task_failure_logs()
            numba_threads_from_environment()

    client.register_plugin(WorkerSetup())


# The scratch folders of the clusters hkmeans started (on this machine: every worker sees them).
_LOCAL_SCRATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
SCRATCH_PREFIX = "hkmeans-scratch-"
#: The file in a scratch folder that its process holds locked while it lives.
SCRATCH_LOCK = ".owner.lock"
# the open lock files of this process's scratch folders: closed, they would unlock
_HELD_LOCKS: list = []


def _own_scratch(client):
    """``client``, given a new folder for the per-row state of its fits (in Dask's
    ``temporary-directory``, else the system's), removed at exit. A process killed
    before its exit (SIGKILL, out of memory) cannot remove its folder: the folders
    of such processes are removed here (see :func:`remove_stale_scratch`)."""
    parent = dask.config.get("temporary-directory", None) or tempfile.gettempdir()
    folder = tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=parent)
    _LOCAL_SCRATCH[client] = folder
    atexit.register(shutil.rmtree, folder, True)
    if fcntl is None:
        return client
    try:
        # locked before it takes its name, so no other process sees it unlocked
        pending = os.path.join(folder, ".pending.lock")
        lock = open(pending, "w")
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(pending, os.path.join(folder, SCRATCH_LOCK))
        _HELD_LOCKS.append(lock)
        remove_stale_scratch(parent)
    except OSError as e:  # a file system without flock, a folder not readable: nothing removed
        logging.getLogger(__name__).info("stale scratch folders not looked for in %s: %s", parent, e)
    return client


def remove_stale_scratch(parent) -> list[str]:
    """Remove the scratch folders in ``parent`` whose process has ended without
    removing them: folders of this user named ``hkmeans-scratch-*`` (not links) whose
    lock file no process holds, as Dask's own workspace does with its workers'
    folders. Folders without a lock file, or locked, are left alone. Returns those
    removed."""
    if fcntl is None:
        return []
    removed = []
    for name in sorted(os.listdir(parent)):
        path = os.path.join(parent, name)
        if not name.startswith(SCRATCH_PREFIX) or any(path == own for own in _LOCAL_SCRATCH.values()):
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
                continue
            fd = os.open(os.path.join(path, SCRATCH_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:  # gone meanwhile, or no lock file
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its process is alive
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.lexists(path):
                removed.append(path)
        finally:
            os.close(fd)
    if removed:
        logging.getLogger(__name__).info("removed %d scratch folders of ended processes: %s", len(removed), removed)
    return removed


def scratch_folder(client=None):
    """Where per-row state goes on ``client``'s cluster (see :func:`pick_client`): the
    folder of Dask's config key ``hkmeans.scratch`` (``dask.config.set``, or
    ``DASK_HKMEANS__SCRATCH`` in the environment) if set, for a folder that every
    worker sees at the same path; None if that key is False (the workers' memory);
    otherwise the temporary folder of a cluster hkmeans started on this machine, or
    None for any other cluster."""
    folder = dask.config.get("hkmeans.scratch", None)
    if folder is False:
        return None
    if folder:
        return os.path.abspath(os.fspath(folder))
    c = pick_client(client)
    return None if c is None else _LOCAL_SCRATCH.get(c)


def local_cuda_client(workers=None):
    """A :class:`distributed.Client` on a new ``dask_cuda.LocalCUDACluster``: one
    worker per visible GPU (``workers`` of them if given). A one-line ImportError
    without dask-cuda. Closed when the process exits."""
    if importlib.util.find_spec("dask_cuda") is None:
        raise ImportError(
            'device="cuda" on Dask starts one worker per GPU with dask-cuda: pip install "hkmeans[dask-cuda]", or use an existing cluster.'
        )
    from dask_cuda import LocalCUDACluster
    from distributed import Client

    cluster = LocalCUDACluster(n_workers=workers, threads_per_worker=1, **NO_DASHBOARD)
    client = Client(cluster, set_as_default=False)
    _set_up_workers(client)
    atexit.register(lambda: (client.close(), cluster.close()))
    return _own_scratch(client)


def check_workers(client, device) -> None:
    """For ``device="cuda"``: a one-line RuntimeError unless every worker of
    ``client`` (this process if None) has numba-cuda and sees a GPU."""
    if device != "cuda":
        return
    if client is None:
        check_available()
        return
    for worker, error in client.run(_cuda_error).items():
        if error is not None:
            raise RuntimeError(f"worker {worker}: {error}")


def _cuda_error():
    try:
        check_available()
    except RuntimeError as e:
        return str(e)
    return None


def local_client(workers=None, cores=None):
    """A :class:`distributed.Client` on a new :class:`distributed.LocalCluster` of
    ``workers`` worker processes (None: :func:`cluster_layout`'s number) on ``cores``
    cores (None: those this process may use), one task at a time per worker, with
    Numba and BLAS threads set per worker so that workers x threads <= cores, and a
    temporary scratch folder (see :func:`scratch_folder`). Closed when the process
    exits."""
    from distributed import Client, LocalCluster

    cores = usable_cpus() if cores is None else cores
    if workers is None:
        workers, threads = cluster_layout(cores)
    else:
        threads = max(1, cores // workers)
    env = {
        name: str(threads)
        for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, env=env, **NO_DASHBOARD)
    client = Client(cluster, set_as_default=False)
    _set_up_workers(client)

    def close():
        client.close()
        cluster.close()

    atexit.register(close)
    return _own_scratch(client)


def connect(address, timeout=10):
    """A :class:`distributed.Client` of the scheduler at ``address``; a ValueError of
    one line if it cannot be reached within ``timeout`` seconds."""
    from distributed import Client
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        # a malformed address first: a Client failing on it waits 20 s to close, then prints a traceback
        scheme, location = parse_address(address)
        get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss"):
            parse_host_port(location)
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} ({reason}).") from None


@functools.cache
def _embedded_client(device="cpu"):
    return local_cuda_client() if device == "cuda" else local_client()


_CURRENT = contextvars.ContextVar("hkmeans_client", default=None)


@contextlib.contextmanager
def using(client):
    """Context in which :func:`pick_client` picks ``client`` (None: no change)."""
    token = _CURRENT.set(client)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def pick_client(client=None, device="cpu"):
    """The :class:`distributed.Client` the tasks run on: ``client`` if given, else
    the one of an enclosing :func:`using`, else none if a local scheduler is
    configured (``dask.config.set(scheduler="threads")``, say) or distributed is not
    installed, else the active one (Dask's convention), else an
    embedded cluster started once per process: for ``device="cpu"`` a
    :class:`distributed.LocalCluster` of worker processes sized by
    :func:`cluster_layout` with Numba and BLAS threads set per worker, for "cuda"
    :func:`local_cuda_client`'s."""
    client = client if client is not None else _CURRENT.get()
    if client is not None:
        return client
    if dask.config.get("scheduler", None) not in (None, "dask.distributed"):
        return None
    try:
        from distributed import default_client
    except ImportError:
        return None
    try:
        return default_client()
    except ValueError:
        return _embedded_client(device)


def holder(collections):
    """The client whose workers hold the results that ``collections`` were persisted
    into (their futures), or None: only that client can compute them, whatever client
    is the default. It walks their graphs (about 0.2 s for 10,000 tasks): for arrays
    that outlive the fit that made them, not for every pass."""
    if "distributed" not in sys.modules:
        return None
    from distributed import futures_of

    for future in futures_of(list(collections)):
        return future.client
    return None


def compute(*collections, client=None):
    """The values of ``collections``, computed on :func:`pick_client`'s scheduler."""
    c = pick_client(client)
    if c is None:
        return dask.compute(*collections)
    return tuple(c.compute(list(collections), sync=True))


def persist(*collections, client=None):
    """``collections`` persisted (kept on the workers) on :func:`pick_client`'s scheduler."""
    c = pick_client(client)
    out = dask.persist(*collections) if c is None else c.persist(list(collections))
    return tuple(out)
