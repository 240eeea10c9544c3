"""Scaling of a fit in n: in process against a local Dask cluster.

For each n: n x 64 float32 rows written as ``.npy`` shards in a temporary folder,
chunk by chunk; then, each in a fresh process (so that memory peaks do not carry
over), a fit of ``(1000, 100)`` clusters, ``max_iter=10``, 2 resamples, in process
(the shards read into memory first, not timed) and on a ``LocalCluster`` of
``--workers`` worker processes reading the shards chunk by chunk. Prints per n the
wall time of each fit, their ratio, the client's peak RSS and the workers' (VmHWM)
and, at the end, the growth of time with n.

    python bench/scale.py                      # n = 1M, 4M, 16M
    python bench/scale.py --sizes 1e6,4e6 --workers 2
    python bench/scale.py --sizes 1e6 --chunk-mb 16,64,256 --dask-only   # worker memory against chunk size
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

D = 64
SHARD_ROWS = 1 << 20
FIT = dict(n_clusters=(1000, 100), max_iter=10, n_resamples=2, random_state=0)


def make_shards(folder, n, seed=0):
    """n x D float32 rows around 2000 random centres, one shard of SHARD_ROWS at a time."""
    centres = np.random.default_rng(seed).normal(scale=4, size=(2000, D)).astype(np.float32)
    for i, a in enumerate(range(0, n, SHARD_ROWS)):
        rng = np.random.default_rng([seed, i])
        m = min(SHARD_ROWS, n - a)
        rows = centres[rng.integers(len(centres), size=m)] + rng.normal(size=(m, D)).astype(np.float32)
        np.save(os.path.join(folder, f"shard_{i}.npy"), rows)


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(backend, folder, workers, chunk_mb=None) -> dict:
    from hkmeans import HierarchicalKMeans
    from hkmeans.readers import open_pool

    if backend == "cpu":
        pool = open_pool(folder)
        X = np.concatenate([rows for _, rows in pool.iter_chunks()])
        start = time.perf_counter()
        HierarchicalKMeans(**FIT).fit(X)
        return dict(seconds=time.perf_counter() - start, client_mb=peak_rss_mb())
    from hkmeans.backends.dask import local_client, pool_array

    client = local_client(workers)
    client.run(lambda: 0)  # the workers are up before the clock starts
    X = pool_array(folder, np.float32, rows=chunk_mb and int(chunk_mb * 2**20) // (D * 4))
    start = time.perf_counter()
    HierarchicalKMeans(**FIT, backend="dask", client=client).fit(X)
    seconds = time.perf_counter() - start
    workers_mb = sorted(client.run(peak_rss_mb).values())
    return dict(
        seconds=seconds,
        client_mb=peak_rss_mb(),
        workers_mb=workers_mb,
        chunks=X.numblocks[0],
        chunk_mb=X.chunks[0][0] * D * 4 / 2**20,
    )


def measure(backend, folder, workers, chunk_mb=None) -> dict:
    cmd = [sys.executable, __file__, "--child", backend, "--data", folder, "--workers", str(workers)]
    cmd += [] if chunk_mb is None else ["--chunk-mb", str(chunk_mb)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{backend} fit failed: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e6,4e6,16e6", help="values of n, comma-separated (default: 1e6,4e6,16e6)")
    p.add_argument("--workers", type=int, default=2, help="Dask worker processes (default: 2)")
    p.add_argument("--chunk-mb", help="Dask chunk sizes in MiB, comma-separated (default: DASK_CHUNK_BYTES, 64)")
    p.add_argument("--dask-only", action="store_true", help="skip the in-process fit")
    p.add_argument("--child", choices=("cpu", "dask"), help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.data, args.workers, args.chunk_mb and float(args.chunk_mb))))
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    chunk_mbs = [None] if args.chunk_mb is None else [float(c) for c in args.chunk_mb.split(",")]
    print(
        f"{'n':>10} {'in-process s':>13} {'dask s':>8} {'ratio':>6} {'client MB (cpu)':>16} "
        f"{'client MB (dask)':>17} {'worker MB':>14} {'chunks':>7}"
    )
    times = {}
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="hkmeans-scale-") as folder:
            make_shards(folder, n)
            cpu = None if args.dask_only else measure("cpu", folder, args.workers)
            for chunk_mb in chunk_mbs:
                dsk = measure("dask", folder, args.workers, chunk_mb)
                times[n] = (cpu and cpu["seconds"], dsk["seconds"])
                workers = "/".join(f"{m:.0f}" for m in dsk["workers_mb"])
                cpu_s, ratio, cpu_mb = (
                    ("-", "-", "-")
                    if cpu is None
                    else (f"{cpu['seconds']:.1f}", f"{dsk['seconds'] / cpu['seconds']:.2f}", f"{cpu['client_mb']:.0f}")
                )
                print(
                    f"{n:>10} {cpu_s:>13} {dsk['seconds']:>8.1f} {ratio:>6} {cpu_mb:>16} {dsk['client_mb']:>17.0f} "
                    f"{workers:>14} {dsk['chunks']:>4} x {dsk['chunk_mb']:.0f} MB",
                    flush=True,
                )
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        growth = "" if args.dask_only else f"in process x{times[hi][0] / times[lo][0]:.1f}, "
        print(f"time growth {hi}/{lo} (n x{hi / lo:.0f}): {growth}dask x{times[hi][1] / times[lo][1]:.1f}")


if __name__ == "__main__":
    main()
