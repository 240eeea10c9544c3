"""Checkpoints: where a long fit keeps its finished steps, so that a rerun resumes.

The engine names each step (``"level0/step03"``: one k-means run and the reassignment
after it) and, inside long k-means runs, saves partial Lloyd states. A step found on
a rerun is read back, random generator state included, instead of being run again,
so an interrupted-then-resumed fit gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import json

import numpy as np


class Checkpoints:
    """Keeps nothing (in-memory fits). Subclasses store arrays under string keys."""

    def load(self, key: str) -> dict | None:
        """The arrays saved under ``key``, or None."""
        return None

    def save(self, key: str, arrays: dict) -> None:
        """Keep ``arrays`` under ``key``, replacing what was there."""

    def discard(self, key: str) -> None:
        """Forget ``key`` if it is kept."""

    def partial_due(self) -> bool:
        """Whether a running k-means should save its state now."""
        return False

    def empty(self, name: str, shape, dtype) -> np.ndarray:
        """A new array for an intermediate result (such as a resampling subset);
        subclasses may back large ones by a file rather than by memory."""
        return np.empty(shape, dtype=dtype)


def rng_state(rng: np.random.Generator) -> np.ndarray:
    """The generator's state as a 0-d string array (storable in ``.npz``)."""
    return np.array(json.dumps(rng.bit_generator.state))


def set_rng_state(rng: np.random.Generator, state) -> None:
    """Restore a state made by :func:`rng_state`."""
    rng.bit_generator.state = json.loads(str(state))


def run_step(checkpoints: Checkpoints, key: str, rng: np.random.Generator, compute) -> dict | None:
    """``compute()`` (a dict of arrays, or None for nothing to keep) unless ``key`` is
    already kept; either way the generator ends in the state ``compute`` left it in."""
    saved = checkpoints.load(key)
    if saved is not None:
        set_rng_state(rng, saved.pop("rng_state"))
        return saved
    out = compute()
    if out is None:
        return None
    checkpoints.save(key, {**out, "rng_state": rng_state(rng)})
    return out
