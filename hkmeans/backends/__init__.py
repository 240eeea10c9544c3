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

import sys

import numpy as np
from scipy import sparse

from .._params import BACKENDS, DEVICES
from .cpu import CPUBackend
from .csr import SparseBackend
from .cuda import CUDABackend
from .protocol import Backend, LloydRunProtocol

__all__ = [
    "Backend",
    "CPUBackend",
    "CUDABackend",
    "LloydRunProtocol",
    "SparseBackend",
    "dask_module",
    "is_dask",
    "lookup",
    "resolve",
]


def is_dask(a) -> bool:
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


def resolve(X, device: str = "cpu", client=None, backend: str = "auto") -> Backend:
    """The backend for data ``X`` on ``device``: ``X`` itself if it already is one; a
    :class:`~hkmeans.backends.dask.DaskBackend` (on ``client``, see
    :func:`hkmeans.backends.dask.pick_client`) for a dask array or when ``backend``
    is "dask"; a :class:`~hkmeans.backends.csr.SparseBackend` over a sparse CSR
    matrix; else a :class:`CPUBackend`, or for ``device="cuda"`` a
    :class:`~hkmeans.backends.cuda.CUDABackend`, over the array (validated: 2-D,
    C-ordered float32 or float64, finite)."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}.")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    if hasattr(X, "lloyd_run"):
        return X
    if backend == "dask" or (backend == "auto" and is_dask(X)):
        return dask_module().DaskBackend(X, client, device=device)
    if is_dask(X):
        raise ValueError('backend="cpu" takes an in-memory array, got a dask array: use backend="dask" or "auto".')
    if sparse.issparse(X):
        if device != "cpu":
            raise ValueError(f'device={device!r} takes dense input; sparse matrices run on device="cpu".')
        return SparseBackend(X)
    X = X if isinstance(X, np.ndarray) else np.asarray(X)
    return CUDABackend(X) if device == "cuda" else CPUBackend(X)


def lookup(table: np.ndarray, labels):
    """``table[labels]``: for dask ``labels``, lazily, chunk by chunk."""
    return dask_module().lookup(table, labels) if is_dask(labels) else table[labels]
