"""The cost model (:mod:`hkmeans.cost`) against measured fits: each case's predicted
time (an upper bound) and peak memory beside the input, and the fit's.

    python bench/cost.py [--cases rings,0,1,2] [--scale 1.0]

Cases: ``rings``, the demo's fit (29,700 rows in 2-D, levels (1000, 300), 10
resamples, defaults otherwise); ``0``, ``1``, ``2``, the peer shapes of
``bench/compare.py`` (a mixture of 200 Gaussians, float32; one level, 10 Lloyd
iterations, no resampling), their rows and clusters times ``--scale``. Each case runs
in a process of its own, so that its peak resident memory (VmHWM, reset before the
fit) is the fit's; the rates are calibrated (and cached) first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from compare import PEER_SHAPES
from mixtures import mixture


def case(name, scale):
    """``(X, fit parameters)`` of a case."""
    if name == "rings":
        from hkmeans.datasets import make_rings

        X, _ = make_rings(random_state=0)
        return X, dict(n_clusters=[1000, 300], n_resamples=10)
    n0, d, k0 = PEER_SHAPES[int(name)]
    n, k = max(int(n0 * scale), 20), max(int(k0 * scale), 2)
    return mixture(n, d, n_components=200), dict(n_clusters=[k], n_resamples=[0], max_iter=10)


def rss(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def run_case(name, scale):
    import hkmeans
    from hkmeans.cost import estimate

    X, params = case(name, scale)
    levels = estimate(*X.shape, X.dtype, **params)  # calibrated in the parent: from the cache
    hkmeans.hierarchical_kmeans(X[: max(2000, 4 * params["n_clusters"][0])], random_state=1, **params)  # kernels
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM
        f.write("5")
    before = rss("VmRSS")
    start = time.perf_counter()
    hkmeans.hierarchical_kmeans(X, random_state=0, **params)
    seconds = time.perf_counter() - start
    return dict(
        case=name,
        shape=list(X.shape),
        params=params,
        predicted=sum(c.seconds for c in levels),
        predicted_bytes=max(c.peak_bytes for c in levels),
        seconds=seconds,
        peak_bytes=rss("VmHWM") - before,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="rings,0,1,2")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.scale)))
        return
    print(
        "| case | shape | levels | predicted time, at most (s) | measured (s) | measured / predicted "
        "| predicted peak (MiB) | measured peak (MiB) | measured / predicted | calibration (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    from hkmeans.cost import estimate

    for name in args.cases.split(","):
        X, params = case(name, args.scale)
        start = time.perf_counter()
        estimate(*X.shape, X.dtype, **params)  # calibrated here (or read from the cache)
        calibration = time.perf_counter() - start
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, "--scale", str(args.scale)], capture_output=True, text=True
        )
        if out.returncode:
            sys.exit(out.stderr)
        r = json.loads(out.stdout.splitlines()[-1])
        mib = 2**20
        print(
            f"| {r['case']} | {r['shape'][0]} x {r['shape'][1]} | {r['params']['n_clusters']} "
            f"| {r['predicted']:.2f} | {r['seconds']:.2f} | {r['seconds'] / r['predicted']:.2f} "
            f"| {r['predicted_bytes'] / mib:.0f} | {r['peak_bytes'] / mib:.0f} "
            f"| {r['peak_bytes'] / r['predicted_bytes']:.2f} | {calibration:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
