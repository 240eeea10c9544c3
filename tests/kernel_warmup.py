"""Compile (or load from the disk cache) the kernels most tests use: a fit, both
samplings and a dedup, on rows of 2 and of 40 features (the two seeding paths).

Run as a script it does one dtype: before its workers start, the test session runs
one such process per dtype, so each kernel compiles once, both cores busy, instead
of once in every worker that reaches it first at the same time.

    python tests/kernel_warmup.py float32
"""

import sys

import numpy as np

DTYPES = ("float32", "float64")


def warm(dtype) -> None:
    from hkmeans import HierarchicalKMeans, dedup

    rng = np.random.default_rng(0)
    for d in (2, 40):
        X = rng.normal(size=(60, d)).astype(dtype)
        model = HierarchicalKMeans((6, 3), n_resamples=1, random_state=0).fit(X)
        model.sample(20, strategy="closest")
        model.sample(20)
        dedup(X, 0.9, random_state=0)


if __name__ == "__main__":
    from hkmeans._kernels import silence_compile_notice

    silence_compile_notice()
    warm(sys.argv[1])
