"""Threads: BLAS held to one thread while the kernels parallelise over rows, and
calls run side by side on Numba's threads."""

from __future__ import annotations

import functools
import importlib
from concurrent.futures import ThreadPoolExecutor, as_completed

import numba
import numpy as np
from threadpoolctl import ThreadpoolController


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
    inner = max(1, numba.get_num_threads() // workers)
    with single_threaded_blas(), ThreadPoolExecutor(workers, initializer=numba.set_num_threads, initargs=(inner,)) as pool:
        futures = {pool.submit(fn, items[i]): i for i in order}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                done()
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
    return results
