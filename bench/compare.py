"""hkmeans against faiss, scikit-learn and the bare GEMM, on the same data in one run.

Sections (medians of alternating runs, ratios against the GEMM of the same shapes):

- ``lloyd``: ``max_iter`` Lloyd iterations from the same initial centroids;
- ``bounds``: hkmeans's Lloyd with and without its bounds;
- ``assign``: the assignment kernel's GFLOP/s against numpy's GEMM, 1 and 2 threads;
- ``seeding``: ``hkmeans.kmeans_plusplus`` against ``sklearn.cluster.kmeans_plusplus``;
- ``large``: the paper's large example end to end, beside its GEMM roofline (long);
- ``peers``: hkmeans, SuperKMeans, faiss and scikit-learn at their defaults and at
  matched settings (10 iterations on every row) on three shapes, one run each (long;
  ``--scale`` shrinks rows and clusters alike, ``--only hkmeans,SuperKMeans`` keeps
  the runs whose names contain one of those).

    python bench/compare.py [--sections lloyd,assign,seeding] [--repeats 3]

faiss and SuperKMeans come with the ``bench`` extra: ``pip install ".[bench]"``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np
import sklearn.cluster
from mixtures import mixture
from threadpoolctl import threadpool_info, threadpool_limits

import hkmeans
import hkmeans.hierarchy
import hkmeans.kmeans
from hkmeans._threads import single_threaded_blas
from hkmeans.kmeans import assign


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def gemm_seconds(X, C, repeats):
    """Median time of one ``X @ C.T`` into a preallocated output (numpy's BLAS)."""
    out = np.empty((X.shape[0], C.shape[0]), dtype=X.dtype)
    CT = np.ascontiguousarray(C.T)
    np.dot(X, CT, out=out)
    return float(np.median([timed(lambda: np.dot(X, CT, out=out))[0] for _ in range(repeats)]))


def section_lloyd(args):
    import faiss

    n, d, k, iters = args.n, args.d, args.k, args.iters
    X = mixture(n, d)
    C0 = X[np.random.default_rng(1).choice(n, k, replace=False)].copy()
    runs = {
        "hkmeans": lambda: hkmeans.KMeans(k, init=C0, n_init=1, max_iter=iters, tol=0).fit(X).n_iter_,
        "faiss": lambda: (
            faiss.Kmeans(d, k, niter=iters, max_points_per_centroid=10**9).train(X, init_centroids=C0) and iters
        ),
        "scikit-learn": lambda: (
            sklearn.cluster.KMeans(k, init=C0, n_init=1, max_iter=iters, tol=0, algorithm="lloyd").fit(X).n_iter_
        ),
    }
    times = {name: [] for name in runs}
    n_iter = {}
    for _ in range(args.repeats):  # alternate, so that drifts hit every contender
        for name, run in runs.items():
            seconds, n_iter[name] = timed(run)
            times[name].append(seconds)
    gemm = gemm_seconds(X, C0, args.repeats)
    print(f"\n## Lloyd: n={n}, d={d}, k={k}, {iters} iterations, float32, same initial centroids")
    print(f"numpy GEMM of one iteration's shapes: {gemm * 1e3:.1f} ms ({2 * n * k * d / gemm / 1e9:.0f} GFLOP/s)")
    print("| implementation | median (s) | iterations | / faiss | / GEMM roofline (iterations x GEMM) |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        med = float(np.median(values))
        faiss_med = float(np.median(times["faiss"]))
        print(f"| {name} | {med:.2f} | {n_iter[name]} | {med / faiss_med:.2f} | {med / (n_iter[name] * gemm):.2f} |")


def section_assign(args):
    n, d, k = args.n, args.d, args.k
    X = mixture(n, d)
    C = X[:k].copy()
    flops = 2 * n * k * d
    print(f"\n## Assignment kernel: n={n}, d={d}, k={k}, float32")
    print("| threads | hkmeans assign (ms) | GFLOP/s | numpy GEMM (ms) | GFLOP/s | hkmeans / GEMM throughput |")
    print("|---|---|---|---|---|---|")
    results = {}
    for threads in (1, 2):
        numba.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            gemm = gemm_seconds(X, C, args.repeats)
        with single_threaded_blas():
            assign(X, C)
            ours = float(np.median([timed(lambda: assign(X, C))[0] for _ in range(args.repeats)]))
        results[threads] = ours
        print(
            f"| {threads} | {ours * 1e3:.1f} | {flops / ours / 1e9:.0f} | {gemm * 1e3:.1f} | "
            f"{flops / gemm / 1e9:.0f} | {gemm / ours:.2f} |"
        )
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    print(f"2 threads / 1 thread speed-up: {results[1] / results[2]:.2f}")


def section_bounds(args):
    """Lloyd with and without the per-group bounds (the labels are the same)."""
    rng = np.random.default_rng(0)
    datasets = {
        "random, d=256": rng.normal(size=(50_000, 256)).astype(np.float32),
        "mixture, d=128": mixture(50_000, 128),
    }
    print("\n## Lloyd bounds: n=50,000, k=1000, up to 50 iterations, float32")
    print("| data | iterations | plain (s) | with bounds (s) | speed-up |")
    print("|---|---|---|---|---|")
    with single_threaded_blas():
        for name, X in datasets.items():
            C0 = X[rng.choice(len(X), 1000, replace=False)].copy()
            hkmeans.kmeans.lloyd(X[:2000], C0[:50], max_iter=2, tol=0.0)
            plain, res = timed(lambda: hkmeans.kmeans.lloyd(X, C0, max_iter=50, tol=0.0, bounds=False))
            fast, _ = timed(lambda: hkmeans.kmeans.lloyd(X, C0, max_iter=50, tol=0.0))
            print(f"| {name} | {res.n_iter} | {plain:.2f} | {fast:.2f} | {plain / fast:.2f} |")


def potential(X, C):
    with single_threaded_blas():
        return float(np.sum(assign(X, C)[1]))


def section_seeding(args):
    n, d, k = args.n, args.d, args.k
    X = mixture(n, d)
    hkmeans.kmeans_plusplus(X[:1000], 10, random_state=0)
    ours_t, theirs_t = [], []
    for _ in range(args.repeats):  # alternating, medians
        seconds, (C, _) = timed(lambda: hkmeans.kmeans_plusplus(X, k, random_state=0))
        ours_t.append(seconds)
        seconds, (C_sk, _) = timed(lambda: sklearn.cluster.kmeans_plusplus(X, k, random_state=0))
        theirs_t.append(seconds)
    ours, theirs = float(np.median(ours_t)), float(np.median(theirs_t))
    print(f"\n## k-means++ seeding: n={n}, d={d}, k={k}, float32 (median of {args.repeats} alternating runs)")
    print("| implementation | median (s) | runs (s) | potential |")
    print("|---|---|---|---|")
    print(f"| hkmeans.kmeans_plusplus | {ours:.2f} | {', '.join(f'{t:.2f}' for t in ours_t)} | {potential(X, C):.6g} |")
    print(
        f"| sklearn.cluster.kmeans_plusplus | {theirs:.2f} | {', '.join(f'{t:.2f}' for t in theirs_t)} | {potential(X, C_sk):.6g} |"
    )
    print(
        f"speed-up {theirs / ours:.1f}x (runs: {', '.join(f'{b / a:.1f}' for a, b in zip(ours_t, theirs_t))}); "
        f"potential ratio {potential(X, C) / potential(X, C_sk):.4f}"
    )


class FlopCounter:
    """Counts the distance FLOPs that the plain algorithm does during a fit: every
    search of every Lloyd iteration (bounds or not), every other assignment, and the
    seeding."""

    def __init__(self):
        self.flops = 0.0

    def __enter__(self):
        self._assign, self._init, self._lloyd = hkmeans.kmeans.assign, hkmeans.kmeans.init_centers, hkmeans.kmeans.lloyd

        def counting_assign(X, C):
            self.flops += 2.0 * X.shape[0] * C.shape[0] * X.shape[1]
            return self._assign(X, C)

        def counting_init(X, n_clusters, init, rng, n_local_trials=None):
            trials = n_local_trials or 2 + int(np.log(n_clusters))
            self.flops += 2.0 * X.shape[0] * X.shape[1] * (1 + (n_clusters - 1) * trials)
            return self._init(X, n_clusters, init, rng, n_local_trials)

        def counting_lloyd(X, centers, **kwargs):
            res = self._lloyd(X, centers, **kwargs)
            # n_iter updates, each after a search, and one search for the final labels
            self.flops += 2.0 * X.shape[0] * centers.shape[0] * X.shape[1] * (res.n_iter + 1)
            return res

        hkmeans.kmeans.assign = hkmeans.hierarchy.assign = counting_assign
        hkmeans.kmeans.init_centers = counting_init
        hkmeans.kmeans.lloyd = counting_lloyd
        return self

    def __exit__(self, *exc):
        hkmeans.kmeans.assign = hkmeans.hierarchy.assign = self._assign
        hkmeans.kmeans.init_centers = self._init
        hkmeans.kmeans.lloyd = self._lloyd


def section_large(args):
    X = np.random.default_rng(0).normal(size=(100_000, 256)).astype(np.float32)
    params = dict(
        n_clusters=(5000, 1000), sample_size=(10, 3), n_resamples=10, max_iter=50, init=args.init, random_state=0
    )
    hkmeans.HierarchicalKMeans((50, 10), n_resamples=1, random_state=0).fit(X[:2000]).sample(100)  # compile or load
    with FlopCounter() as counter:
        seconds, model = timed(lambda: hkmeans.HierarchicalKMeans(**params).fit(X))
    sample_seconds, idx = timed(lambda: model.sample(20000, random_state=0))
    gemm = gemm_seconds(X, X[:5000], args.repeats)
    rate = 2 * X.shape[0] * 5000 * X.shape[1] / gemm
    roofline = counter.flops / rate
    total = seconds + sample_seconds
    print(
        "\n## The paper's large example: 100,000 x 256 float32, (5000, 1000), sample_size (10, 3), "
        f"10 resamples, 50 iterations, init={args.init!r}, then sample(20000)"
    )
    print(
        f"fit {seconds:.0f} s + sample {sample_seconds:.2f} s = {total:.0f} s; "
        f"distance work {counter.flops / 1e12:.1f} TFLOP at numpy's {rate / 1e9:.0f} GFLOP/s = "
        f"{roofline:.0f} s roofline; ratio {total / roofline:.2f}; Lloyd iterations {model.n_iter_}"
    )


#: The shapes of ``peers``: (rows, features, clusters).
PEER_SHAPES = ((200_000, 128, 1000), (1_000_000, 64, 10_000), (100_000, 768, 1000))


def peer_runs(n, d, k, seed=0):
    """Name -> (kind, fit) where ``fit(X)`` returns the centres and the iterations run."""
    import faiss
    from superkmeans import SuperKMeans

    def faiss_fit(**kw):
        def fit(X):
            km = faiss.Kmeans(d, k, seed=seed, **kw)
            km.train(X)
            return km.centroids, len(km.obj)

        return fit

    def skm_fit(**kw):
        def fit(X):
            km = SuperKMeans(k, d, seed=seed, **kw)
            C = km.train(X)
            return C, len(km.iteration_stats) if isinstance(km.iteration_stats, list) else None

        return fit

    def est_fit(cls, **kw):
        def fit(X):
            km = cls(k, random_state=seed, **kw).fit(X)
            return km.cluster_centers_, km.n_iter_

        return fit

    matched = dict(n_init=1, max_iter=10, tol=0)
    return {
        "hkmeans KMeans()": ("defaults", est_fit(hkmeans.KMeans)),
        "hkmeans KMeans(init_points_per_centroid=40)": (
            "defaults",
            est_fit(hkmeans.KMeans, init_points_per_centroid=40),
        ),
        "SuperKMeans()": ("defaults", skm_fit()),
        "faiss Kmeans()": ("defaults", faiss_fit()),
        "scikit-learn KMeans()": ("defaults", est_fit(sklearn.cluster.KMeans)),
        "hkmeans, k-means++": ("10 iterations, all rows", est_fit(hkmeans.KMeans, **matched)),
        "hkmeans, k-means++ from 40 rows per centre": (
            "10 iterations, all rows",
            est_fit(hkmeans.KMeans, init_points_per_centroid=40, **matched),
        ),
        'hkmeans, init="random"': ("10 iterations, all rows", est_fit(hkmeans.KMeans, init="random", **matched)),
        "SuperKMeans flat": (
            "10 iterations, all rows",
            skm_fit(
                hierarchical=False, iters=10, sampling_fraction=1.0, early_termination=False, max_points_per_cluster=n
            ),
        ),
        "faiss": ("10 iterations, all rows", faiss_fit(niter=10, max_points_per_centroid=n)),
        "scikit-learn, k-means++": ("10 iterations, all rows", est_fit(sklearn.cluster.KMeans, **matched)),
    }


def section_peers(args):
    """One fit per contender and shape; inertia by one evaluation for all (hkmeans's
    float32 assignment); "reaches" columns give the time where the fit ended at or below
    the inertia of scikit-learn's, or SuperKMeans's, default fit."""
    for n0, d, k0 in (PEER_SHAPES[int(i)] for i in args.shapes.split(",")):
        n, k = max(int(n0 * args.scale), 20), max(int(k0 * args.scale), 2)
        X = mixture(n, d, n_components=200)
        results = {}
        runs = peer_runs(n, d, k)
        wanted = [w for w in args.only.split(",") if w] if args.only else None
        runs = {name: run for name, run in runs.items() if wanted is None or any(w in name for w in wanted)}
        for name, (kind, fit) in runs.items():
            fit(X[: 20 * k]) if name.startswith("hkmeans") else None  # compile or load first
            seconds, (C, n_iter) = timed(lambda: fit(X))
            results[name] = kind, seconds, n_iter, potential(X, np.asarray(C, dtype=X.dtype)) / n
        sk, skm = (results[name][3] if name in results else None for name in ("scikit-learn KMeans()", "SuperKMeans()"))
        print(f"\n## Peers: {n} x {d} float32, mixture of 200 Gaussians, k = {k}, one run each")
        print(
            "| run | settings | time (s) | iterations | inertia per row | reaches scikit-learn's | reaches SuperKMeans's |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, (kind, seconds, n_iter, inertia) in results.items():
            reach = [
                "-" if target is None else f"{seconds:.2f} s" if inertia <= target * (1 + 1e-6) else "no"
                for target in (sk, skm)
            ]
            print(f"| {name} | {kind} | {seconds:.2f} | {n_iter} | {inertia:.4f} | {reach[0]} | {reach[1]} |")


SECTIONS = {
    "lloyd": section_lloyd,
    "bounds": section_bounds,
    "assign": section_assign,
    "seeding": section_seeding,
    "large": section_large,
    "peers": section_peers,
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="lloyd,assign,seeding")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--init", default="k-means++", help="seeding of the large example")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the rows and clusters of peers' shapes")
    parser.add_argument("--shapes", default="0,1,2", help="which of peers' shapes (indices)")
    parser.add_argument("--only", help="peers: the runs whose names contain one of these (comma-separated)")
    args = parser.parse_args()
    blas = ", ".join(
        sorted({f"{i['internal_api']} {i.get('version')}" for i in threadpool_info() if i["user_api"] == "blas"})
    )
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__} "
        f"({blas}); numba {numba.__version__}; hkmeans {hkmeans.__version__}"
    )
    for name in args.sections.split(","):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
