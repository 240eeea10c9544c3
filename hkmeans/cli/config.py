"""The run configuration: TOML file, then command-line flags, checked key by key."""

from __future__ import annotations

import json
import math
import numbers
import tomllib
from dataclasses import dataclass
from typing import Callable

from ..hierarchy import RESAMPLE_STRATEGIES
from ..kmeans import INITS, METRICS
from ..sampling import MAX_COUNT, STRATEGIES

DTYPES = ("auto", "float32", "float64")
METHODS = ("hierarchical", "flat")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and why."""


def _int(v, low=None, high=None):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and (low is None or v >= low) and (high is None or v <= high)


def _ints(low):
    """One integer ``>= low``, or a non-empty list of them (one per level)."""
    return lambda v: _int(v, low) or (isinstance(v, list) and len(v) > 0 and all(_int(x, low) for x in v))


def _text(v):
    return isinstance(v, str) and v != ""


def number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


@dataclass(frozen=True)
class Key:
    """One configuration key: its check, what it must be (for errors), its default
    (None: not set), its help line, the flag's metavar or choices, and how the flag's
    text is parsed (None: as an integer, or a float for numbers)."""

    check: Callable
    what: str
    default: object
    help: str
    metavar: str | None = None
    choices: tuple | None = None
    parse: Callable | None = None


def _choice_key(options, default, help):
    return Key(lambda v: v in options, "one of " + ", ".join(map(repr, options)), default, help, choices=options)


# one table: the checks of the config file and the flags, the defaults, --help, docs/cli.md
FIT_KEYS = {
    "n_clusters": Key(_ints(1), "a positive integer or a list of them, finest level first", None,
                      "clusters per level, finest first (required, here or in --config)", "K[,K...]"),
    "n_resamples": Key(_ints(0), "a non-negative integer or one per level", 10,
                       "resampling steps per level", "R[,R...]"),
    "sample_size": Key(_ints(0), "a non-negative integer or one per level", None,
                       "points per cluster in a resampling step (default: half the level's mean cluster size)",
                       "S[,S...]"),
    "resample_strategy": _choice_key(RESAMPLE_STRATEGIES, "closest", "which points a resampling step takes"),
    "n_splits": Key(_ints(1), "a positive integer or one per level", 1,
                    "split a level's clusters in this many by a k-means each (a divisor of its n_clusters)",
                    "S[,S...]"),
    "init": _choice_key(INITS, "k-means++", "seeding of each k-means"),
    "n_init": Key(lambda v: _int(v, 1), "a positive integer", 1, "runs per k-means, the best kept", "N"),
    "max_iter": Key(lambda v: _int(v, 1), "a positive integer", 50, "Lloyd iterations per k-means at most", "N"),
    "tol": Key(number, "a finite non-negative number", 0.0,
               "stop a k-means when its squared centre shift falls to this, relative to the data's variance", "TOL"),
    "metric": _choice_key(METRICS, "euclidean", "cosine: spherical k-means on unit rows"),
    "dtype": _choice_key(DTYPES, "auto", "compute dtype (auto: float64 input stays float64, others float32)"),
    "seed": Key(lambda v: _int(v, 0), "a non-negative integer", 0, "seed of every random choice", "SEED"),
}
SAMPLE_KEYS = {
    "target_size": Key(lambda v: _int(v, 0, MAX_COUNT), f"an integer from 0 to {MAX_COUNT}", None,
                       "points to pick (required, here or in --config)", "N"),
    "strategy": _choice_key(STRATEGIES, "random", "how a finest-level cluster picks its points"),
    "multiplier": Key(lambda v: _int(v, 1, MAX_COUNT), f"an integer from 1 to {MAX_COUNT}", 1,
                      "most times one point may be picked", "M"),
    "method": _choice_key(METHODS, "hierarchical", "balance over the whole tree, or the finest level only"),
}
# what is read: not fit parameters (the input's fingerprint tells inputs apart)
INPUT_KEYS = {
    "column": Key(_text, "a column name", None,
                  "Parquet input: the column of embeddings (default: the only list-typed column)", "NAME", parse=str),
    "subset_indices": Key(_text, "a file name", None,
                          "a .npy of sorted, distinct row numbers: fit on those rows only "
                          "(indices written are rows of the whole input)", "FILE", parse=str),
}
RUN_KEYS = {
    "checkpoint_interval": Key(number, "a finite non-negative number of seconds", 60.0,
                               "seconds between saved states of a running k-means", "SECONDS"),
}
KEYS = {**FIT_KEYS, **SAMPLE_KEYS, **INPUT_KEYS, **RUN_KEYS}


def check(key, value, source):
    """``value`` if it suits ``key``; :class:`ConfigError` otherwise."""
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(KEYS)}.")
    spec = KEYS[key]
    if not spec.check(value):
        raise ConfigError(f"{source}: {key} must be {spec.what}, got {value!r}.")
    return float(value) if spec.check is number else value


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
    return {key: check(key, value, str(path)) for key, value in raw.items()}


def effective(path, flags: dict) -> dict:
    """Defaults, overridden by the config file at ``path`` (if any), overridden by the
    flags that were given (those not None)."""
    config = {key: spec.default for key, spec in KEYS.items()}
    if path is not None:
        config.update(read(path))
    config.update({key: check(key, value, "--" + key.replace("_", "-")) for key, value in flags.items() if value is not None})
    return config


PER_LEVEL = ("n_clusters", "n_resamples", "sample_size", "n_splits")


def fit_params(config) -> dict:
    """The keys that decide a fit's result (a run directory is tied to them), with
    per-level keys written out as one entry per level, so that ``n_resamples = 10``
    and ``n_resamples = [10, 10]`` name the same run."""
    params = {key: config[key] for key in FIT_KEYS}
    ks = params["n_clusters"]
    n_levels = len(ks) if isinstance(ks, list) else 1
    for key in PER_LEVEL:
        value = params[key]
        if value is not None and not isinstance(value, list):
            params[key] = [value] * n_levels
    return params


def to_toml(config) -> str:
    """``config`` as TOML (its values are ints, floats, strings or lists of ints); keys
    that are not set are left out. Strings are written as JSON strings, which TOML
    reads alike (a path may hold quotes or backslashes)."""

    def value(v):
        if isinstance(v, list):
            return "[" + ", ".join(map(str, v)) + "]"
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        return repr(v)

    return "".join(f"{key} = {value(v)}\n" for key, v in config.items() if v is not None)
