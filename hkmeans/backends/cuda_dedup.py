"""Near-duplicate search with the block similarities on an NVIDIA GPU.

One sweep (:func:`sweep`) walks the clusters, blocks and candidates exactly as the
CPU kernel (:func:`hkmeans._kernels.cpu.dedup.sweep`) does; only the similarities of
each query block with its candidates come from the GPU
(:func:`hkmeans._kernels.cuda.dedup.block_scores`, float64 sums of the rows kept on
the device). The decisions are the CPU's own functions
(:func:`~hkmeans._kernels.cpu.dedup.scan_scores`,
:func:`~hkmeans._kernels.cpu.dedup.decide_block`): a pair is decided on its
similarity only outside the band around the threshold, in which every similarity
accurate to the band (the CPU's float32 GEMM and the GPU's float64 sums alike) gives
the same answer, and within the band on :func:`~hkmeans._kernels.cpu.dedup.exact_score`
on the host. So the decisions, hence the result, are the CPU's.
"""

from __future__ import annotations

import numpy as np

from .._kernels.cpu import dedup as kernels
from . import cuda as cuda_backend

UNDECIDED, KEPT, PENDING = kernels.UNDECIDED, kernels.KEPT, kernels.PENDING

#: Rows scaled at a time for "cosine" (bounds the float64 temporary on the host).
SCALE_ROWS = 1 << 16


def check_fits(X) -> None:
    """A one-line ValueError where the rows ``X`` would take more than the share of
    the GPU's free memory a backend may use: the search keeps them all on the device."""
    free = cuda_backend._kernels().cuda.current_context().get_memory_info().free
    if X.nbytes > cuda_backend.DEVICE_SHARE * free:
        raise ValueError(
            f"dedup on the GPU keeps the rows on it: {X.nbytes / 2**30:.2f} GiB, more than half its "
            f"{free / 2**30:.2f} GiB free; use device='cpu', or Dask workers with a GPU each."
        )


class Scorer:
    """The rows of ``X`` on the device (as the CPU sweep loads them: scaled to unit
    norm for "cosine"), and the similarities of blocks of them."""

    def __init__(self, X, sq, cosine):
        self.k = cuda_backend._kernels()
        from .._kernels.cuda import dedup as cuda_dedup

        self.kernel = cuda_dedup.block_scores
        U = np.ascontiguousarray(X)
        if cosine:  # scaled in blocks, in X's dtype: no float64 copy of the whole
            U = np.empty_like(U)
            for a in range(0, X.shape[0], SCALE_ROWS):
                e = min(a + SCALE_ROWS, X.shape[0])
                U[a:e] = X[a:e] * (1.0 / np.sqrt(sq[a:e]))[:, None]
        self.U = self.k.cuda.to_device(U)

    def scores(self, qrows, prows):
        """Similarities of rows ``qrows`` with rows ``prows``, (len(qrows), len(prows))."""
        cuda = self.k.cuda
        out = cuda.device_array((len(qrows), len(prows)), dtype=np.float64)
        if out.size:
            q = cuda.to_device(np.ascontiguousarray(qrows, dtype=np.int64))
            p = cuda.to_device(np.ascontiguousarray(prows, dtype=np.int64))
            threads = cuda_backend.THREADS
            self.kernel[self.k.common.blocks(out.size, threads), threads](self.U, q, p, out)
        return out.copy_to_host()


def sweep(
    scorer,
    X,
    sq,
    rank,
    clusters,
    member_offsets,
    members,
    run_offsets,
    run_sources,
    run_starts,
    imports,
    border_offsets,
    border_clusters,
    before,
    state,
    first_kept,
    cosine,
    threshold,
    band,
    q_rows,
    p_rows,
    compared,
):
    """:func:`hkmeans._kernels.cpu.dedup.sweep` (same arguments, ``n_tasks`` aside),
    its similarities from ``scorer``; clusters one after another."""
    n = X.shape[0]
    for a in clusters:
        mem = members[member_offsets[a] : member_offsets[a + 1]]
        st = state[mem]
        where = np.flatnonzero((st == UNDECIDED) | (st == PENDING))  # the open rows' places in mem
        open_rows = mem[where].astype(np.int64)
        kq = np.full(open_rows.shape[0], n, dtype=np.int64)
        uq = np.full(open_rows.shape[0], n, dtype=np.int64)
        n_pairs = _imports_pass(
            scorer, X, sq, rank, a, open_rows, run_offsets, run_sources, run_starts, imports,
            border_offsets, border_clusters, before, cosine, threshold, band, q_rows, p_rows, kq, uq,
        )  # fmt: skip
        # the open rows block by block: against the cluster's own rows, then each other
        for taken in range(0, open_rows.shape[0], q_rows):
            b = min(q_rows, open_rows.shape[0] - taken)
            qrows = open_rows[taken : taken + b]
            qpos = np.arange(taken, taken + b)
            start = int(where[taken])
            pos = int(where[taken + b - 1]) + 1 if b == q_rows else mem.shape[0]
            # own rows: those before the block not removed, kept rows inside it
            s = state[mem[:pos]]
            own = mem[:pos][(s == KEPT) | ((s == UNDECIDED) & (np.arange(pos) < start))]
            n_pairs += _scan(scorer, X, sq, qrows, qpos, own, state, rank, cosine, threshold, band, p_rows, kq, uq)
            # the block against itself, row by row in rank order
            G = scorer.scores(qrows, qrows)
            n_pairs += b * (b - 1) // 2
            kernels.decide_block(
                G, X, sq, b, qrows, rank, state, first_kept, cosine, threshold, band, kq[taken:], uq[taken:]
            )
        compared[a] += n_pairs


def _imports_pass(
    scorer, X, sq, rank, a, open_rows, run_offsets, run_sources, run_starts, imports,
    border_offsets, border_clusters, before, cosine, threshold, band, q_rows, p_rows, kq, uq,
):  # fmt: skip
    """:func:`hkmeans._kernels.cpu.dedup._imports_pass`, its similarities from
    ``scorer``: the pairs compared."""
    n_pairs = 0
    count = border_offsets[open_rows + 1] - border_offsets[open_rows]
    first = np.cumsum(count) - count
    entry = np.arange(count.sum()) - np.repeat(first - border_offsets[open_rows], count)
    by_source = np.argsort(border_clusters[entry], kind="stable")
    sources = border_clusters[entry][by_source]
    query_of = np.repeat(np.arange(open_rows.shape[0]), count)[by_source]  # by source, then rank
    for u in range(run_offsets[a], run_offsets[a + 1]):
        c = run_sources[u]
        src = query_of[np.searchsorted(sources, c) : np.searchsorted(sources, c, side="right")]
        for t0 in range(0, src.shape[0], q_rows):
            qpos = src[t0 : t0 + q_rows]
            qrows = open_rows[qpos]
            run = imports[run_starts[u] : run_starts[u + 1]].astype(np.int64)
            run = run[: np.searchsorted(rank[run], rank[qrows[-1]])]  # by rank: those before the last query
            s = before[run]
            run = run[(s == KEPT) | (s == UNDECIDED)]
            n_pairs += _scan(scorer, X, sq, qrows, qpos, run, before, rank, cosine, threshold, band, p_rows, kq, uq)
    return n_pairs


def _scan(scorer, X, sq, qrows, qpos, candidates, states, rank, cosine, threshold, band, p_rows, kq, uq):
    """The queries ``qrows`` (slots ``qpos``) against ``candidates`` (their states in
    ``states``), ``p_rows`` at a time, as the CPU kernel's ``_scan``: the pairs compared."""
    for c0 in range(0, candidates.shape[0], p_rows):
        prow = candidates[c0 : c0 + p_rows]
        G = scorer.scores(qrows, prow)
        kernels.scan_scores(
            G, X, sq, len(qrows), qrows, qpos, len(prow), prow, states[prow], rank, cosine, threshold, band, kq, uq
        )
    return len(qrows) * candidates.shape[0]
