"""Greedy k-means++ of one version of hkmeans against another: the public
``hkmeans.kmeans_plusplus`` only, so that any checkout runs it. Prints the time of one
seeding (after a small one that compiles or loads the kernels) and a digest of the
rows it chose: two versions choose the same rows when their digests agree.

    git worktree add /tmp/hkmeans-old <commit>
    PYTHONPATH=/tmp/hkmeans-old python bench/seeding_versions.py --shape 200000,128,1000
    python bench/seeding_versions.py --shape 200000,128,1000

The rows are ``bench/seeding.py``'s mixture of 200 overlapping Gaussians (float32).
Give each checkout its own ``NUMBA_CACHE_DIR`` when they share a Python.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np
from mixtures import mixture

import hkmeans


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", default="200000,128,1000", help="rows,features,centres")
    args = ap.parse_args(argv)
    n, d, k = (int(v) for v in args.shape.split(","))
    X = mixture(n, d, n_components=200)
    hkmeans.kmeans_plusplus(X[:3000], 50, random_state=0)  # compile or load
    start = time.perf_counter()
    _, rows = hkmeans.kmeans_plusplus(X, k, random_state=0)
    seconds = time.perf_counter() - start
    digest = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes()).hexdigest()[:12]
    where = os.path.dirname(os.path.dirname(os.path.abspath(hkmeans.__file__)))
    print(f"{where}: {n} x {d}, k = {k}: {seconds:.2f} s, rows chosen {digest}")


if __name__ == "__main__":
    main()
