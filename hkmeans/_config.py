"""Tunables read by host code."""

#: Rows per block in the assignment kernels: at least this many. Fixed for given
#: shapes, so that every row sees the same arithmetic whatever the number of threads.
CHUNK_ROWS = 256

#: With few centroids, blocks grow up to this many rows while one block's distances
#: to all centroids fit in ``CHUNK_BYTES`` (fewer, larger GEMMs).
CHUNK_ROWS_MAX = 1024
CHUNK_BYTES = 4 << 20

#: Up to this many features the assignment computes distances directly,
#: vectorised over centroids; above it, one GEMM per block of rows.
SMALL_D = 16

#: Rows per block in k-means++ seeding: the unit in which candidates are drawn and,
#: for few features, in which blocks too far from a candidate are skipped.
SEEDING_ROWS = 256

#: Lloyd's bounds: at most this many groups of centres, each row keeping one lower
#: bound per group (memory: 4 bytes x rows x groups).
BOUND_GROUPS = 16

#: Split levels run their clusters' k-means side by side, one per thread, when a
#: cluster's points x n_splits x features averages at least this; below it, each run
#: is too short for its kernels to outweigh its Python, which holds the GIL, and the
#: runs go one after another, each on all threads.
SPLIT_SIDE_BY_SIDE_WORK = 1 << 18

#: Passes of fewer operations than this (rows x centroids x features for a search,
#: rows x features for sums) run on one thread: waking the others costs more, and on
#: a shared machine a woken thread may wait for a core while the pass waits for it.
PARALLEL_WORK = 1 << 20

#: Use fewer threads than cores while other processes keep cores busy (see
#: :func:`hkmeans._threads.available_threads`), checked at most this often.
ADAPT_TO_LOAD = True
LOAD_CHECK_SECONDS = 0.25

#: Rows per chunk of an input read lazily for the dask backend: about this many bytes
#: in the compute dtype. Fixed for given shapes (not taken from the files' layout), so
#: that one input gives the same chunking, hence the same result, in any layout.
DASK_CHUNK_BYTES = 64 << 20

#: Chunks (or partial results) combined per task of the dask backend's reductions.
DASK_SPLIT_EVERY = 8

#: Largest resampling subset (in bytes of rows) the dask backend gathers on the client
#: to cluster in memory; a larger one stays on the workers, a dask array of its own,
#: so the client's memory does not grow with the pool.
DASK_CLIENT_SUBSET_BYTES = 64 << 20

#: Of ``n_init`` runs, a later one replaces the best so far only if its inertia is
#: lower by more than this fraction: below it, the difference is rounding, which the
#: order of the rows (or weights in place of repeated rows) may flip.
N_INIT_RTOL = 1e-9

#: Rounds of k-means|| draws (each about 2 * n_clusters candidates and one search of
#: the rows over them). Bahmani et al. use 5, Spark MLlib 2; the inertia each gives
#: is in docs/performance.md.
KMEANS_PARALLEL_ROUNDS = 3
