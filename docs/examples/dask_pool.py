"""A pool in chunks on Dask: the same estimator, run by workers.

A Dask array (here made in memory; ``da.from_zarr`` or ``da.from_npy_stack`` for
a pool on disk) is fitted by the workers of a client, chunk by chunk, and
sampled as any fit is.
"""

import dask.array as da
import numpy as np
from distributed import Client
from hkmeans import HierarchicalKMeans
from hkmeans.plot import normalized_entropy

rng = np.random.default_rng(0)
share = 1 / np.arange(1, 21)
blob = rng.choice(20, size=4000, p=share / share.sum())
X = (
    rng.normal(scale=4, size=(20, 16))[blob] + rng.normal(size=(4000, 16))
).astype(np.float32)

if __name__ == "__main__":
    with Client(
        processes=False,
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=":0",
    ):
        chunked = da.from_array(X, chunks=(500, 16))
        model = HierarchicalKMeans((80, 10), n_resamples=2, random_state=0)
        subset = model.fit(chunked).sample(500)
    random = rng.choice(4000, 500, replace=False)
    curated, drawn = (
        normalized_entropy(np.bincount(blob[rows], minlength=20))
        for rows in (subset, random)
    )
    print(
        f"chunks: {chunked.numblocks[0]}, picked: {len(subset)}, "
        f"balance over the blobs: curated {curated:.2f}, random {drawn:.2f}"
    )
    assert curated > drawn
