"""hkmeans: automatic data curation by hierarchical k-means with resampling."""

# first: settles where kernels are cached (a private fallback where Numba's own
# folders are read-only) before any module defines a cached kernel
from . import _kernels as _kernels
from ._version import __version__ as __version__
from .advise import advise
from .dedup import DedupResult, dedup
from .estimator import HierarchicalKMeans, KMeans
from .hierarchy import Level, hierarchical_kmeans
from .sampling import flat_sampling, hierarchical_sampling
from .seeding import kmeans_plusplus
from .tree import ClusterTree

__all__ = [
    "ClusterTree",
    "DedupResult",
    "HierarchicalKMeans",
    "KMeans",
    "Level",
    "advise",
    "dedup",
    "flat_sampling",
    "hierarchical_kmeans",
    "hierarchical_sampling",
    "kmeans_plusplus",
]
