"""Greedy (weighted) k-means++ seeding: spatial blocks in few dimensions
(:mod:`.boxed`), candidates as vector lanes on wide rows (:mod:`.wide`), the draws
they share (:mod:`.draws`)."""

from .boxed import kmeans_plusplus_boxed
from .draws import TRIAL_RTOL, best_trial, draw
from .wide import kmeans_plusplus_wide

__all__ = ["TRIAL_RTOL", "best_trial", "draw", "kmeans_plusplus"]


def kmeans_plusplus(X, w, order, first, rand, chunk, small_d, n_tasks):
    """Greedy k-means++ seeding (as scikit-learn's) of rows weighted by ``w``: returns
    the chosen row indices.

    ``first`` is the first centre's row; ``rand`` (k - 1, n_local_trials) holds the
    uniform draws of every later step, so the caller's generator alone decides; a
    candidate is drawn through per-block sums of ``w * d(x)^2`` over the rows taken in
    ``order`` (see :func:`draw`).
    Rows of up to ``small_d`` features get exact distances in vectorised loops over
    spatially ordered blocks, far blocks skipped; wider rows get dot products with the
    candidates per block (:func:`candidate_dots`), one pass over ``X`` per step on
    ``n_tasks`` threads. The two paths are kernels of their own: only the one the data
    need is compiled.
    """
    if X.shape[1] > small_d:
        return kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks)
    return kmeans_plusplus_boxed(X, w, order, first, rand, chunk)
