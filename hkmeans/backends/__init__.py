"""Backends: where the rows of the data live and how a pass over them runs.

The engine reaches the big array only through a backend, whose operations are whole
passes over the rows: the contract is :class:`~hkmeans.backends.protocol.Backend`
(a :class:`typing.Protocol`, checked by a test for every backend), and
:func:`resolve` picks the backend for the data given.

:class:`~hkmeans.backends.cpu.CPUBackend` runs on this machine's cores;
:class:`~hkmeans.backends.cuda.CUDABackend` on an NVIDIA GPU (numba-cuda, imported only
when one is made).
"""

from __future__ import annotations

import copy
import sys
from typing import TYPE_CHECKING

import numpy as np
from scipy import sparse

from .._validation import check
from .cpu import CPUBackend
from .csr import SparseBackend
from .cuda import CUDABackend
from .in_memory import IN_MEMORY
from .protocol import Backend, LloydRunProtocol, PerRowArrays

__all__ = [
    "Backend",
    "CPUBackend",
    "CUDABackend",
    "Detached",
    "DetachedWhenPickled",
    "LloydRunProtocol",
    "PerRowArrays",
    "SparseBackend",
    "arrays_of",
    "check_backend",
    "dask_module",
    "picklable",
    "resolve",
    "runs_on_dask",
]


def is_dask(a) -> bool:  # the one test of an array's kind, here only
    """Whether ``a`` is a dask array (without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(a, da.Array)


def dask_module():
    """:mod:`hkmeans.backends.dask`; an ImportError of one line without dask."""
    try:
        from . import dask
    except ImportError as e:
        raise ImportError(f'The dask backend needs dask and distributed ({e}): pip install "hkmeans[dask]"') from None
    return dask


def check_backend(X, backend: str) -> None:
    """A one-line ValueError if ``backend`` does not take data ``X``."""
    if backend == "cpu" and is_dask(X):
        raise ValueError('backend="cpu" takes an in-memory array, got a dask array: use backend="dask" or "auto".')
    if backend == "dask" and sparse.issparse(X):
        raise ValueError('backend="dask" takes a dense or dask array, got a sparse matrix: use backend="cpu".')


def runs_on_dask(X, backend: str) -> bool:
    """Whether work on data ``X`` with ``backend`` runs on Dask (checked by
    :func:`check_backend`)."""
    return backend == "dask" or (backend == "auto" and is_dask(X))


def resolve(X, device: str = "cpu", client=None, backend: str = "auto", persist: bool = True) -> Backend:
    """The backend for data ``X`` on ``device``: ``X`` itself if it already is one; a
    :class:`~hkmeans.backends.dask.DaskBackend` (on ``client``, see
    :func:`hkmeans.backends.dask.pick_client`) for a dask array or when ``backend``
    is "dask"; a :class:`~hkmeans.backends.csr.SparseBackend` over a sparse CSR
    matrix; else a :class:`CPUBackend`, or for ``device="cuda"`` a
    :class:`~hkmeans.backends.cuda.CUDABackend`, over the array (validated: 2-D,
    C-ordered float32 or float64, finite). ``persist=False`` keeps a dask backend's
    per-row results lazy (prediction)."""
    check("device", device)
    check("backend", backend)
    if hasattr(X, "lloyd_run"):
        return X
    check_backend(X, backend)
    if runs_on_dask(X, backend):
        return dask_module().DaskBackend(X, client, persist=persist, device=device)
    if sparse.issparse(X):
        if device != "cpu":
            raise ValueError(f'device={device!r} takes dense input; sparse matrices run on device="cpu".')
        return SparseBackend(X)
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    return CUDABackend(X) if device == "cuda" else CPUBackend(X)


def arrays_of(a) -> PerRowArrays:
    """The :class:`~hkmeans.backends.protocol.PerRowArrays` for rows or a per-row
    array ``a``: lazy on a Dask cluster for a dask array, else in memory."""
    return dask_module().LAZY if is_dask(a) else IN_MEMORY


if TYPE_CHECKING:  # every backend and per-row kind conforms, checked by the type checker
    from .dask import DaskBackend
    from .dask.arrays import DaskArrays
    from .in_memory import InMemoryArrays

    def _conformance(
        cpu: CPUBackend,
        csr: SparseBackend,
        cuda: CUDABackend,
        dask: DaskBackend,
        memory: InMemoryArrays,
        lazy: DaskArrays,
    ) -> tuple[Backend, Backend, Backend, Backend, PerRowArrays, PerRowArrays]:
        return cpu, csr, cuda, dask, memory, lazy


#: What using per-row state that stayed on a Dask cluster, in an unpickled copy, says.
DETACHED = (
    "this object was unpickled from a fit on Dask, whose per-row state (labels, "
    "distances) stays with the cluster of the fit and is not pickled; keep it with "
    "model.tree_.save(path) before pickling and read it with ClusterTree.load(path)."
)


class Detached:
    """Stands in, in an unpickled copy, for a per-row array of a fit on Dask: its
    chunks live in the workers' memory or a scratch folder of the fitting process,
    which a copy elsewhere (or later) cannot reach. Its shape and dtype remain; any
    other use (NumPy, indexing, comparison, arithmetic, truth) raises a ValueError of
    one line (:data:`DETACHED`)."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __getattr__(self, name):
        if name.startswith("__"):  # protocols probed by pickle and Dask
            raise AttributeError(name)
        raise ValueError(DETACHED)

    def __repr__(self) -> str:
        return f"<per-row array of shape {self.shape} left with the Dask cluster of its fit>"


def _refuse(self, *args, **kwargs):
    raise ValueError(DETACHED)


# NumPy's functions dispatch on __array_function__ before they convert (array_equal
# would return False on the conversion's error), comparisons would fall back to
# identity: every such use raises
for _name in (
    "__array__ __array_function__ __array_ufunc__ __getitem__ __len__ __iter__ __bool__ __int__ __float__ "
    "__index__ __eq__ __ne__ __lt__ __le__ __gt__ __ge__ __neg__ __pos__ __abs__ __invert__"
).split() + [
    f"__{r}{op}__"
    for op in "add sub mul matmul truediv floordiv mod pow and or xor lshift rshift".split()
    for r in ("", "r")
]:
    setattr(Detached, _name, _refuse)


class DetachedArrays:
    """The per-row arrays of an unpickled copy of a fit on Dask (:class:`Detached`
    labels and distances): every operation raises the ValueError of one line
    (:data:`DETACHED`)."""

    lazy = True

    def __getattr__(self, name):
        if name.startswith("__"):  # protocols probed by pickle and copy
            raise AttributeError(name)
        raise ValueError(DETACHED)


DETACHED_ARRAYS = DetachedArrays()


class DetachedWhenPickled:
    """Pickles an object (a model, a level, a tree) with each dask array of its state
    replaced by a :class:`Detached` stand-in: a copy of a fit on Dask carries its
    centroids, not futures of the cluster it was fitted on (which fail once the
    original is gone, or in another process) nor its per-row state (n rows gathered
    into every copy, every task a model is sent to). :func:`copy.copy` and
    :func:`copy.deepcopy` in this process keep that state."""

    def __getstate__(self):
        return picklable(super().__getstate__() or {})  # type: ignore[misc]

    def __copy__(self):
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo):
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return new


def picklable(state: dict) -> dict:
    """``state`` (an object's ``__dict__``, to pickle) with each dask array in it,
    alone or in a tuple or list, replaced by a :class:`Detached` stand-in, and the
    per-row arrays of dask arrays by :data:`DETACHED_ARRAYS`: a copy loads where dask
    is not installed."""

    def one(value):
        if is_dask(value):
            return Detached(value.shape, value.dtype)
        if getattr(type(value), "lazy", False) is True:  # on the type: a Detached refuses attributes
            return DETACHED_ARRAYS
        if isinstance(value, (tuple, list)) and any(is_dask(v) for v in value):
            return type(value)(one(v) for v in value)
        return value

    return {name: one(value) for name, value in state.items()}
