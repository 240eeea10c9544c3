"""One table of the fit parameters of a hierarchical k-means: default, constraint,
whether it takes one value per level, and help. The estimator's defaults, the checks
(:mod:`hkmeans._validation`), the command line's flags and TOML keys, and their help
all read it."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

INITS = ("k-means++", "k-means||", "random")
METRICS = ("euclidean", "cosine")
RESAMPLE_STRATEGIES = ("closest", "random")
DEVICES = ("cpu", "cuda")
BACKENDS = ("auto", "cpu", "dask")


def is_int(v, low=None, high=None) -> bool:
    """Whether ``v`` is an integer (not a bool) in ``[low, high]``."""
    return (
        isinstance(v, numbers.Integral)
        and not isinstance(v, bool)
        and (low is None or v >= low)
        and (high is None or v <= high)
    )


def is_finite_non_negative(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and float(v) >= 0


@dataclass(frozen=True)
class Param:
    """One parameter: its default, the check of one value (one level's, for a
    per-level parameter) and what that check asks for in words, a help line, and the
    command line's metavar or choices and how its flag's text is read (None: as an
    integer, or a float for numbers)."""

    default: object
    entry: Callable
    what: str
    help: str
    per_level: bool = False
    metavar: str | None = None
    choices: tuple | None = None
    parse: Callable | None = None

    def accepts(self, value) -> bool:
        """Whether ``value`` suits: for a per-level parameter, one entry or a non-empty
        list of them."""
        if self.per_level and isinstance(value, (list, tuple)):
            return len(value) > 0 and all(self.entry(v) for v in value)
        return self.entry(value)

    @property
    def requirement(self) -> str:
        return f"{self.what} or one per level" if self.per_level else self.what


def choice(options, default, help) -> Param:
    """A parameter whose value is one of ``options``."""
    return Param(
        default,
        lambda v: isinstance(v, str) and v in options,
        "one of " + ", ".join(map(repr, options)),
        help,
        choices=options,
    )


def rows_per_centroid(help) -> Param:
    """A number of rows per cluster to sample, or None (default) for every row."""
    return Param(None, lambda v: v is None or is_int(v, 1), "a positive integer or None", help, metavar="M")


FIT_PARAMS = {
    "n_clusters": Param(
        8,
        lambda v: is_int(v, 1),
        "a positive integer",
        "clusters per level, finest first",
        per_level=True,
        metavar="K[,K...]",
    ),
    "n_resamples": Param(
        10,
        lambda v: is_int(v, 0),
        "a non-negative integer",
        "resampling steps per level",
        per_level=True,
        metavar="R[,R...]",
    ),
    "sample_size": Param(
        None,
        lambda v: v is None or is_int(v, 0),
        "a non-negative integer",
        "points per cluster in a resampling step (default: half the level's mean cluster size)",
        per_level=True,
        metavar="S[,S...]",
    ),
    "resample_strategy": choice(RESAMPLE_STRATEGIES, "closest", "which points a resampling step takes"),
    "n_splits": Param(
        1,
        lambda v: is_int(v, 1),
        "a positive integer",
        "split a level's clusters in this many by a k-means each (a divisor of its n_clusters)",
        per_level=True,
        metavar="S[,S...]",
    ),
    "init": choice(INITS, "k-means++", "seeding of each k-means"),
    "n_init": Param(1, lambda v: is_int(v, 1), "a positive integer", "runs per k-means, the best kept", metavar="N"),
    "max_iter": Param(
        50, lambda v: is_int(v, 1), "a positive integer", "Lloyd iterations per k-means at most", metavar="N"
    ),
    "tol": Param(
        0.0,
        is_finite_non_negative,
        "a finite non-negative number",
        "stop a k-means when its squared centre shift falls to this, relative to the data's variance",
        metavar="TOL",
    ),
    "max_points_per_centroid": rows_per_centroid(
        "fit each k-means on a random sample of this many rows per cluster, then "
        "assign every row (default: fit on every row)"
    ),
    "init_points_per_centroid": rows_per_centroid(
        "seed each k-means (k-means++ or k-means||) from a random sample of this many "
        "rows per cluster (default: from every row)"
    ),
    "metric": choice(METRICS, "euclidean", "cosine: spherical k-means on unit rows"),
    "device": choice(DEVICES, "cpu", "where the kernels run"),
    "backend": choice(
        BACKENDS,
        "auto",
        "how level 0 runs: in this process (cpu), over the chunks of a dask "
        "array (dask), or auto: dask for a dask array, cpu otherwise",
    ),
}
