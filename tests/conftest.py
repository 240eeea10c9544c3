import os
import shutil
import sys
import tempfile
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=30,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config):
    """Processes the tests start (shell examples, ``python -m hkmeans``, Dask workers)
    import the same copy of the package as the tests, so they share its kernel cache
    instead of compiling an installed copy's kernels again."""
    import hkmeans

    root = os.path.dirname(os.path.dirname(os.path.abspath(hkmeans.__file__)))
    # the cost model's measured rates, kept out of the user's cache (one folder for
    # the run, made by the first process, which removes it)
    if "HKMEANS_CACHE_DIR" not in os.environ:
        os.environ["HKMEANS_CACHE_DIR"] = config._hkmeans_rates = tempfile.mkdtemp(prefix="hkmeans-rates-")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        simulate_briskly()


def simulate_briskly():
    """The simulator runs a block's threads as Python threads and polls them from
    another that only waits: handing the GIL on every 0.1 ms instead of every 5 ms
    halves the time of a simulated fit. Its shared arrays are made on first use by
    whichever thread of the block gets there first, unguarded; with threads switched
    that often, two threads could each make one (and a sort lose a row), so here a
    lock guards the making."""
    from numba import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    sys.setswitchinterval(1e-4)
    make, lock = kernelapi.FakeCUDAShared.array, threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory: one buffer already
            return make(self, shape, dtype, alignment)
        caller = sys._getframe(1)  # the simulator's key too: the line that asks
        key = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            if key not in self._allocations:
                dtype = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else dtype
                self._allocations[key] = np.empty(shape, dtype)
            return self._allocations[key]

    kernelapi.FakeCUDAShared.array = array


def pytest_unconfigure(config):
    if hasattr(config, "_hkmeans_rates"):
        shutil.rmtree(config._hkmeans_rates, ignore_errors=True)


@pytest.fixture(scope="session")
def warm_kernels():
    """Compile (or load from the on-disk cache) the kernels of a fit and a sample, for
    both dtypes and both assignment paths: for modules whose tests run ``hkmeans`` in
    this process and read its stderr (the compile notice comes first) or start
    processes that must not compile. Elsewhere kernels compile as tests first call
    them."""
    from hkmeans import HierarchicalKMeans

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for d in (2, 40):
            X = rng.normal(size=(60, d)).astype(dtype)
            m = HierarchicalKMeans((6, 3), n_resamples=1, random_state=0).fit(X)
            m.sample(20, strategy="closest")
            m.sample(20)


@pytest.fixture(autouse=True)
def threads_as_set(monkeypatch):
    """Kernels on the threads a test sets, whatever else the machine runs (the load
    adaptation is tested on its own in test_threads.py); by default on this worker's
    share of the cores when pytest-xdist runs several, as scikit-learn's suite does:
    with every core each, a parallel loop of one worker waits for a thread the other
    holds (see docs/developer/testing.md). Tests of several threads set them."""
    import numba

    from hkmeans import _config, _threads

    monkeypatch.setattr(_config, "ADAPT_TO_LOAD", False)
    monkeypatch.setitem(_threads._available, "sample", None)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(before, _threads.usable_cpus() // workers)))
    yield
    numba.set_num_threads(before)


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected theirs
def pytest_collection_modifyitems(config, items):
    """Tests marked ``cudasim`` need numba imported with the CUDA simulator on
    (``NUMBA_ENABLE_CUDASIM=1``): in any other process they are deselected, and
    ``tests/test_cuda.py`` runs them in processes of their own. The others run
    :func:`heavy_first`."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    deselected = [item for item in items if "cudasim" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if "cudasim" not in item.keywords]
    items[:] = heavy_first(items)


def _movable_slow(item) -> bool:
    """Marked ``slow`` and sharing no module-scoped fixture (a cluster, a built site)
    with its neighbours, so it can run away from them without a second setup."""
    if item.get_closest_marker("slow") is None:
        return False
    defs = getattr(item, "_fixtureinfo", None)
    scopes = [d.scope for ds in (defs.name2fixturedefs.values() if defs else ()) for d in ds]
    return all(scope in ("function", "session") for scope in scopes)


def heavy_first(items: list) -> list:
    """The movable slow tests at the heads of the two halves that pytest-xdist's
    ``worksteal`` hands its two workers (longest first, by the marker's ``seconds``),
    so that a run ends on short tests instead of one worker waiting for a long one."""
    heavy = sorted(
        (item for item in items if _movable_slow(item)),
        key=lambda item: -item.get_closest_marker("slow").kwargs.get("seconds", 0),
    )
    chosen = set(map(id, heavy))
    rest = [item for item in items if id(item) not in chosen]
    head, other = heavy[0::2], heavy[1::2]
    cut = max(0, len(items) // 2 - len(head))
    return head + rest[:cut] + other + rest[cut:]


@pytest.fixture
def counted(monkeypatch):
    """Flops of every search (2 x rows x centres x features, whatever the bounds
    skip) and seeding (2 x rows x features per candidate) a fit makes on the CPU."""
    from hkmeans.backends import cpu

    work = {"search": 0.0, "seeding": 0.0}
    search, seeding = cpu.search, cpu.CPUBackend.kmeans_plusplus

    def counting_search(X, centers, *args, **kwargs):
        work["search"] += 2.0 * X.shape[0] * centers.shape[0] * X.shape[1]
        return search(X, centers, *args, **kwargs)

    def counting_seeding(self, order, first, rand, weights):
        work["seeding"] += 2.0 * self.X.shape[0] * self.X.shape[1] * rand.size
        return seeding(self, order, first, rand, weights)

    monkeypatch.setattr(cpu, "search", counting_search)
    monkeypatch.setattr(cpu.CPUBackend, "kmeans_plusplus", counting_seeding)
    return work
