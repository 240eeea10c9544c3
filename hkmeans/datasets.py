"""Synthetic data sets of the paper (Vo et al., 2024), generated in code."""

from __future__ import annotations

import numpy as np

from ._rng import as_generator

RING_CENTRES = ((-2.2, 1.0), (0.0, 1.0), (2.2, 1.0), (-1.2, 0.2), (1.2, 0.2))
RING_SIZES = (20000, 200, 1000, 500, 8000)


def make_rings(sizes=RING_SIZES, random_state=None):
    """The paper's ring example: five rings of very different sizes.

    Radii are uniform in [0.7, 1.0] and angles uniform, around ``RING_CENTRES``.

    Parameters
    ----------
    sizes : sequence of int, default=RING_SIZES
        Points per ring: (20000, 200, 1000, 500, 8000), as in the paper; at most five
        (fewer make fewer rings).
    random_state : int, Generator, RandomState or None

    Returns
    -------
    X : ndarray of shape (sum(sizes), 2)
    ring : ndarray of shape (sum(sizes),)
        Index of the ring each point belongs to.
    """
    sizes = tuple(sizes)
    if len(sizes) > len(RING_CENTRES):
        raise ValueError(f"{len(sizes)} ring sizes for the {len(RING_CENTRES)} rings of RING_CENTRES.")
    rng = as_generator(random_state)
    parts = []
    for (cx, cy), n in zip(RING_CENTRES, sizes):
        radius = rng.uniform(0.7, 1.0, n)
        angle = rng.uniform(0.0, 2 * np.pi, n)
        parts.append(np.c_[cx + radius * np.cos(angle), cy + radius * np.sin(angle)])
    return np.concatenate(parts), np.repeat(np.arange(len(sizes)), sizes)


def make_uniformity_mixture(random_state=None):
    """The 2-D data of the paper's uniformity table (its Fig. 3).

    N((-1, -1), 0.5^2) x 7000, N((1, -1), 0.5^2) x 1000, N((0, 1), 0.5^2) x 500 and
    Uniform([-3, 3]^2) x 500.

    Parameters
    ----------
    random_state : int, Generator, RandomState or None

    Returns
    -------
    X : ndarray of shape (9000, 2)
    component : ndarray of shape (9000,)
        0 to 2 for the Gaussians, 3 for the uniform part.
    """
    rng = as_generator(random_state)
    parts = [
        rng.normal((-1.0, -1.0), 0.5, (7000, 2)),
        rng.normal((1.0, -1.0), 0.5, (1000, 2)),
        rng.normal((0.0, 1.0), 0.5, (500, 2)),
        rng.uniform(-3.0, 3.0, (500, 2)),
    ]
    return np.concatenate(parts), np.repeat(np.arange(4), [7000, 1000, 500, 500])
