"""The run configuration: TOML file, then command-line flags, checked key by key."""

from __future__ import annotations

import numbers
import tomllib

from ..hierarchy import RESAMPLE_STRATEGIES
from ..kmeans import INITS, METRICS
from ..sampling import STRATEGIES

DTYPES = ("auto", "float32", "float64")
METHODS = ("hierarchical", "flat")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says which key and why."""


def _int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _ints(v):
    return _int(v) or (isinstance(v, list) and len(v) > 0 and all(_int(x) for x in v))


def _number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _choice(options):
    return (lambda v: v in options), "one of " + ", ".join(map(repr, options))


# key: (check, what it must be, default); None default: not set
FIT_KEYS = {
    "n_clusters": (_ints, "a positive integer or a list of them, finest level first", None),
    "n_resamples": (_ints, "an integer or one per level", 10),
    "sample_size": (_ints, "an integer or one per level (leave out for half the mean cluster size)", None),
    "resample_strategy": (*_choice(RESAMPLE_STRATEGIES), "closest"),
    "n_splits": (_ints, "an integer or one per level", 1),
    "init": (*_choice(INITS), "k-means++"),
    "n_init": (_int, "a positive integer", 1),
    "max_iter": (_int, "a positive integer", 50),
    "tol": (_number, "a non-negative number", 0.0),
    "metric": (*_choice(METRICS), "euclidean"),
    "dtype": (*_choice(DTYPES), "auto"),
    "seed": (_int, "an integer", 0),
}
SAMPLE_KEYS = {
    "target_size": (_int, "a non-negative integer", None),
    "strategy": (*_choice(STRATEGIES), "random"),
    "multiplier": (_int, "a positive integer", 1),
    "method": (*_choice(METHODS), "hierarchical"),
}
RUN_KEYS = {
    "checkpoint_interval": (_number, "a number of seconds", 60.0),
}
KEYS = {**FIT_KEYS, **SAMPLE_KEYS, **RUN_KEYS}


def check(key, value, source):
    """``value`` if it suits ``key``; :class:`ConfigError` otherwise."""
    if key not in KEYS:
        raise ConfigError(f"{source}: unknown key {key!r}; known keys: {', '.join(KEYS)}.")
    ok, what, _ = KEYS[key]
    if not ok(value):
        raise ConfigError(f"{source}: {key} must be {what}, got {value!r}.")
    return float(value) if KEYS[key][0] is _number else value


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
    config = {key: default for key, (_, _, default) in KEYS.items()}
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
    that are not set are left out."""

    def value(v):
        if isinstance(v, list):
            return "[" + ", ".join(map(str, v)) + "]"
        if isinstance(v, str):
            return '"' + v + '"'
        return repr(v)

    return "".join(f"{key} = {value(v)}\n" for key, v in config.items() if v is not None)
