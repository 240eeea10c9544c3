"""Choosing levels: ask ``advise``, compare with one level, look at the labels.

On 8,000 points of 50 concepts with long-tailed sizes, the advised hierarchy
and a single level are each asked for 800 points; the balance over the true
concepts (normalised entropy, 1 when every concept gives as many points) is
printed beside a random subset's, and the figure shows every concept's share.
"""

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from hkmeans import HierarchicalKMeans, advise  # noqa: E402
from hkmeans.plot import label_shares, normalized_entropy  # noqa: E402

rng = np.random.default_rng(0)
share = 1 / np.arange(1, 51)
concept = rng.choice(50, size=8000, p=share / share.sum())
X = rng.normal(scale=3, size=(50, 16))[concept] + rng.normal(size=(8000, 16))
X = X.astype(np.float32)

advice = advise(len(X), 800, n_resamples=3)
print("advised:", advice.params["n_clusters"])
fits = {
    "advised": HierarchicalKMeans(**advice.params, random_state=0),
    "one level": HierarchicalKMeans((80,), n_resamples=3, random_state=0),
}
random = rng.choice(len(X), 800, replace=False)
print(
    f"{'random':10} balance "
    f"{normalized_entropy(np.bincount(concept[random])):.3f}"
)
for name, model in fits.items():
    subset = model.fit(X).sample(800)
    counts = np.bincount(concept[subset], minlength=50)
    print(
        f"{name:10} balance {normalized_entropy(counts):.3f}, "
        f"smallest concept {counts.min()}"
    )
    assert normalized_entropy(counts) > normalized_entropy(
        np.bincount(concept[random])
    )

fig = label_shares(concept, subset, name="one level", random_rows=random)
fig.savefig("choosing_levels.png", dpi=72)
