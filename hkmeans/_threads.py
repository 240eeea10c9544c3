"""Threads: how many the kernels use, BLAS held to one thread while the kernels
parallelise over rows, one thread for passes too small to share, and calls run side by
side on Numba's threads."""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from . import _config

CGROUP_FILES = ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")


def cgroup_cpus(files=CGROUP_FILES) -> int | None:
    """The CPUs a cgroup quota allows this process (its quota over its period, rounded
    up), or None where no quota is set or none can be read."""
    for path in files:
        try:
            with open(path) as f:
                fields = f.read().split()
            if path.endswith("cfs_quota_us"):
                with open(os.path.join(os.path.dirname(path), "cpu.cfs_period_us")) as f:
                    fields += f.read().split()
        except (OSError, ValueError):
            continue
        if len(fields) >= 2 and fields[0] not in ("max", "-1"):
            try:
                quota, period = float(fields[0]), float(fields[1])
            except ValueError:
                continue
            if quota > 0 and period > 0:
                return max(1, math.ceil(quota / period))
    return None


@functools.cache
def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask (``taskset``), capped by a
    cgroup quota (containers, batch schedulers)."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpus()
    return max(1, min(n, quota) if quota else n)


def cpu_sample(proc="/proc") -> tuple[float, float, float]:
    """``(seconds, busy, own)``: a monotonic time, the CPU seconds the machine has spent
    busy (user, nice, system and interrupts of ``/proc/stat``: niced processes too,
    since with autogroup scheduling, the default on many Linux systems, a niced
    process of another session takes its share whatever its nice value), and this
    process's CPU seconds. An OSError or ValueError where ``/proc/stat`` cannot be
    read."""
    with open(os.path.join(proc, "stat")) as f:
        fields = f.readline().split()
    if fields[0] != "cpu" or len(fields) < 8:
        raise ValueError(f"unexpected first line of {proc}/stat")
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[1:8])
    own = os.times()
    return time.monotonic(), (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK"), own.user + own.system


def busy_elsewhere(before, after) -> float:
    """Cores that other processes kept busy between two :func:`cpu_sample` readings,
    on average (this process's own time, spinning threads included, left out)."""
    seconds = after[0] - before[0]
    if seconds <= 0:
        return 0.0
    return max(0.0, ((after[1] - before[1]) - (after[2] - before[2])) / seconds)


_available: dict = {"threads": None, "sample": None}


def available_threads() -> int:
    """Threads the kernels should use now: :func:`usable_cpus`, less the cores that
    other processes kept busy since the last look, when this process may use the
    whole machine (a thread that shares a core stalls every parallel pass it takes
    part in, while its siblings wait for it). Results do not depend on it: the kernels give the same
    result on any number of threads. Looked at again at most every
    ``_config.LOAD_CHECK_SECONDS``; the first look, with nothing to compare with,
    takes every usable CPU."""
    n = usable_cpus()
    if not _config.ADAPT_TO_LOAD or n != (os.cpu_count() or n):  # restricted: the share is given
        return n
    last = _available["sample"]
    if last is not None and time.monotonic() - last[0] <= _config.LOAD_CHECK_SECONDS:
        return _available["threads"]
    try:
        now = cpu_sample()
    except (OSError, ValueError):
        return n
    if last is not None:
        n = max(1, n - int(round(busy_elsewhere(last, now))))
    _available.update(threads=n, sample=now)
    return n


def numba_threads_from_environment() -> None:
    """Read Numba's settings from the environment again, while its threads have not
    started. A Dask nanny sets its worker's environment (``NUMBA_NUM_THREADS`` among
    it) after the worker process may have imported Numba: a spawned worker first
    imports the parent's main script, e.g. the ``hkmeans`` command. Numba would take
    the new value at its next compile, and raise if its threads had started by then."""
    from numba.np.ufunc import parallel

    if not parallel._is_initialized:
        numba.core.config.reload_config()


@contextlib.contextmanager
def every_usable_cpu():
    """Context in which the kernels take every usable CPU whatever the load, for
    timings that describe the machine rather than its moment."""
    before = _config.ADAPT_TO_LOAD
    _config.ADAPT_TO_LOAD = False
    try:
        yield
    finally:
        _config.ADAPT_TO_LOAD = before


@contextlib.contextmanager
def kernel_threads(work: float | None = None):
    """Context in which Numba's kernels run on the threads they should: at most
    :func:`available_threads` (Numba's own default follows the affinity mask only),
    and one when a pass of about ``work`` operations is below
    ``_config.PARALLEL_WORK``, too small to pay for waking other threads. The
    caller's setting is restored afterwards."""
    before = numba.get_num_threads()
    n = 1 if work is not None and work < _config.PARALLEL_WORK else min(before, available_threads())
    if n == before:
        yield
        return
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(before)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # scanning the loaded libraries takes milliseconds: done once, after loading the
    # BLAS that Numba's np.dot calls (SciPy's), so that it is among those limited
    importlib.import_module("scipy.linalg.cython_blas")
    return ThreadpoolController()


def single_threaded_blas():
    """Context in which BLAS runs on one thread: the kernels parallelise over rows.
    Nested uses, also in the calls of :func:`map_side_by_side`, find the limit set and
    leave it so."""
    return _blas_controller().limit(limits=1, user_api="blas")


@numba.njit(parallel=True, cache=True)
def _first_launch(out):
    for i in numba.prange(out.shape[0]):
        out[i] = i


def layer_takes_threads() -> bool:
    """Whether Numba's threading layer takes parallel kernels from several threads at
    once: "omp" and "tbb" do; "workqueue" aborts the process."""
    try:
        return numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # chosen at the first parallel launch
        _first_launch(np.empty(1))
        return numba.threading_layer() in ("omp", "tbb")


def map_side_by_side(fn, items, workers, costs=None, done=None) -> list:
    """``[fn(x) for x in items]`` on ``workers`` threads side by side.

    Each call runs on ``threads // workers`` of Numba's threads, with BLAS held to one
    thread by this thread (the limit is process-wide), the costliest items first when
    ``costs`` are given; with one worker, or a threading layer that does not take
    kernels from several threads, the calls run in this thread. ``done()`` is
    called here after each call. The first error is raised once the running calls
    end; the calls not yet started are dropped.
    """
    done = done if done is not None else (lambda: None)
    if workers <= 1 or not layer_takes_threads():
        results = []
        for x in items:
            results.append(fn(x))
            done()
        return results
    order = range(len(items)) if costs is None else np.argsort(-np.asarray(costs), kind="stable")
    results = [None] * len(items)
    inner = max(1, min(numba.get_num_threads(), available_threads()) // workers)
    with (
        single_threaded_blas(),
        ThreadPoolExecutor(workers, initializer=numba.set_num_threads, initargs=(inner,)) as pool,
    ):
        futures = {pool.submit(fn, items[i]): i for i in order}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                done()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results
