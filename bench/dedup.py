"""Near-duplicate removal: hkmeans against the within-cluster rule and brute force.

A pool of n x 128 float32 rows (a long-tailed mixture: component weights ~ 1/r^1.1),
10% of them planted near-duplicates of other rows at cosine 0.97-0.999, written to a
``.npy`` file and read as a memory map. At cosine threshold 0.95 (keep="hard"):

- hkmeans: :func:`hkmeans.dedup` in a fresh process (time per phase, peak RSS);
- within-cluster only (SemDeDup's search, plain NumPy): the same clusters, every pair
  inside each cluster, none across; the same greedy rule applied to the pairs found;
  its time adds the same clustering and a nearest-centroid pass;
- exact: faiss ``IndexFlatIP.range_search`` on the first ``--slice`` rows, its time at
  n extrapolated as n^2; hkmeans on that slice checked against the rule applied to
  the exact pairs.

Planted pairs count as found when the rule removes one of the two rows.

    python bench/dedup.py                       # 1,000,000 rows, slice 100,000
    python bench/dedup.py --n 200000 --slice 20000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

D = 128
BLOCK = 1 << 17


def make_pool(path, n, seed=0):
    """Write the pool to ``path``; returns the planted pairs ``(original, copy)``."""
    rng = np.random.default_rng(seed)
    n_comp = 1000
    weights = 1.0 / np.arange(1, n_comp + 1) ** 1.1
    centres = rng.normal(size=(n_comp, D)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, D))
    for a in range(0, n, BLOCK):
        m = min(BLOCK, n - a)
        comp = rng.choice(n_comp, m, p=weights / weights.sum())
        X[a : a + m] = centres[comp] + rng.normal(scale=1.0 / np.sqrt(D), size=(m, D)).astype(np.float32)
    copies = np.sort(rng.choice(n, n // 10, replace=False))
    originals = rng.integers(0, n, len(copies))
    ok = ~np.isin(originals, copies)  # a copy of a copy would make chains: plain pairs here
    copies, originals = copies[ok], originals[ok]
    for a in range(0, len(copies), BLOCK):
        c, o = copies[a : a + BLOCK], originals[a : a + BLOCK]
        x = X[o].astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        noise = rng.normal(size=x.shape)
        noise -= np.sum(noise * x, axis=1, keepdims=True) * x
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        cos = rng.uniform(0.97, 0.999, len(c))
        X[c] = (cos[:, None] * x + np.sqrt(1 - cos**2)[:, None] * noise).astype(np.float32)
    X.flush()
    return originals, copies


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssAnon")) * 1024


def _watch_anonymous_memory(every=0.02) -> list:
    """A one-item list that a daemon thread keeps at the largest resident memory of
    this process not backed by a file (VmHWM counts the mapped input's pages too)."""
    peak = [_rss_anon()]

    def watch():
        while True:
            peak[0] = max(peak[0], _rss_anon())
            time.sleep(every)

    threading.Thread(target=watch, daemon=True).start()
    return peak


def child(path, threshold, out):
    """hkmeans.dedup on the memory-mapped pool, phase by phase (as it runs them)."""
    from hkmeans import _config
    from hkmeans import dedup as api
    from hkmeans._rng import as_generator
    from hkmeans._threads import single_threaded_blas
    from hkmeans.backends import dedup as search
    from hkmeans.backends.in_memory import normalize_rows
    from hkmeans.dedup import _check_data, _own_centroids

    X = np.load(path, mmap_mode="r")
    api(X[:2000].copy(), threshold)  # compile
    peak_anon = _watch_anonymous_memory()
    times = {}
    t0 = time.perf_counter()
    with single_threaded_blas():
        X, sq = _check_data(X, "cosine")
        rng = as_generator(0)
        C = normalize_rows(_own_centroids(X, None, "cosine", rng).astype(np.float64))
        times["kmeans"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        geometry = search.centroid_geometry(C, X.dtype)
        err = search.border_err(X, float(np.max(sq)), geometry[2], True)
        radius = search.search_radius(threshold, True, X)
        labels, sqdist, rows, clusters = search.borders(X, sq, geometry, True, radius, err, _config.CHUNK_ROWS)
        times["labels_and_borders"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        order = search.rank_order("hard", sqdist, rng)
        kept, duplicate_of, _, n_compared = search.sweep(
            X, sq, labels, C.shape[0], order, rows, clusters, True, threshold
        )
        times["sweep"] = time.perf_counter() - t1
    times["total"] = time.perf_counter() - t0
    status = open("/proc/self/status").read().split("\n")
    hwm = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) * 1024
    np.savez(
        out,
        kept=kept,
        duplicate_of=duplicate_of,
        labels=labels,
        order=order,
        centroids=C,
        border_pairs=len(clusters),
    )
    print(json.dumps(dict(times=times, peak_rss=hwm, peak_anon=peak_anon[0], n_compared=n_compared)))


def greedy(n, order, i, j):
    """The rule over a pair list (each pair once): kept rows and duplicate_of."""
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    a = np.concatenate([i, j])
    b = np.concatenate([j, i])
    earlier = rank[b] < rank[a]
    a, b = a[earlier], b[earlier]
    srt = np.lexsort((rank[b], a))
    a, b = a[srt], b[srt]
    offsets = np.searchsorted(a, np.arange(n + 1))
    kept = np.ones(n, dtype=bool)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    for r in order[np.isin(order, a)]:
        for q in b[offsets[r] : offsets[r + 1]]:
            if kept[q]:
                duplicate_of[r] = q
                kept[r] = False
                break
    return kept, duplicate_of


def within_clusters(X, labels, centroids, threshold):
    """Every pair inside each cluster (plain NumPy); returns pairs and the time,
    with that of a nearest-centroid pass (what the rule needs besides k-means)."""
    t0 = time.perf_counter()
    C = centroids.astype(np.float32)
    for a in range(0, len(X), BLOCK):  # the nearest-centroid pass, timed, result unused
        x = np.asarray(X[a : a + BLOCK])
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        np.argmax(x @ C.T, axis=1)
    t_assign = time.perf_counter() - t0
    t0 = time.perf_counter()
    members = np.argsort(labels, kind="stable")
    offsets = np.searchsorted(labels[members], np.arange(len(C) + 1))
    pi, pj = [], []
    for c in range(len(C)):
        rows = members[offsets[c] : offsets[c + 1]]
        U = np.asarray(X[rows])
        U = U / np.linalg.norm(U, axis=1, keepdims=True)
        for a in range(0, len(rows), 4096):
            S = U[a : a + 4096] @ U.T
            r, q = np.nonzero(S >= threshold)
            keep = q > r + a
            pi.append(rows[r[keep] + a])
            pj.append(rows[q[keep]])
    return np.concatenate(pi), np.concatenate(pj), t_assign, time.perf_counter() - t0


def exact_slice(X, m, threshold):
    """faiss range search over the first ``m`` rows: pairs and time."""
    import faiss

    U = np.array(X[:m])
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(D)
    index.add(U)
    t0 = time.perf_counter()
    lims, _, nbrs = index.range_search(U, threshold)
    t = time.perf_counter() - t0
    rows = np.repeat(np.arange(m), np.diff(lims).astype(np.int64))
    keep = nbrs > rows
    return rows[keep], nbrs[keep].astype(np.int64), t


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--slice", type=int, default=100_000)
    p.add_argument("--threshold", type=float, default=0.95)
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child[0], float(args.child[1]), args.child[2])
        return
    import hkmeans

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "pool.npy")
        t0 = time.perf_counter()
        originals, copies = make_pool(path, args.n)
        print(f"pool: {args.n} x {D} float32, {len(copies)} planted pairs, written in {time.perf_counter() - t0:.0f} s")
        out = os.path.join(tmp, "hk.npz")
        run = subprocess.run(
            [sys.executable, __file__, "--child", path, str(args.threshold), out],
            capture_output=True,
            text=True,
            check=True,
        )
        info = json.loads(run.stdout.strip().splitlines()[-1])
        hk = np.load(out)
        X = np.load(path, mmap_mode="r")
        n = args.n
        times = info["times"]
        planted_straddle = np.mean(hk["labels"][originals] != hk["labels"][copies])

        def found(kept):
            return np.mean(~(kept[originals] & kept[copies]))

        hk_kept = hk["duplicate_of"] < 0
        wi, wj, t_assign, t_within = within_clusters(X, hk["labels"], hk["centroids"], args.threshold)
        w_kept, _ = greedy(n, hk["order"], wi, wj)
        print(
            f"planted pairs across cluster borders: {planted_straddle:.3f}; border pairs (row, cluster): "
            f"{int(hk['border_pairs'])}"
        )
        print(
            "hkmeans: "
            + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
            + f"; removed {n - hk_kept.sum()}; planted found {found(hk_kept):.4f}; pairs compared "
            f"{info['n_compared']:.3g}; peak RSS {info['peak_rss'] / 2**20:.0f} MiB, of it not the mapped input "
            f"{info['peak_anon'] / 2**20:.0f} MiB "
            f"(input {os.path.getsize(path) / 2**20:.0f} MiB mapped)"
        )
        within_total = times["kmeans"] + t_assign + t_within
        print(
            f"within-cluster: search {t_within:.1f} s, + k-means and a nearest-centroid pass {within_total:.1f} s; "
            f"pairs {len(wi)}; removed {n - w_kept.sum()}; planted found {found(w_kept):.4f}"
        )

        m = min(args.slice, n)
        ei, ej, t_exact = exact_slice(X, m, args.threshold)
        sl = hkmeans.dedup(np.ascontiguousarray(X[:m]), args.threshold, random_state=0)
        e_kept, e_dup = greedy(m, sl.order, ei, ej)
        kept = np.zeros(m, dtype=bool)
        kept[sl.kept] = True
        recall = np.mean(~(kept[ei] & kept[ej])) if len(ei) else 1.0
        same = np.array_equal(e_dup, sl.duplicate_of)
        t_bf = t_exact * (n / m) ** 2
        print(
            f"exact (faiss range_search, {m} rows): {t_exact:.1f} s, {len(ei)} pairs; at {n} ~ {t_bf:.0f} s; "
            f"hkmeans on the slice: recall {recall:.4f}, same result as the rule on exact pairs: {same}"
        )
        print(
            f"ratios: hkmeans / within-cluster (with clustering) {times['total'] / within_total:.2f}, "
            f"sweep + borders / within search {(times['sweep'] + times['labels_and_borders']) / t_within:.2f}, "
            f"hkmeans / extrapolated brute force {times['total'] / t_bf:.4f}"
        )


if __name__ == "__main__":
    main()
