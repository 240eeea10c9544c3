"""Dedup, then curate: copies removed first, so they do not eat the budget.

A pool of 4,000 embeddings of 20 concepts, into which one image was copied
1,000 times (slightly re-encoded each time) and another 300 times. The copies
form dense clusters of their own, which a balanced sample keeps coming back
to. ``hkmeans.dedup`` removes them (cosine similarity 0.99 and above), the fit
runs on the kept rows, and the curated subset's rows are mapped back to the
pool.
"""

import numpy as np
from hkmeans import HierarchicalKMeans, dedup

rng = np.random.default_rng(0)
concept = rng.choice(20, size=4000)
X = rng.normal(size=(20, 32))[concept] + 0.8 * rng.normal(size=(4000, 32))
copies = [(0, 1000), (1, 300)]  # (original row, how many copies)
for row, m in copies:
    noise = 0.002 * rng.normal(size=(m, 32))
    X = np.vstack([X, X[row] + noise])
source = np.concatenate([np.arange(4000)] + [np.full(m, r) for r, m in copies])
X = X.astype(np.float32)

result = dedup(X, threshold=0.99, random_state=0)
print(
    f"pool {len(X)} rows, kept {len(result.kept)}, "
    f"removed {result.removed.size}"
)


def copies_in(rows):
    return sum(int(np.isin(source[rows], r).sum()) for r, _ in copies)


for name, pool in [
    ("without dedup", np.arange(len(X))),
    ("after dedup", result.kept),
]:
    model = HierarchicalKMeans((100, 20), n_resamples=3, random_state=0)
    subset = pool[model.fit(X[pool]).sample(400)]  # rows of the whole pool
    print(
        f"{name:14} rows of the copied images in 400 picks: {copies_in(subset)}"
    )
assert copies_in(pool[model.sample(400)]) <= len(copies)
