"""Tunables read by host code."""

#: Rows per block in the assignment kernels. Fixed, so that every row sees the
#: same arithmetic whatever the number of threads.
CHUNK_ROWS = 256

#: Up to this many features the assignment computes distances directly,
#: vectorised over centroids; above it, one GEMM per block of rows.
SMALL_D = 16

#: Bytes of the transposed row block that k-means++ seeding keeps per thread.
SEEDING_BLOCK_BYTES = 1 << 18


def seeding_rows(n_features: int) -> int:
    """Rows per block in k-means++ seeding: a float64 block of ``n_features`` columns
    fits in ``SEEDING_BLOCK_BYTES``, between 256 and 4096 rows."""
    return int(min(4096, max(256, SEEDING_BLOCK_BYTES // (8 * n_features))))
