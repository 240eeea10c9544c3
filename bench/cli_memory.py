"""Memory of ``hkmeans fit`` on a float16 embeddings file: by default 1,000,000 x 128
float16 (256 MB on disk), one level of k = 1000, random initialisation, 5 Lloyd
iterations, 1 resample.

    python bench/cli_memory.py [--n 1000000] [--d 128] [--k 1000] [--dir /tmp/hkmeans-bench]

Runs the command as a subprocess and samples its /proc status every 20 ms: peak
resident memory in all, and its anonymous part (memory the process owns, as opposed to
pages of the memory-mapped files, which the kernel can drop and reread).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024  # MiB
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--dir", default="/tmp/hkmeans-bench")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"emb-{args.n}x{args.d}-f16.npy")
    if not os.path.exists(path):
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(args.n, args.d))
        rng = np.random.default_rng(0)
        for a in range(0, args.n, 100_000):
            m = min(100_000, args.n - a)
            X[a : a + m] = rng.standard_normal((m, args.d), dtype=np.float32) + rng.integers(0, 50, (m, 1))
        X.flush()
        del X
    cmd = [
        sys.executable,
        "-m",
        "hkmeans",
        "fit",
        path,
        "--out",
        os.path.join(args.dir, "run"),
        "--overwrite",
        "--n-clusters",
        str(args.k),
        "--n-resamples",
        "1",
        "--max-iter",
        "5",
        "--init",
        "random",
        "-q",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    peak = {"VmRSS": 0.0, "RssAnon": 0.0, "RssFile": 0.0}
    while proc.poll() is None:
        try:
            for key, value in status(proc.pid).items():
                peak[key] = max(peak[key], value)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(proc.returncode)
    size = os.path.getsize(path) / 2**20
    print(
        f"hkmeans fit on {args.n} x {args.d} float16 ({size:.0f} MiB file, {2 * size:.0f} MiB as float32), "
        f"k={args.k}: {seconds:.0f} s"
    )
    print(
        f"peak RSS {peak['VmRSS']:.0f} MiB, of which anonymous {peak['RssAnon']:.0f} MiB and "
        f"file-backed {peak['RssFile']:.0f} MiB (mapped input and cast copy)"
    )


if __name__ == "__main__":
    main()
