"""The run configuration: TOML file, then command-line flags, checked key by key."""

from __future__ import annotations

import argparse
import json
import os
import tomllib
from dataclasses import replace

from .._params import FIT_PARAMS, Param, choice, is_finite_non_negative, is_int
from .._validation import shown
from ..dedup import DEDUP_METRICS, KEEP
from ..sampling import MAX_COUNT, STRATEGIES

DTYPES = ("auto", "float32", "float64")
METHODS = ("hierarchical", "flat")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and why."""


def _text(v):
    return isinstance(v, str) and v != ""


def _sizes(v):
    """One target size, or a non-empty list of them."""
    ok = lambda x: is_int(x, 0, MAX_COUNT)  # noqa: E731
    return ok(v) or (isinstance(v, list) and len(v) > 0 and all(map(ok, v)))


def int_list(text):
    """``"100,500"`` as ``[100, 500]``, one number as an int."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    return values[0] if len(values) == 1 else values


# the fit parameters' table, less the backend (--scheduler and --workers choose it),
# with n_clusters required; then the keys of the command line alone
FIT_KEYS = {
    **{key: param for key, param in FIT_PARAMS.items() if key != "backend"},
    "n_clusters": replace(
        FIT_PARAMS["n_clusters"], default=None, help=FIT_PARAMS["n_clusters"].help + " (required, here or in --config)"
    ),
    "dtype": choice(DTYPES, "auto", "compute dtype (auto: float64 input stays float64, others float32)"),
    "seed": Param(0, lambda v: is_int(v, 0), "a non-negative integer", "seed of every random choice", metavar="SEED"),
}
SAMPLE_KEYS = {
    "target_size": Param(
        None,
        _sizes,
        f"an integer from 0 to {MAX_COUNT}, or a list of them",
        "points to pick (required, here or in --config); several, comma-separated, sample once per size",
        metavar="N",
        parse=int_list,
    ),
    "strategy": choice(STRATEGIES, "random", "how a finest-level cluster picks its points"),
    "multiplier": Param(
        1,
        lambda v: is_int(v, 1, MAX_COUNT),
        f"an integer from 1 to {MAX_COUNT}",
        "most times one point may be picked",
        metavar="M",
    ),
    "method": choice(METHODS, "hierarchical", "balance over the whole tree, or the finest level only"),
}
# what is read: not fit parameters (the input's fingerprint tells inputs apart)
INPUT_KEYS = {
    "column": Param(
        None,
        _text,
        "a column name",
        "Parquet input: the column of embeddings (default: the only list-typed column)",
        metavar="NAME",
        parse=str,
    ),
    "subset_indices": Param(
        None,
        _text,
        "a file name",
        "a .npy of sorted, distinct row numbers: fit on those rows only (indices written are rows of the whole input)",
        metavar="FILE",
        parse=str,
    ),
    "ids": Param(
        None,
        _text,
        "a file name",
        "one id per row of the input: a .npy of integers or strings, or a .txt/.csv of one per line",
        metavar="FILE",
        parse=str,
    ),
    "id_column": Param(
        None,
        _text,
        "a column name",
        "Parquet input: the column of ids (default: id, when there is one)",
        metavar="NAME",
        parse=str,
    ),
}
RUN_KEYS = {
    "checkpoint_interval": Param(
        60.0,
        is_finite_non_negative,
        "a finite non-negative number of seconds",
        "seconds between saved states of a running k-means",
        metavar="SECONDS",
    ),
    "scheduler": Param(
        None,
        _text,
        "an address",
        "run level 0 (and --dedup) on the Dask cluster of the scheduler at ADDRESS (e.g. tcp://host:8786), "
        "its workers reading the input chunk by chunk (they must see its files at the same paths)",
        metavar="ADDRESS",
        parse=str,
    ),
    "workers": Param(
        None,
        lambda v: is_int(v, 1),
        "a positive integer",
        "run level 0 (and --dedup) on a local Dask cluster of N worker processes, each with cores / N "
        "Numba and BLAS threads",
        metavar="N",
    ),
}
# near-duplicate removal before the fit: a run's parameters when a threshold is given
DEDUP_KEYS = {
    "dedup": Param(
        None,
        is_finite_non_negative,
        "a finite non-negative number",
        "remove near-duplicate rows before the fit: the cosine similarity at or above which two rows are "
        "duplicates, in (0, 1] (with --dedup-metric euclidean: the distance at or below which they are)",
        metavar="THRESHOLD",
    ),
    "dedup_metric": choice(DEDUP_METRICS, "cosine", "how --dedup compares rows"),
    "dedup_keep": choice(
        KEEP,
        "hard",
        "which row of a duplicate group --dedup keeps: hard (farthest from its centroid), easy, random, first",
    ),
}
KEYS = {**FIT_KEYS, **DEDUP_KEYS, **SAMPLE_KEYS, **INPUT_KEYS, **RUN_KEYS}
#: Keys whose values are file names: written to a run's config.toml as absolute paths,
#: so that the file means the same from any folder.
PATH_KEYS = ("subset_indices", "ids")


def check(key, value, source):
    """``value`` if it suits ``key``; :class:`ConfigError` otherwise."""
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(KEYS)}.")
    spec = KEYS[key]
    if not spec.accepts(value):
        raise ConfigError(f"{source}: {key} must be {spec.requirement}, got {shown(value)}.")
    return float(value) if is_float(spec) else value


def read(path) -> dict:
    """The keys of a TOML file, checked."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file.") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e.strerror}).") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e}).") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {e.start} cannot be decoded).") from None
    return {key: check(key, value, str(path)) for key, value in raw.items()}


def effective(path, flags: dict) -> dict:
    """Defaults, overridden by the config file at ``path`` (if any), overridden by the
    flags that were given (those not None)."""
    config = {key: spec.default for key, spec in KEYS.items()}
    if path is not None:
        config.update(read(path))
    config.update(
        {key: check(key, value, "--" + key.replace("_", "-")) for key, value in flags.items() if value is not None}
    )
    return config


PER_LEVEL = tuple(key for key, param in FIT_KEYS.items() if param.per_level)


def is_float(param) -> bool:
    """Whether the key's values are numbers rather than integers or choices."""
    return param.entry is is_finite_non_negative


def fit_params(config) -> dict:
    """The keys that decide a fit's result (a run directory is tied to them), with
    per-level keys written out as one entry per level, so that ``n_resamples = 10``
    and ``n_resamples = [10, 10]`` name the same run."""
    params = {key: config[key] for key in FIT_KEYS}
    for key, default in (("device", "cpu"), ("max_points_per_centroid", None), ("init_points_per_centroid", None)):
        if params[key] == default:  # as runs made before the key existed recorded them
            del params[key]
    if on_dask(config):  # chunked and seeded otherwise than in process: another run
        params["backend"] = "dask"
    if config.get("dedup") is not None:  # absent otherwise, as runs made before the keys existed
        params.update({key: config[key] for key in DEDUP_KEYS})
    ks = params["n_clusters"]
    n_levels = len(ks) if isinstance(ks, list) else 1
    for key in PER_LEVEL:
        value = params[key]
        if value is not None and not isinstance(value, list):
            params[key] = [value] * n_levels
    return params


def on_dask(config) -> bool:
    """Whether level 0 runs on the dask backend (a scheduler or local workers given)."""
    return config.get("scheduler") is not None or config.get("workers") is not None


def to_toml(config) -> str:
    """``config`` as TOML (its values are ints, floats, strings or lists of ints); keys
    that are not set are left out. Strings are written as JSON strings, which TOML
    reads alike (a path may hold quotes or backslashes)."""

    def value(v):
        if isinstance(v, list):
            return "[" + ", ".join(map(str, v)) + "]"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")  # JSON leaves DEL raw; TOML refuses it
        return repr(v)

    config = {key: os.path.abspath(v) if key in PATH_KEYS and isinstance(v, str) else v for key, v in config.items()}
    return "".join(f"{key} = {value(v)}\n" for key, v in config.items() if v is not None)
