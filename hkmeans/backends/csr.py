"""The in-process backend over a sparse CSR matrix.

The passes run the dense kernels of :mod:`hkmeans.backends.cpu` on one block of rows
at a time, each block densified on its own (about 2**20 entries, see
:func:`~hkmeans.backends.in_memory.row_blocks`), so the whole matrix is never dense; the
sums and the seeding's distances are sparse products.
"""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import normalize
from sklearn.utils.sparsefuncs import mean_variance_axis

from .._kernels.cpu.seeding import best_trial
from .cpu import CPUBackend, content_draw, search
from .in_memory import row_blocks


class SparseBackend(CPUBackend):
    """Rows of a ``scipy.sparse`` CSR matrix of float32 or float64, finite.

    Parameters
    ----------
    X : sparse matrix or array of shape (n_samples, n_features), CSR
    weights : ndarray of shape (n_samples,) or None
        As for :class:`~hkmeans.backends.cpu.CPUBackend`.
    """

    name = "sparse"

    def take(self, rows, out=None) -> np.ndarray:
        """Rows ``rows`` as a dense array, into ``out`` if given."""
        dense = self.X[np.asarray(rows)].toarray()
        if out is None:
            return dense
        out[:] = dense
        return out

    def search(self, centers, labels, sqdist, lower=None, group_offsets=None) -> None:
        """Nearest centres, in place, one densified block of rows at a time."""
        for rows in row_blocks(self.X):
            search(
                self.X[rows].toarray(),
                centers,
                labels[rows],
                sqdist[rows],
                None if lower is None else lower[rows],
                group_offsets,
            )

    def cluster_sums(self, labels, k):
        """Per-cluster float64 (weighted) sums of the rows and counts (or weights), as a
        sparse product."""
        from scipy import sparse

        n = self.X.shape[0]
        w = np.ones(n) if self.weights is None else self.weights
        member = sparse.csr_matrix((w, (labels, np.arange(n))), shape=(k, n))
        sums = np.asarray((member @ self.X.astype(np.float64)).todense())
        counts = np.bincount(labels, minlength=k) if self.weights is None else self.cluster_weights(labels, k)
        return sums, counts

    def _sqdist_to(self, x_sq, rows):
        """Squared distances of every row to rows ``rows``: ``(n_samples, len(rows))``."""
        C = self.take(rows).astype(np.float64)
        d2 = x_sq[:, None] + np.einsum("ij,ij->i", C, C)[None, :] - 2.0 * np.asarray(self.X @ C.T)
        return np.maximum(d2, 0.0)

    def kmeans_plusplus(self, order, first, rand, weights):
        """Greedy k-means++ as :meth:`CPUBackend.kmeans_plusplus` draws it (a row in
        proportion to ``weights * d(x)^2``, by cumulative sums over the rows in
        ``order``), distances by sparse products."""
        X = self.X
        x_sq = np.asarray(X.multiply(X).sum(axis=1), dtype=np.float64).ravel()
        idx = [int(first)]
        closest = self._sqdist_to(x_sq, idx)[:, 0]
        for u in rand:
            cand = content_draw(order, weights * closest, u, weights)
            D = np.minimum(closest[:, None], self._sqdist_to(x_sq, cand))
            best = best_trial(weights @ D)
            idx.append(int(cand[best]))
            closest = D[:, best]
        return np.array(idx, dtype=np.int64)

    def mean_variance(self) -> float:
        """Mean of the features' (weighted) variances."""
        w = None if self.weights is None else self.weights.astype(self.X.dtype)  # the dtype it requires
        return float(np.mean(mean_variance_axis(self.X, axis=0, weights=w)[1]))

    def normalized(self, alloc=None) -> SparseBackend:
        """A backend over the rows scaled to unit norm (a new sparse matrix; ``alloc``
        is not used)."""
        return SparseBackend(normalize(self.X), self.weights)
