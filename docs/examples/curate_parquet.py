"""Curate a Parquet pool with ids, end to end on the command line.

A pool of 6,000 rows with an ``id`` column and an embedding column:
``hkmeans curate`` fits and samples 600 rows, ``hkmeans export`` writes every
row's clusters, and the curated rows are read back by id.
"""

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

rng = np.random.default_rng(0)
concept = rng.zipf(1.6, size=6000) % 30  # 30 concepts, a few of them common
X = rng.normal(scale=5, size=(30, 32))[concept] + rng.normal(size=(6000, 32))
emb = pa.FixedSizeListArray.from_arrays(
    pa.array(X.astype(np.float32).ravel()), 32
)
ids = pa.array([f"doc-{i:05d}" for i in range(6000)])
pq.write_table(pa.table({"id": ids, "emb": emb}), "pool.parquet")


def hkmeans(*args):
    subprocess.run([sys.executable, "-m", "hkmeans", *args], check=True)


hkmeans(
    "curate",
    "pool.parquet",
    "--out",
    "run",
    "--n-clusters",
    "200,20",
    "--n-resamples",
    "3",
    "--target-size",
    "600",
    "-q",
)
hkmeans("export", "run")

selected = pq.read_table("run/selected.parquet")
print("curated rows:", selected.num_rows)
print("columns:", ", ".join(selected.column_names))
print("first ids:", ", ".join(selected.column("id").to_pylist()[:3]))
rows = [int(i[4:]) for i in selected.column("id").to_pylist()]
pool, picked = (
    np.bincount(concept, minlength=30),
    np.bincount(concept[rows], minlength=30),
)
print(
    f"commonest concept: {pool.max() / 6000:.0%} of the pool, "
    f"{picked[pool.argmax()] / 600:.0%} of the subset"
)
assert picked[pool.argmax()] / 600 < pool.max() / 6000
