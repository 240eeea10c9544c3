"""Calls side by side on Numba's threads, and BLAS held to one thread meanwhile."""

import threading
import time

import numba
import pytest
from threadpoolctl import threadpool_info

from hkmeans._threads import layer_takes_threads, map_side_by_side, single_threaded_blas


def blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_results_in_item_order_whatever_runs_first():
    costs = [1, 5, 2, 4, 3]
    started = []

    def fn(x):
        started.append(x)
        return x * x

    assert map_side_by_side(fn, [0, 1, 2, 3, 4], workers=2, costs=costs) == [0, 1, 4, 9, 16]
    assert sorted(started) == [0, 1, 2, 3, 4]
    assert map_side_by_side(fn, [3, 1], workers=1) == [9, 1]


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_calls_run_on_one_thread_each_with_blas_on_one_thread():
    if not layer_takes_threads():
        pytest.skip("Numba's threading layer runs kernels from one thread at a time")
    with single_threaded_blas():  # loads the BLAS the kernels call
        pass
    before = blas_threads()
    if not before or max(before) == 1:
        pytest.skip("BLAS already runs on one thread")
    both_inside = threading.Barrier(2, timeout=30)

    def fn(_):
        both_inside.wait()  # two calls at once, each on its own worker
        with single_threaded_blas():  # as each k-means does: leaves the caller's limit set
            pass
        return threading.get_ident(), numba.get_num_threads(), max(blas_threads())

    seen = map_side_by_side(fn, [0, 1], workers=2)
    assert len({ident for ident, _, _ in seen}) == 2
    assert [(n, b) for _, n, b in seen] == [(1, 1), (1, 1)]
    assert blas_threads() == before  # the limit is lifted afterwards


def test_first_error_is_raised_and_later_calls_dropped():
    ran = []

    def fn(x):
        ran.append(x)
        if x == 0:
            raise MemoryError("no room")
        time.sleep(0.01)
        return x

    with pytest.raises(MemoryError, match="no room"):
        map_side_by_side(fn, list(range(50)), workers=2)
    assert len(ran) < 50


def test_one_thread_when_the_layer_cannot_take_kernels_from_several(monkeypatch):
    monkeypatch.setattr(numba, "threading_layer", lambda: "workqueue")
    here = threading.get_ident()
    assert map_side_by_side(lambda x: threading.get_ident(), [0, 1, 2], workers=2) == [here] * 3
