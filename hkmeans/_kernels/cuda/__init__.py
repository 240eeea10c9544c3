"""Numba CUDA kernels, twins of :mod:`hkmeans._kernels.cpu` with the same module names:
``assign`` (nearest centroid), ``groups`` (rows by label, cluster sums), ``select``
(per-cluster selection), ``seeding`` (k-means++ passes), with ``_common`` helpers.

Nothing here is imported with :mod:`hkmeans`: the CUDA backend imports these modules
when it is first used, so the package works where no CUDA toolkit is installed. The
kernels keep to the portable subset of Numba's CUDA target (``cuda.jit``, shared and
local arrays, grid-stride loops) and run in its simulator. Every reduction is summed in
an order fixed by the input and the launch shape, never by thread scheduling.
"""
