"""Every backend keeps the declared contract (hkmeans.backends.protocol)."""

import importlib.util

import numpy as np
import pytest
from scipy import sparse

from hkmeans.backends import CPUBackend, SparseBackend, resolve
from hkmeans.backends.cuda import CUDABackend
from hkmeans.backends.protocol import Backend, LloydRunProtocol


def members(protocol):
    return sorted({name for name in vars(protocol) if not name.startswith("_")} | set(protocol.__annotations__))


def backend_classes():
    classes = [CPUBackend, SparseBackend, CUDABackend]
    if importlib.util.find_spec("distributed") is not None:
        from hkmeans.backends.dask import DaskBackend

        classes.append(DaskBackend)
    return classes


@pytest.mark.parametrize("cls", backend_classes(), ids=lambda c: c.__name__)
def test_every_backend_class_has_every_operation(cls):
    missing = [name for name in members(Backend) if name != "weights" and not hasattr(cls, name)]
    assert missing == [], f"{cls.__name__} lacks {missing}"


def test_in_process_backends_are_backends_and_their_runs_are_runs():
    X = np.random.default_rng(0).normal(size=(50, 3))
    for data in (X, sparse.csr_matrix(X)):
        backend = resolve(data)
        assert isinstance(backend, Backend)
        run = backend.lloyd_run(np.array([0, 2]), bounds=True)
        assert isinstance(run, LloydRunProtocol)
        run.search(X[:2].copy())
        labels, sqdist, inertia = run.finish(np.arange(2))
        assert labels.shape == (50,) and inertia == pytest.approx(sqdist.sum())
