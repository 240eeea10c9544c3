"""Numba CPU kernels, one module per job: ``assign`` (nearest centroid, Lloyd bounds),
``groups`` (rows by label, cluster sums), ``select`` (per-cluster selection, balanced
splitting), ``seeding`` (k-means++), with ``_common`` helpers and ``simd`` building
blocks.

Every kernel gives the same result whatever the number of threads: work is cut into
blocks whose boundaries depend only on the input, and every reduction is summed in a
fixed order.
"""
