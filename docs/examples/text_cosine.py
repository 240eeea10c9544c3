"""Text embeddings: cluster directions, not lengths (``metric="cosine"``).

Sentence embeddings often carry their meaning in their direction while their
length varies with the text's length. Here 5,000 vectors of 20 topics of very
different sizes have random lengths; the cosine fit balances the topics, and a
random subset of the same size follows the pool.
"""

import numpy as np
from hkmeans import HierarchicalKMeans
from hkmeans.plot import normalized_entropy

rng = np.random.default_rng(0)
share = 1 / np.arange(1, 21) ** 1.5  # topic sizes fall steeply
topic = rng.choice(20, size=5000, p=share / share.sum())
X = rng.normal(size=(20, 64))[topic] + 0.3 * rng.normal(size=(5000, 64))
X *= rng.uniform(0.2, 5, size=(5000, 1))  # lengths that mean nothing
X = X.astype(np.float32)

model = HierarchicalKMeans(
    (100, 20), n_resamples=3, metric="cosine", random_state=0
).fit(X)
subset = model.sample(1000)
random = rng.choice(5000, 1000, replace=False)
for name, rows in [
    ("pool", np.arange(5000)),
    ("curated", subset),
    ("random", random),
]:
    counts = np.bincount(topic[rows], minlength=20)
    print(
        f"{name:8} smallest topic {counts.min():4d}, "
        f"largest {counts.max():4d}, "
        f"balance {normalized_entropy(counts):.2f}"
    )
curated = normalized_entropy(np.bincount(topic[subset], minlength=20))
assert curated > normalized_entropy(np.bincount(topic[random], minlength=20))
