"""Plain-NumPy reference implementations the kernels are checked against."""

import numpy as np


def sqdist_matrix(X, C):
    diff = X[:, None, :].astype(np.float64) - C[None, :, :].astype(np.float64)
    return np.einsum("ijk,ijk->ij", diff, diff)


def assign(X, C):
    """Nearest centre (first on ties) and squared distance to it."""
    D = sqdist_matrix(X, C)
    labels = D.argmin(axis=1)
    return labels, D[np.arange(len(X)), labels]


def cluster_sums(X, labels, k):
    sums = np.zeros((k, X.shape[1]))
    np.add.at(sums, labels, X.astype(np.float64))
    return sums, np.bincount(labels, minlength=k)


def lloyd(X, C, n_iter):
    """Textbook Lloyd iterations (no empty cluster may arise)."""
    C = C.astype(np.float64)
    for _ in range(n_iter):
        labels, _ = assign(X, C)
        sums, counts = cluster_sums(X, labels, len(C))
        assert counts.min() > 0
        C = sums / counts[:, None]
    return C, assign(X, C)[0]


def weighted_lloyd(X, w, C, n_iter):
    """Textbook weighted Lloyd iterations: centres are weighted means (no cluster may
    end up with zero weight); returns centres, labels and weighted inertia."""
    C = C.astype(np.float64)
    X64 = X.astype(np.float64)
    for _ in range(n_iter):
        labels, _ = assign(X, C)
        sums = np.zeros_like(C)
        np.add.at(sums, labels, w[:, None] * X64)
        weight = np.bincount(labels, weights=w, minlength=len(C))
        assert weight.min() > 0
        C = sums / weight[:, None]
    labels, sqdist = assign(X, C)
    return C, labels, float(np.dot(w, sqdist))


def kmeans_plusplus(X, first, rand, order=None):
    """Greedy k-means++ with the given draws: global cumulative sums over the rows in
    ``order`` (their own by default), the first row whose sum passes the target."""
    X = X.astype(np.float64)
    order = np.arange(len(X)) if order is None else order
    idx = [first]
    closest = ((X - X[first]) ** 2).sum(1)
    for u in rand:
        cum = np.cumsum(closest[order])
        cand = order[np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), len(X) - 1)]
        pots = [np.minimum(closest, ((X - X[c]) ** 2).sum(1)).sum() for c in cand]
        low = min(pots) * (1 + 1e-9)  # near-ties: the first drawn
        best = cand[next(q for q, p in enumerate(pots) if p <= low)]
        idx.append(best)
        closest = np.minimum(closest, ((X - X[best]) ** 2).sum(1))
    return np.array(idx)


def kmeans_plusplus_first_inadmissible(X, picks, rand, order, margin):
    """The first step of ``picks`` that greedy k-means++ (:func:`kmeans_plusplus`, in
    float64) could not have made if every squared distance were off by up to
    ``margin`` (absolute, summed along the cumulative sums and potentials), or None.

    A kernel that computes in float32 rounds each squared distance; where a draw target
    lies within the rounding of a row boundary, or two candidates' potentials within
    it, either side is the algorithm's choice. Each step then admits the kernel's pick
    if some way of resolving those near-ties gives it, and goes on from that pick."""
    X = X.astype(np.float64)
    closest = ((X - X[picks[0]]) ** 2).sum(1)
    for step, u in enumerate(rand, start=1):
        cum = np.cumsum(closest[order])
        total = cum[-1]
        err = margin * np.arange(1, len(X) + 1)  # rounding accumulated along the sums
        options = []
        for target in u * total:
            near = np.flatnonzero(np.abs(cum - target) <= err + margin * len(X))
            exact = min(int(np.searchsorted(cum, target, side="right")), len(X) - 1)
            pos = {exact} | {min(p + 1, len(X) - 1) for p in near} | {int(p) for p in near}
            options.append(sorted(order[p] for p in pos))
        pots = {c: np.minimum(closest, ((X - X[c]) ** 2).sum(1)).sum() for opts in options for c in opts}
        tie = 2 * margin * len(X)  # both potentials rounded
        admitted = set()
        for combo in _combinations(options):
            low = min(pots[c] for c in combo)
            admitted |= {c for c in combo if pots[c] <= low + tie}
        if picks[step] not in admitted:
            return step
        closest = np.minimum(closest, ((X - X[picks[step]]) ** 2).sum(1))
    return None


def _combinations(options):
    combos = [[]]
    for opts in options:
        combos = [c + [o] for c in combos for o in opts]
    return combos


def pick_members(labels, k, scores, n_take):
    """Per cluster: whole copies, then the members with the smallest scores."""
    out = []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if n_take[c] == 0:
            continue
        q, r = divmod(n_take[c], len(members))
        out.extend(np.tile(members, q))
        out.extend(members[np.argsort(scores[members], kind="stable")[:r]])
    return np.array(out, dtype=np.int64)


def dedup(X, threshold, order, metric="cosine"):
    """The greedy rule over all pairs: in ``order``, a row is removed iff within the
    threshold of a row already kept; its duplicate is the first such in ``order``.
    Scores are float64 products summed in feature order, the cosine over
    ``sqrt(|x|^2 |y|^2)`` (scaled where that product leaves float64's range). Returns
    ``(kept, duplicate_of, similarity)``."""
    X = np.asarray(X, dtype=np.float64)
    n = len(X)
    sq = np.cumsum(X * X, axis=1)[:, -1]
    kept_so_far = []
    duplicate_of = np.full(n, -1, dtype=np.int64)
    similarity = np.full(n, np.nan)
    for i in order:
        for j in kept_so_far:
            if metric == "cosine":
                s, d = np.cumsum(X[i] * X[j])[-1], sq[i] * sq[j]
                if np.finfo(np.float64).tiny <= d < np.inf:
                    s = s / np.sqrt(d)
                else:
                    s = s / sq[i] if sq[i] == sq[j] else s / (np.sqrt(sq[i]) * np.sqrt(sq[j]))
                match = s >= threshold
            else:
                s = np.sqrt(np.cumsum((X[i] - X[j]) ** 2)[-1])
                match = s <= threshold
            if match:
                duplicate_of[i], similarity[i] = j, s
                break
        else:
            kept_so_far.append(i)
    return np.sort(np.array(kept_so_far, dtype=np.int64)), duplicate_of, similarity
