"""Every check of the fit parameters and of the weights, in one place, driven by the
parameter table (:data:`hkmeans._params.FIT_PARAMS`).

The entry points call it before any work: the estimators, the public functions
(:func:`~hkmeans.hierarchy.hierarchical_kmeans`, :func:`~hkmeans.seeding.kmeans_plusplus`)
and the command line. The engine behind them trusts what it is given. Errors are one
line, worded as scikit-learn's where scikit-learn has the same check.
"""

from __future__ import annotations

import numbers
import re
import reprlib
import warnings
from dataclasses import dataclass

import numpy as np

from ._params import FIT_PARAMS, INITS, is_int

#: Short reprs for error messages: a few entries of a container, the start and the
#: end of a long text, and no error from a repr that raises.
_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 6
_SHORT.maxstring = _SHORT.maxother = 80


def shown(value) -> str:
    """``value`` as an error message shows it: a short ``repr`` on one line (the start
    and end of a long one); an array of more than a few entries by its shape and dtype."""
    if isinstance(value, np.ndarray) and value.size > 4:
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = re.sub(r"\s*\n\s*", " ", _SHORT.repr(value))
    return text if len(text) <= 100 else f"{text[:48]}...{text[-48:]}"


def check_choice(name, value, options) -> str:
    """``value`` if it is one of the strings ``options``; a one-line ``ValueError``
    otherwise (an array there too, where ``in`` would raise NumPy's ambiguity)."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}, got {shown(value)}.")
    return value


def check(name, value):
    """``value`` if it suits parameter ``name`` (one that is not per level), an
    integer as a Python int (NumPy's would wrap around in products); a ``ValueError``
    saying what it must be otherwise."""
    param = FIT_PARAMS[name]
    if not param.accepts(value):
        raise ValueError(f"{name} must be {param.what}, got {shown(value)}.")
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value


def _per_level_list(value) -> bool:
    """Whether ``value`` gives one entry per level: a list, a tuple or an array of one
    dimension or more (a NumPy scalar is one value for every level)."""
    return isinstance(value, (list, tuple)) or (hasattr(value, "__array__") and np.ndim(value) > 0)


def per_level(name, value, n_levels) -> list:
    """``value`` as one entry per level (an int is the same at every level), each
    checked against :data:`~hkmeans._params.FIT_PARAMS`; a ``ValueError`` naming
    ``name`` otherwise."""
    param = FIT_PARAMS[name]
    values = list(value) if _per_level_list(value) else [value] * n_levels
    if len(values) != n_levels:
        raise ValueError(f"{name} has {len(values)} entries but n_clusters has {n_levels} levels.")
    for v in values:
        if not param.entry(v):
            none = " or None" if param.default is None else ""
            raise ValueError(f"{name} entries must each be {param.what}{none}, got {shown(v)}.")
    return [None if v is None else int(v) for v in values]


def check_init_array(init, n_clusters, n_features, dtype):
    """An array ``init`` as C-contiguous centres of ``dtype``; a ``ValueError`` worded
    as scikit-learn's unless of shape ``(n_clusters, n_features)`` and finite."""
    given = init
    with np.errstate(over="ignore"):  # values beyond ``dtype``'s range: the error below says so
        init = np.array(init, dtype=dtype, order="C")
    if init.ndim != 2 or init.shape[0] != n_clusters:
        raise ValueError(
            f"The shape of the initial centers {init.shape} does not match the number of clusters {n_clusters}."
        )
    if init.shape[1] != n_features:
        raise ValueError(
            f"The shape of the initial centers {init.shape} does not match the number of features "
            f"of the data {n_features}."
        )
    if not np.all(np.isfinite(init)):
        if np.all(np.isfinite(np.asarray(given, dtype=np.float64))):
            raise ValueError(f"init array has values too large for the data's dtype ({np.dtype(dtype).name}).")
        raise ValueError("init array contains NaN or infinity.")
    return init


def check_n_clusters(n_clusters, n_samples) -> int:
    """``n_clusters`` as an int; a ``ValueError`` unless in ``[1, n_samples]``."""
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive integer, got {shown(n_clusters)}.")
    if n_samples < n_clusters:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={n_clusters}.")
    return int(n_clusters)


def check_kmeans_params(X, n_clusters, init, n_init, max_iter, tol, metric, hierarchical=False):
    """Validate k-means parameters against validated data ``X`` before any work.

    Returns ``(init, n_init)`` with ``n_init="auto"`` resolved as in scikit-learn
    (10 runs for "random" or a callable, 1 otherwise) and an array ``init`` as a
    C-contiguous array. A callable ``init(X, n_clusters, random_state)`` is checked
    where it is called (:func:`hkmeans.seeding.init_centers`). ``hierarchical``: the
    levels' ``n_clusters`` are checked by :func:`check_hierarchy`, and ``init`` must be
    a name.
    """
    if not hierarchical:
        check_n_clusters(n_clusters, X.shape[0])
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, a callable or an array, got {shown(init)}.")
    elif hierarchical:
        raise ValueError(f"init must be one of {INITS} for a hierarchical fit, got {type(init).__name__}.")
    elif not callable(init):
        init = check_init_array(init, n_clusters, X.shape[1], X.dtype)
    if isinstance(n_init, str) and n_init == "auto":
        n_init = 10 if callable(init) or (isinstance(init, str) and init == "random") else 1
    elif isinstance(n_init, bool) or not isinstance(n_init, numbers.Integral) or n_init < 1:
        raise ValueError(f"n_init must be 'auto' or a positive integer, got {shown(n_init)}.")
    if isinstance(init, np.ndarray) and n_init != 1:
        warnings.warn(
            f"Explicit initial center position passed: performing only one init instead of n_init={n_init}.",
            RuntimeWarning,
            stacklevel=3,
        )
        n_init = 1
    check("max_iter", max_iter)
    check("tol", tol)
    check("metric", metric)
    return init, int(n_init)


def check_options(verbose, copy_x=True, client=None) -> None:
    """The estimators' parameters that change no result, checked as scikit-learn
    checks them: ``verbose`` a bool or a non-negative integer, ``copy_x`` a bool,
    ``client`` None or a Dask client; a ``ValueError`` of one line otherwise."""
    if not isinstance(verbose, (bool, np.bool_)) and not is_int(verbose, 0):
        raise ValueError(f"verbose must be a bool or a non-negative integer, got {shown(verbose)}.")
    if not isinstance(copy_x, (bool, np.bool_)):
        raise ValueError(f"copy_x must be a bool, got {shown(copy_x)}.")
    if client is not None and not all(hasattr(client, name) for name in ("submit", "compute", "gather")):
        raise ValueError(f"client must be None or a distributed.Client, got {shown(client)}.")


def check_sample_weight(sample_weight, n_samples):
    """``sample_weight`` as float64 weights of ``n_samples`` rows (a scalar: the same
    for all; None stays None); a ``ValueError`` unless finite, non-negative, not all
    zero and of a finite sum."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind == "c":
        raise ValueError("sample_weight must be real numbers, got complex ones.")
    w = np.asarray(w, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n_samples, float(w))
    if w.ndim != 1:
        raise ValueError(f"Sample weights must be 1D array or scalar, got an array of shape {w.shape}.")
    if w.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {w.shape}, expected {(n_samples,)}!")
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or infinity.")
    if np.any(w < 0):
        raise ValueError("Negative values in data passed to sample_weight; weights must be >= 0.")
    if not np.any(w > 0):
        raise ValueError("sample_weight is all zero; at least one weight must be positive.")
    if not np.isfinite(np.sum(w)):
        raise ValueError("sample_weight sums to more than float64 holds; scale the weights down.")
    return np.ascontiguousarray(w)


def check_hierarchy_params(n_samples, n_clusters, n_resamples, sample_size, resample_strategy, n_splits=1):
    """Validate per-level parameters against the data size; returns per-level lists
    ``(n_clusters, n_resamples, sample_size, n_splits)``."""
    ks = list(n_clusters) if _per_level_list(n_clusters) else [n_clusters]
    if not ks:
        raise ValueError("n_clusters must hold at least one level.")
    ks = per_level("n_clusters", ks, len(ks))
    if n_samples < ks[0]:
        raise ValueError(f"n_samples={n_samples} should be >= n_clusters={ks[0]} (level 0).")
    for t in range(1, len(ks)):
        if ks[t] > ks[t - 1]:
            raise ValueError(
                f"level {t} asks for n_clusters={ks[t]} but level {t - 1} has only "
                f"{ks[t - 1]} centroids to cluster; n_clusters must not increase."
            )
    resamples = per_level("n_resamples", n_resamples, len(ks))
    sizes = per_level("sample_size", sample_size, len(ks))
    check("resample_strategy", resample_strategy)
    splits = per_level("n_splits", n_splits, len(ks))
    for t, (k, s) in enumerate(zip(ks, splits)):
        if s < 1 or k % s:
            raise ValueError(
                f"n_splits={s} at level {t} must be a positive divisor of n_clusters={k}: the level "
                f"runs a k-means with n_clusters / n_splits clusters and splits each in n_splits."
            )
        if s > 1 and resamples[t] > 0 and (sizes[t] is None or sizes[t] > 1):
            raise ValueError(
                f"level {t} asks for both splitting (n_splits={s}) and resampling "
                f"(n_resamples={resamples[t]}); set n_resamples=0 or sample_size=1 at that level."
            )
    return ks, resamples, sizes, splits


@dataclass(frozen=True)
class HierarchyParams:
    """The fit parameters of a hierarchical k-means, checked: per level as lists, the
    rest as given (``n_init`` resolved)."""

    n_clusters: list
    n_resamples: list
    sample_size: list
    n_splits: list
    resample_strategy: str
    init: str
    n_init: int
    max_iter: int
    tol: float
    metric: str
    max_points_per_centroid: int | None
    init_points_per_centroid: int | None
    device: str
    backend: str


def check_hierarchy(X, **params) -> HierarchyParams:
    """Every fit parameter of a hierarchical k-means over the rows of ``X`` (anything
    with a ``shape`` and ``dtype``), checked once; those not given take their default
    from :data:`~hkmeans._params.FIT_PARAMS`."""
    unknown = sorted(set(params) - set(FIT_PARAMS))
    if unknown:
        raise TypeError(f"unknown fit parameters: {', '.join(unknown)}.")
    p = {name: params.get(name, param.default) for name, param in FIT_PARAMS.items()}
    ks, resamples, sizes, splits = check_hierarchy_params(
        X.shape[0], p["n_clusters"], p["n_resamples"], p["sample_size"], p["resample_strategy"], p["n_splits"]
    )
    init, n_init = check_kmeans_params(
        X, ks[0], p["init"], p["n_init"], p["max_iter"], p["tol"], p["metric"], hierarchical=True
    )
    for name in ("max_points_per_centroid", "init_points_per_centroid", "device", "backend"):
        p[name] = check(name, p[name])
    p.update(n_clusters=ks, n_resamples=resamples, sample_size=sizes, n_splits=splits, init=init, n_init=n_init)
    return HierarchyParams(**p)


def range_error(largest: float, dtype, n_features: int, metric: str) -> str | None:
    """Why rows whose largest absolute value is ``largest`` cannot be clustered in
    ``dtype`` with ``metric``, or None: beyond the dtype's range, or (Euclidean) so
    large that squared distances of ``n_features`` features overflow it."""
    dtype = np.dtype(dtype)
    top = float(np.finfo(dtype).max)
    if largest > top:
        return f"X has values up to {largest:.3g} in absolute value, beyond {dtype.name}'s range (the model's dtype)."
    limit = (top / (4 * max(1, n_features))) ** 0.5
    if metric == "euclidean" and largest > limit:
        return (
            f"X has values up to {largest:.3g} in absolute value: squared distances of such rows overflow "
            f"{dtype.name} (at most {limit:.3g} with {n_features} features); scale the data."
        )
    return None
