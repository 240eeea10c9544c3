"""The CUDA backend: rows on an NVIDIA GPU through Numba's CUDA target.

The data are copied to the device once and stay there across Lloyd iterations and
resampling steps; data larger than the device budget stay in host memory and are
streamed in blocks of ``block_rows`` rows, every pass. The per-row state of a run
(labels, squared distances: 16 bytes a row) always lives on the device; a Lloyd pass
brings back only the float64 sums, counts, inertia and rows changed. Searches run
without bounds (every row against every centre, each pass). The distance block is one
cuBLAS GEMM through CuPy where CuPy is installed (its argmin fused in a Numba kernel),
else the tiled Numba kernel.
"""

from __future__ import annotations

import importlib.util
import math
from types import SimpleNamespace

import numpy as np

from .._kernels.cpu.seeding import best_trial
from .cpu import CPUBackend, HostRows, LloydStep
from .in_memory import normalize_rows

#: Share of the device's free memory the data may take before they are streamed.
DEVICE_SHARE = 0.5

#: Entries of the (chunks x clusters) table of the counting sort, at most: rows per
#: chunk grow with n x k past it.
GROUP_ENTRIES = 1 << 24

#: Rows per chunk of the counting sort, at least (a block of threads places a chunk's
#: rows, a tile of ``threads`` rows at a time).
GROUP_ROWS = 1024

#: Positions per piece of the segmented sums, at least: pieces of ``max(SUM_ROWS,
#: isqrt(n))`` positions, so that neither pass walks more than about ``sqrt(n)``.
SUM_ROWS = 256

#: Entries per tile of the scans and column sums (one thread adds a tile).
SCAN_TILE = 32

#: How far, in bounds on the rounding, a seeding draw's target must lie from the
#: cumulative sums of the parallel scan for the scan to decide it (else the running
#: sum does, as on the CPU).
DRAW_SLACK = 2.0

#: Bytes of the dot-product block of the GEMM path (rows x centres).
GEMM_BYTES = 256 << 20

#: Launch shape by default: threads per CUDA block (a power of two), and centres and
#: features per shared-memory tile of the tiled search.
THREADS = 256
TILE_K = 32
TILE_D = 16
#: Most threads per block on every CUDA card.
MAX_THREADS = 1024
#: Most static shared memory per block on every CUDA card.
MAX_SHARED_BYTES = 48 * 1024


def check_available() -> None:
    """A one-line ``RuntimeError`` unless numba-cuda is installed and sees a GPU (or
    runs its simulator, ``NUMBA_ENABLE_CUDASIM=1``)."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise RuntimeError("device='cuda' needs the numba-cuda package: pip install 'hkmeans[cuda]'.")
    from .._kernels.cuda._common import cuda

    if not cuda.is_available():
        raise RuntimeError(
            "device='cuda' but no CUDA GPU is visible to numba-cuda; check the driver (nvidia-smi) or use device='cpu'."
        )


def _kernels():
    """The CUDA kernel modules, imported on first use."""
    from .._kernels.cuda import _common, assign, groups, seeding, select

    return SimpleNamespace(
        common=_common, cuda=_common.cuda, assign=assign, groups=groups, seeding=seeding, select=select
    )


def _cupy_gemm():
    """``gemm(A, B, out)``: ``out = A @ B.T`` by cuBLAS through CuPy, or None where CuPy
    is missing or the simulator runs."""
    from numba import config

    if config.ENABLE_CUDASIM or importlib.util.find_spec("cupy") is None:
        return None
    import cupy

    def gemm(A, B, out):
        cupy.matmul(cupy.asarray(A), cupy.asarray(B).T, out=cupy.asarray(out))

    return gemm


class CUDABackend(HostRows):
    """Rows of a 2-D, C-ordered, finite float32 or float64 array, searched on the GPU.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Kept on the host too: ``take`` reads it there.
    device_bytes : int, optional
        Most bytes the data may take on the device (default: half its free memory);
        larger data are streamed.
    block_rows : int, optional
        Rows per block of a pass (default: all rows when they fit, else what
        ``device_bytes`` holds); rounded down to a multiple of ``threads``.
    threads : int, optional
        Threads per CUDA block, a power of two (also the rows per block of the
        seeding); default :data:`THREADS`.
    tile_k, tile_d : int, optional
        Centres and features per shared-memory tile of the tiled search; default
        :data:`TILE_K`, :data:`TILE_D`.
    gemm : "auto", None or callable
        ``gemm(A, B, out)`` computing ``out = A @ B.T`` on device arrays for the search;
        "auto" is cuBLAS through CuPy where installed; None the tiled kernel.
    """

    name = "cuda"
    #: k-means++ runs greedily, one pass per centre (see :mod:`hkmeans.seeding`)
    greedy_seeding = True
    #: sample weights are not supported on this backend yet (see :meth:`weighted`)
    weights = None
    #: a Lloyd run's state (its labels) can be saved and read back
    resumable_runs = True

    def __init__(self, X, *, device_bytes=None, block_rows=None, threads=None, tile_k=None, tile_d=None, gemm="auto"):
        check_available()
        threads, tile_k, tile_d = threads or THREADS, tile_k or TILE_K, tile_d or TILE_D
        if threads < 1 or threads & (threads - 1) or threads > MAX_THREADS:
            raise ValueError(f"threads must be a power of two up to {MAX_THREADS}, got {threads}.")
        self.gemm = _cupy_gemm() if gemm == "auto" else gemm
        shared = (threads + tile_k) * tile_d * X.dtype.itemsize
        if self.gemm is None and (min(tile_k, tile_d) < 1 or shared > MAX_SHARED_BYTES):
            raise ValueError(
                f"threads={threads}, tile_k={tile_k}, tile_d={tile_d}: the tiled search would take {shared} bytes "
                f"of shared memory per block (at most {MAX_SHARED_BYTES}) for {X.dtype} rows."
            )
        self.X = X
        self.k = _kernels()
        self.options = dict(
            device_bytes=device_bytes, block_rows=block_rows, threads=threads, tile_k=tile_k, tile_d=tile_d, gemm=gemm
        )
        self.threads, self.tile_k, self.tile_d = threads, tile_k, tile_d
        n, d = X.shape
        row_bytes = max(1, d * X.dtype.itemsize)
        if device_bytes is None:
            device_bytes = DEVICE_SHARE * self.k.cuda.current_context().get_memory_info().free
        self.resident = X.nbytes <= device_bytes
        rows = block_rows or (max(n, 1) if self.resident else int(device_bytes // row_bytes))
        self.block_rows = max(threads, rows // threads * threads)
        self._dX = self.k.cuda.to_device(X) if self.resident else None

    def _grid(self, n):
        return self.k.common.blocks(n, self.threads), self.threads

    def _blocks(self):
        """``(first row, device block)`` over the rows, in order: views of the resident
        copy, or blocks copied from the host."""
        for a in range(0, self.X.shape[0], self.block_rows):
            e = min(a + self.block_rows, self.X.shape[0])
            yield a, (self._dX[a:e] if self.resident else self.k.cuda.to_device(self.X[a:e]))

    def _empty(self, shape, dtype, value=None):
        out = self.k.cuda.device_array(shape, dtype=dtype)
        if value is not None and out.size:
            fill = self.k.common.fill if out.ndim == 1 else self.k.common.fill_2d
            fill[self._grid(out.size)](out, value)
        return out

    def take(self, rows, out=None) -> np.ndarray:
        """Rows ``rows`` of the data (from the host copy), into ``out`` if given."""
        return CPUBackend.take(self, rows, out)  # type: ignore[arg-type]  # reads self.X alone

    def _search(self, centers, labels, sqdist) -> None:
        """Nearest centres of every row into the device arrays ``labels``, ``sqdist``."""
        k = self.k
        C = k.cuda.to_device(np.ascontiguousarray(centers, dtype=self.X.dtype))
        c_sq = k.cuda.device_array(C.shape[0], dtype=self.X.dtype)
        k.assign.row_sq_norms[self._grid(C.shape[0])](C, c_sq)
        if self.gemm is None:
            nearest = k.assign.nearest_kernel(self.X.dtype, self.threads, self.tile_k, self.tile_d)
            for a, Xb in self._blocks():
                nearest[self._grid(Xb.shape[0])](Xb, C, c_sq, labels, sqdist, a)
            return
        rows = max(1, min(self.block_rows, GEMM_BYTES // max(1, C.shape[0] * self.X.dtype.itemsize)))
        G = k.cuda.device_array((rows, C.shape[0]), dtype=self.X.dtype)
        for a, Xb in self._blocks():
            for s in range(0, Xb.shape[0], rows):
                Xs = Xb[s : s + rows]
                Gs = G[: Xs.shape[0]]
                self.gemm(Xs, C, Gs)
                k.assign.argmin_dots[self._grid(Xs.shape[0])](Gs, Xs, C, c_sq, labels, sqdist, a + s)

    def assign(self, centers):
        """Nearest centre of each row: ``(labels int64, squared distances float64)``."""
        labels = self._empty(self.X.shape[0], np.int64)
        sqdist = self._empty(self.X.shape[0], np.float64)
        self._search(centers, labels, sqdist)
        return labels.copy_to_host(), sqdist.copy_to_host()

    def routed_assign(self, parents, child_offsets, children):
        """Each row's nearest of ``children[child_offsets[p] : child_offsets[p + 1]]``,
        ``p`` its nearest parent: ``(labels into children, squared distances)``."""
        n = self.X.shape[0]
        nearest = self._empty(n, np.int64)
        sqdist = self._empty(n, np.float64)
        self._search(parents, nearest, sqdist)
        p = nearest.copy_to_host()
        offsets = np.asarray(child_offsets, dtype=np.int64)
        lo, hi = self.k.cuda.to_device(offsets[p]), self.k.cuda.to_device(offsets[p + 1])
        C = self.k.cuda.to_device(np.ascontiguousarray(children, dtype=self.X.dtype))
        for a, Xb in self._blocks():
            self.k.assign.nearest_in_ranges[self._grid(Xb.shape[0])](Xb, C, lo, hi, nearest, sqdist, a)
        return nearest.copy_to_host(), sqdist.copy_to_host()

    def _scan(self, a, out, inclusive):
        """Prefix sums of the columns of the 2-D device array ``a`` into ``out`` (may be
        ``a``), by tiles of :data:`SCAN_TILE` rows: the tiles' sums are scanned the same
        way, then each tile adds its rows to its offset."""
        c = self.k.common
        rows, cols = a.shape
        n_tiles = -(-rows // SCAN_TILE)
        offsets = self._empty((n_tiles, cols), a.dtype, 0)
        if n_tiles > 1:
            c.tile_sums[self._grid(n_tiles * cols)](a, SCAN_TILE, offsets)
            self._scan(offsets, offsets, False)
        c.tile_scan[self._grid(n_tiles * cols)](a, SCAN_TILE, offsets, out, inclusive)

    def _column_sums(self, a):
        """Sums of the columns of the 2-D device array ``a`` (a device array of one
        row), by tiles of :data:`SCAN_TILE` rows, then tiles of those sums."""
        while a.shape[0] > 1:
            out = self.k.cuda.device_array((-(-a.shape[0] // SCAN_TILE), a.shape[1]), dtype=a.dtype)
            self.k.common.tile_sums[self._grid(out.size)](a, SCAN_TILE, out)
            a = out
        return a

    def _group(self, labels, k):
        """CSR of device ``labels`` (values in ``[0, k)``): device ``offsets``, ``order``
        (members in row order) and the host counts. A stable counting sort over chunks
        of rows: counts per (chunk, cluster), scanned along the chunks, then each
        chunk's rows placed by a block of threads."""
        g = self.k.groups
        n = labels.shape[0]
        chunk = max(GROUP_ROWS, -(-n * k // GROUP_ENTRIES))
        n_chunks = max(1, -(-n // chunk))
        counts = self._empty((n_chunks, k), np.int64, 0)
        g.chunk_counts[self._grid(n)](labels, chunk, counts)
        starts = self._empty((n_chunks, k), np.int64)
        self._scan(counts, starts, False)
        totals = starts[n_chunks - 1].copy_to_host() + counts[n_chunks - 1].copy_to_host()
        offsets = self.k.cuda.to_device(np.concatenate([[0], np.cumsum(totals)]).astype(np.int64))
        order = self._empty(n, np.int64)
        scatter = g.scatter_kernel(self.threads)
        scatter[min(n_chunks, self.k.common.MAX_BLOCKS), self.threads](labels, chunk, offsets, starts, order)
        return offsets, order, totals

    def _segment_sums(self, X, labels, offsets, order, sums):
        """``sums[c]`` += the float64 sum of the rows of the 2-D device array ``X`` in
        cluster ``c`` (CSR ``offsets``, ``order``; ``labels`` the rows' clusters): a
        segmented reduction over pieces of positions, then over the pieces of each
        cluster, in an order fixed by the number of rows."""
        g = self.k.groups
        n, d = X.shape
        piece = max(SUM_ROWS, math.isqrt(n))
        n_pieces = -(-n // piece)
        head = self.k.cuda.device_array((n_pieces, d), dtype=np.float64)
        tail = self.k.cuda.device_array((n_pieces, d), dtype=np.float64)
        g.piece_sums[self._grid(n_pieces * d)](X, labels, offsets, order, piece, sums, head, tail)
        g.join_pieces[self._grid(sums.size)](offsets, piece, head, tail, sums)

    def _sums(self, labels, k, sqdist=None):
        """Per-cluster float64 sums (host), counts (host) and, with device ``sqdist``,
        the inertia: block by block (:meth:`_segment_sums`), blocks added in order."""
        sums = self._empty((k, self.X.shape[1]), np.float64, 0.0)
        inertia = self._empty((k, 1), np.float64, 0.0)
        counts = np.zeros(k, dtype=np.int64)
        for a, Xb in self._blocks():
            m = Xb.shape[0]
            block_labels = labels[a : a + m]
            offsets, order, totals = self._group(block_labels, k)
            self._segment_sums(Xb, block_labels, offsets, order, sums)
            if sqdist is not None:
                self._segment_sums(sqdist[a : a + m].reshape(m, 1), block_labels, offsets, order, inertia)
            counts += totals
        return sums.copy_to_host(), counts, float(np.sum(inertia.copy_to_host()))

    def cluster_sums(self, labels, k):
        """Per-cluster float64 sums of the rows and counts."""
        sums, counts, _ = self._sums(self.k.cuda.to_device(np.ascontiguousarray(labels, dtype=np.int64)), k)
        return sums, counts

    def lloyd_run(self, group_offsets, bounds=True, state=None) -> CUDALloydRun:
        """The per-row state of a Lloyd run on the device (new or as ``state`` left it);
        it searches without bounds."""
        return CUDALloydRun(self, state)

    def kmeans_plusplus(self, order, first, rand, weights):
        """Rows chosen by greedy (weighted) k-means++ from row ``first``, with the
        uniform draws ``rand`` (one row per later centre) made through the rows in
        ``order``: per centre, one pass for the candidates' potentials, one to add the
        chosen one and one for the draw's sums, by blocks of ``threads`` rows of
        ``order``; the cumulative block sums by a scan (:meth:`_scan`)."""
        k, cuda = self.k.seeding, self.k.cuda
        n, t = self.X.shape[0], rand.shape[1]
        chunk = self.threads
        n_blocks = -(-n // chunk)
        closest = self._empty(n, np.float64, np.inf)
        w = cuda.to_device(np.ascontiguousarray(weights, dtype=np.float64))
        order_d = cuda.to_device(np.ascontiguousarray(order, dtype=np.int64))
        block_sums = self._empty((n_blocks, 1), np.float64)
        rows = min(n, self.block_rows)
        values = self._empty((rows, t), np.float64)
        bcum = self._empty((n_blocks, 1), np.float64)
        partial = self._empty((n_blocks, t), np.float64)
        cand = self._empty(t, np.int64)

        def add(row):
            c = cuda.to_device(np.ascontiguousarray(self.X[row : row + 1]))
            for a, Xb in self._blocks():
                k.add_center[self._grid(Xb.shape[0])](Xb, c, closest, a)
            k.draw_sums[self._grid(n_blocks)](order_d, closest, w, chunk, block_sums)

        idx = np.empty(rand.shape[0] + 1, dtype=np.int64)
        idx[0] = first
        add(first)
        for c in range(1, idx.size):
            self._scan(block_sums, bcum, True)
            u = cuda.to_device(np.ascontiguousarray(rand[c - 1]))
            k.draw[self._grid(t)](block_sums, bcum, order_d, closest, w, chunk, u, DRAW_SLACK, cand)
            rows = cand.copy_to_host()
            cands = cuda.to_device(np.ascontiguousarray(self.X[rows]))
            for a, Xb in self._blocks():
                m = Xb.shape[0]
                k.trial_values[self._grid(m * t)](Xb, w, closest, cands, values, a)
                k.chunk_sums[self._grid(-(-m // chunk) * t)](values, m, chunk, partial, a // chunk)
            pots = self._column_sums(partial).copy_to_host()[0]
            idx[c] = rows[best_trial(pots)]
            add(idx[c])
        return idx

    def select(self, labels, k, take, scores):
        """``take[c]`` rows of each cluster ``c`` (clusters as ``labels`` says), those
        with the smallest ``scores`` (ties by row), concatenated in cluster order: the
        rows sorted by (cluster, score, row) (:meth:`_rank`), then each cluster's
        first."""
        cuda = self.k.cuda
        labels = cuda.to_device(np.ascontiguousarray(labels, dtype=np.int64))
        take = np.ascontiguousarray(take, dtype=np.int64)
        out_off = np.concatenate([[0], np.cumsum(take)]).astype(np.int64)
        out = self._empty(int(out_off[-1]), np.int64)
        if out.size:
            offsets, order, _ = self._group(labels, k)
            ranked = self._rank(labels, cuda.to_device(np.ascontiguousarray(scores, dtype=np.float64)))
            self.k.select.pick_members[self._grid(out.size)](
                offsets, order, ranked, cuda.to_device(take), cuda.to_device(out_off), out
            )
        return out.copy_to_host()

    def _rank(self, labels, scores):
        """The rows sorted by (``labels``, ``scores``, row), device arrays: a bitonic
        sort, one launch per step of the network."""
        n = labels.shape[0]
        rows = self.k.cuda.to_device(np.arange(n, dtype=np.int64))
        pairs = 1 << max(0, (n - 1).bit_length() - 1)  # half of n rounded up to a power of two
        step = self.k.select.bitonic_step[self._grid(pairs)]
        size = 2
        while size <= 2 * pairs and n > 1:
            step(rows, labels, scores, pairs, size, size // 2, True)
            j = size // 4
            while j > 0:
                step(rows, labels, scores, pairs, size, j, False)
                j //= 2
            size *= 2
        return rows

    def mean_variance(self) -> float:
        """Mean of the features' variances (a float64 pass over the host copy)."""
        return CPUBackend(self.X).mean_variance()

    def weighted(self, weights) -> CUDABackend:
        """This backend: it takes no sample weights yet (a one-line error for any)."""
        if weights is not None:
            raise ValueError('sample_weight is not supported on device="cuda" yet; fit on device="cpu".')
        return self

    def normalized(self, alloc=None) -> CUDABackend:
        """A backend over the rows scaled to unit norm, written to the array
        ``alloc(shape, dtype)`` gives if given; kept on the device if these rows were,
        in their place."""
        out = None if alloc is None else alloc(self.X.shape, self.X.dtype)
        options = self.options
        if self.resident:  # the new rows take over this backend's device memory: one copy at a time
            # (these rows are then read from the host, if ever; a failed allocation first
            # frees what Numba has pending, this copy among it)
            self._dX, self.resident = None, False
            options = {**options, "device_bytes": self.X.nbytes}
        return CUDABackend(normalize_rows(self.X, out), **options)


class _OnDevice:
    """A device array that a caller reads as a host array (``np.asarray``) when it
    needs it: the state of a Lloyd pass, copied only if it is saved."""

    def __init__(self, array):
        self.array = array

    def __array__(self, dtype=None, copy=None):
        host = self.array.copy_to_host()
        return host if dtype is None else host.astype(dtype)

    def copy(self):
        return np.asarray(self)


class CUDALloydRun:
    """Labels and squared distances of one Lloyd run, kept on the device between its
    passes."""

    def __init__(self, backend: CUDABackend, state=None):
        n = backend.shape[0]
        self.backend = backend
        if state is None:
            self._labels = backend._empty(n, np.int64, 0)
        else:
            self._labels = backend.k.cuda.to_device(np.ascontiguousarray(np.asarray(state["labels"]), dtype=np.int64))
        self._before = backend._empty(n, np.int64)
        self._sqdist = backend._empty(n, np.float64)
        self._changed = backend._empty(1, np.int64)
        self._first = state is None

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy_to_host()

    @property
    def sqdist(self) -> np.ndarray:
        return self._sqdist.copy_to_host()

    def search(self, centers) -> None:
        """Nearest centres of every row."""
        self.backend._search(centers, self._labels, self._sqdist)

    def step(self, centers) -> LloydStep:
        """One pass: the search, then the clusters' sums, counts and inertia; only these
        (k x d) and the rows changed come back to the host."""
        b = self.backend
        self._before.copy_to_device(self._labels)
        self.search(centers)
        changed = None
        if not self._first:
            b.k.common.fill[1, 1](self._changed, 0)
            b.k.assign.count_changed[b._grid(self._labels.shape[0])](self._before, self._labels, self._changed)
            changed = int(self._changed.copy_to_host()[0])
        self._first = False
        sums, counts, inertia = b._sums(self._labels, centers.shape[0], self._sqdist)
        return LloydStep(sums, counts, inertia, changed)

    def loosen(self, moves) -> None:
        """Nothing to do: the search keeps no bounds."""

    def farthest(self, m):
        """The ``m`` rows farthest from their centres (as on the CPU, see
        :func:`~hkmeans.backends.cpu.farthest_units`): their data, labels and weights
        (1: this backend takes no weights)."""
        idx, w = self.backend.farthest_units(self.sqdist, m)
        return self.backend.take(idx), self.labels[idx], w

    def finish(self, order):
        """Labels through ``order`` (centre ``j`` of the run is ``order[j]``), squared
        distances and inertia of the last search, on the host."""
        sqdist = self.sqdist
        return order[self.labels], sqdist, float(np.sum(sqdist))

    def state(self) -> dict:
        """What the next pass reads: the labels (read from the device when used)."""
        return {"labels": _OnDevice(self._labels)}
