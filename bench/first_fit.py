"""Time from the start of a fresh Python process to its first fitted result on small
data: the first process compiles the kernels (or finds them cached), the next ones
load them from the on-disk cache.

    python bench/first_fit.py [--runs 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CODE = """
import time
start = time.perf_counter()
import numpy as np
from hkmeans import HierarchicalKMeans
X = np.random.default_rng(0).normal(size=(500, 8))
HierarchicalKMeans((20, 5), random_state=0).fit(X).sample(100)
print(time.perf_counter() - start)
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    for run in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
        print(f"process {run + 1}: import + fit + sample in {float(out.stdout):.2f} s")


if __name__ == "__main__":
    main()
