import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

from . import kernel_warmup

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
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    if not hasattr(config, "workerinput") and (config.getoption("numprocesses", None) or 0) != 0:
        _compile_before_workers()


def _compile_before_workers():
    """One process per dtype compiles the common kernels into the disk cache before
    the workers start (see ``tests/kernel_warmup.py``); about 3 s once cached."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_warmup.py")
    procs = [subprocess.Popen([sys.executable, script, dtype]) for dtype in kernel_warmup.DTYPES]
    for proc in procs:
        proc.wait()


@pytest.fixture(scope="session")
def warm_kernels():
    """Compile (or load from the on-disk cache) the kernels of a fit and a sample, for
    both dtypes and both assignment paths: for modules whose tests run ``hkmeans`` in
    this process and read its stderr (the compile notice comes first) or start
    processes that must not compile. Elsewhere kernels compile as tests first call
    them."""
    for dtype in kernel_warmup.DTYPES:
        kernel_warmup.warm(dtype)


@pytest.fixture(autouse=True)
def threads_as_set(monkeypatch):
    """Kernels on the threads a test sets, whatever else the machine runs (the load
    adaptation is tested on its own in test_threads.py)."""
    from hkmeans import _config, _threads

    monkeypatch.setattr(_config, "ADAPT_TO_LOAD", False)
    monkeypatch.setitem(_threads._available, "sample", None)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cudasim`` need numba imported with the CUDA simulator on
    (``NUMBA_ENABLE_CUDASIM=1``): in any other process they are deselected, and
    ``tests/test_cuda.py`` runs them in a process of their own."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return
    deselected = [item for item in items if "cudasim" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if "cudasim" not in item.keywords]
