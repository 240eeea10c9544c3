"""Calls side by side on Numba's threads, and BLAS held to one thread meanwhile."""

import os
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
    numba.set_num_threads(2)  # a share of one each, whatever the cores (the fixture restores it)
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


def test_cgroup_quota_rounds_up_and_no_quota_is_none(tmp_path):
    from hkmeans._threads import cgroup_cpus

    v2 = tmp_path / "cpu.max"
    v2.write_text("150000 100000\n")
    assert cgroup_cpus([str(v2)]) == 2
    v2.write_text("max 100000\n")
    assert cgroup_cpus([str(v2)]) is None
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpus([str(tmp_path / "absent"), str(v1 / "cpu.cfs_quota_us")]) == 3
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpus([str(v1 / "cpu.cfs_quota_us")]) is None
    v2.write_text("garbage")
    assert cgroup_cpus([str(v2)]) is None


def test_busy_elsewhere_leaves_out_this_process_and_reads_proc_stat(tmp_path):
    from hkmeans import _threads

    # 3 s apart, the machine busy for 5 s more, of which this process 1.5 s: 3.5 / 3 cores elsewhere
    assert _threads.busy_elsewhere((10.0, 100.0, 2.0), (13.0, 105.0, 3.5)) == pytest.approx(3.5 / 3)
    assert _threads.busy_elsewhere((10.0, 100.0, 2.0), (13.0, 100.5, 3.5)) == 0.0
    (tmp_path / "stat").write_text("cpu  100 900 50 1000 5 3 2 0 0 0\ncpu0 1 2 3\n")
    _, busy, _ = _threads.cpu_sample(str(tmp_path))
    assert busy == pytest.approx(1055 / os.sysconf("SC_CLK_TCK"))  # user, nice, system, irq, softirq
    (tmp_path / "stat").write_text("intr 1 2 3\n")
    with pytest.raises(ValueError):
        _threads.cpu_sample(str(tmp_path))


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="needs Linux's /proc/stat")
def test_busy_processes_are_seen_niced_or_not():
    import subprocess
    import sys

    from hkmeans import _threads

    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=(lambda n=n: os.nice(n)))
        for n in (0, 19)
    ]
    try:
        time.sleep(0.2)
        before, used = _threads.cpu_sample(), sum(map(_cpu_seconds, (h.pid for h in hogs)))
        time.sleep(0.6)
        after, used = _threads.cpu_sample(), sum(map(_cpu_seconds, (h.pid for h in hogs))) - used
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    # what the two took (others may have taken more), to the clock tick
    assert _threads.busy_elsewhere(before, after) >= (used - 0.03) / (after[0] - before[0]) > 0.2


def test_threads_are_taken_away_while_others_keep_cores_busy(monkeypatch):
    from hkmeans import _config, _threads

    monkeypatch.setattr(_config, "ADAPT_TO_LOAD", True)
    monkeypatch.setattr(_threads, "usable_cpus", lambda: 4)
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(_threads, "cpu_sample", lambda: (1.0, 3.0, 0.1))
    monkeypatch.setattr(_threads.time, "monotonic", lambda: 1.0)
    monkeypatch.setitem(_threads._available, "sample", None)
    assert _threads.available_threads() == 4  # the first look: nothing to compare with
    _threads._available["sample"] = (0.0, 0.0, 0.0)
    assert _threads.available_threads() == 1  # 2.9 cores busy elsewhere over the last second
    monkeypatch.setattr(_threads, "cpu_sample", lambda: (1.0, 0.6, 0.1))
    _threads._available["sample"] = (0.0, 0.0, 0.0)
    assert _threads.available_threads() == 4  # 0.5 of a core: not enough to give one up
    # a process restricted to some cores (taskset, a quota) is given its share: no adaptation
    monkeypatch.setattr(_threads, "usable_cpus", lambda: 2)
    _threads._available["sample"] = (0.0, 0.0, 0.0)
    assert _threads.available_threads() == 2


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two threads")
def test_small_passes_run_on_one_thread_and_the_setting_is_restored():
    from hkmeans import _config
    from hkmeans._threads import kernel_threads

    numba.set_num_threads(2)  # not the one thread per test of two workers on two cores
    before = numba.get_num_threads()
    with kernel_threads(_config.PARALLEL_WORK - 1):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == before
    with kernel_threads(_config.PARALLEL_WORK):
        assert numba.get_num_threads() == min(before, 2)
    assert numba.get_num_threads() == before


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs Linux's CPU affinity")
def test_one_cpu_under_taskset_means_one_thread():
    import subprocess
    import sys

    code = (
        "import numba; from hkmeans._threads import kernel_threads\n"
        "with kernel_threads(): print(numba.get_num_threads())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}),
    )
    assert out.stdout.split() == ["1"]
