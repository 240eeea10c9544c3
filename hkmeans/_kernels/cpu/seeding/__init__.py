"""Greedy (weighted) k-means++ seeding: spatial blocks in few dimensions
(:mod:`.boxed`), candidates as vector lanes on wide rows (:mod:`.wide`), those rows
screened by 8-bit copies first where AVX2 is there (:mod:`.screen`), the draws they
share (:mod:`.draws`)."""

from .. import simd
from . import screen
from .boxed import kmeans_plusplus_boxed
from .draws import TRIAL_RTOL, best_trial, draw
from .screen import kmeans_plusplus_screened
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
    ``n_tasks`` threads; on x86 with AVX2 and FMA (:data:`simd.LANES_PAY`), for rows of
    :data:`simd.SCREEN_FEATURES` to :data:`screen.MAX_FEATURES` features and
    seedings of :data:`screen.MIN_WORK` or more (rows x steps x features), an 8-bit
    copy of the rows rules out first, with a proven margin, the rows no candidate can
    move (:func:`kmeans_plusplus_screened`: the same rows chosen). The paths are
    kernels of their own: only the one the data need is compiled.
    """
    n, d = X.shape
    if d > small_d:
        screenable = simd.SCREEN_FEATURES <= d <= screen.MAX_FEATURES
        if simd.LANES_PAY and screenable and n * rand.shape[0] * d >= screen.MIN_WORK:
            return kmeans_plusplus_screened(X, w, order, first, rand, chunk, n_tasks, chunk // 4)
        return kmeans_plusplus_wide(X, w, order, first, rand, chunk, n_tasks)
    return kmeans_plusplus_boxed(X, w, order, first, rand, chunk)
