"""The Dask backend: rows of a dask array chunked by rows, on a Dask cluster.

Every pass maps the in-process backend (:mod:`hkmeans.backends.cpu`) over the chunks.
What a pass returns to the engine is reduced chunk by chunk in a fixed order: a tree
of ``SPLIT_EVERY`` consecutive chunks at a time for float64 sums and counts, chunk
order on the client for the small ones (inertia, rows changed, farthest rows), so
results depend on the chunking but not on the workers, their threads or the order in
which tasks finish. Random draws come from one stream per chunk,
``SeedSequence(seed, spawn_key=(chunk,))``, ``seed`` drawn from the caller's generator.

Per-row state (labels, distances, Lloyd bounds, resampling subsets) stays on the
workers: in a scratch folder, one ``.npy`` per chunk read back chunk by chunk, when
there is one (see :func:`scratch_folder`); else as persisted dask arrays in their
memory. The client holds
O(k x d) per pass, plus the rows it gathers.

With ``device="cuda"`` each chunk's kernels run on its worker's GPU
(:class:`~hkmeans.backends.cuda.CUDABackend`, one GPU per worker as
``dask_cuda.LocalCUDACluster`` starts them); a worker keeps the chunks it has copied to
its device, up to half the device's memory, for the next passes.

Modules: :mod:`~.client` (where the tasks run), :mod:`~.tasks` (per-chunk tasks),
:mod:`~.reductions` (in a fixed order), :mod:`~.selection` (rows per cluster by
score), :mod:`~.storage` (rows and per-row state in files), :mod:`~.backend` (the
backend and its Lloyd runs), :mod:`~.arrays` (per-row arrays outside a fit), :mod:`~.dedup` (near-duplicate
search group by group).
"""

from __future__ import annotations

from ..._threads import numba_threads_from_environment
from . import dedup
from .arrays import LAZY
from .backend import DaskBackend, DaskLloydRun, as_rows
from .client import (
    check_workers,
    cluster_layout,
    compute,
    connect,
    local_client,
    local_cuda_client,
    persist,
    pick_client,
    scratch_folder,
    using,
)
from .reductions import counts, lookup, random_scores
from .selection import gather_rows, select, subset, thresholds
from .storage import pool_array

# first in a worker, before any kernel starts Numba's threads
numba_threads_from_environment()

__all__ = [
    "LAZY",
    "DaskBackend",
    "DaskLloydRun",
    "as_rows",
    "check_workers",
    "cluster_layout",
    "compute",
    "connect",
    "counts",
    "dedup",
    "gather_rows",
    "local_client",
    "local_cuda_client",
    "lookup",
    "persist",
    "pick_client",
    "pool_array",
    "random_scores",
    "scratch_folder",
    "select",
    "subset",
    "thresholds",
    "using",
]
