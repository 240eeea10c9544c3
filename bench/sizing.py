"""Time and peak memory of a curation against the pool's size: the chart and the
sizing table that open the performance page.

    python bench/sizing.py [--sizes 25000,50000,100000,200000] [--d 64] [--out FILE.png]

For each n, in a process of its own: a mixture of 100 Gaussians, n x d float32
saved as a .npy file, then ``hkmeans curate`` on it with the advised levels for a
target of n / 10 and 3 resamples per level. Prints one line per n (wall time of
the command, the child's peak resident memory, the data's size) and draws both
against n.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def measure(n: int, d: int, folder: Path) -> tuple[float, float]:
    """Seconds and peak MiB of ``hkmeans curate`` on ``n`` x ``d`` rows."""
    rng = np.random.default_rng(0)
    X = rng.normal(scale=3, size=(100, d))[rng.integers(100, size=n)] + rng.normal(size=(n, d))
    np.save(folder / "x.npy", X.astype(np.float32))
    del X
    config = subprocess.run([sys.executable, "-m", "hkmeans", "advise", folder / "x.npy", "--target-size",
                             str(n // 10)], check=True, capture_output=True, text=True).stdout
    (folder / "c.toml").write_text(config.replace("n_resamples = [10", "n_resamples = [3"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hkmeans", "curate", folder / "x.npy", "--out", folder / f"run{n}",
                    "--config", folder / "c.toml", "--n-resamples", "3", "--target-size", str(n // 10), "-q"],
                   check=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, max(peak, before) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="25000,50000,100000,200000")
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--out", default=None, help="a PNG of time and memory against n")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"{'n':>9} {'data MiB':>9} {'seconds':>8} {'peak MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            seconds, peak = measure(n, args.d, Path(tmp))
            rows.append((n, n * args.d * 4 / 2**20, seconds, peak))
            print(f"{n:>9} {rows[-1][1]:>9.1f} {seconds:>8.1f} {peak:>9.0f}", flush=True)
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        n, data, seconds, peak = (np.array(c) for c in zip(*rows))
        fig, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2), layout="constrained")
        left.loglog(n, seconds, "o-")
        left.set(xlabel="rows n", ylabel="seconds", title=f"hkmeans curate, d = {args.d}")
        right.loglog(n, peak, "o-", label="peak memory")
        right.loglog(n, data, "s--", label="the data")
        right.set(xlabel="rows n", ylabel="MiB", title="peak resident memory")
        right.legend()
        fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
