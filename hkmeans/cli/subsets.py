"""Curated subsets in a run directory: ``indices.npy`` (or ``indices-N.npy``) and its
sidecar ``indices.json``, written together and checked together when read back.

An indices file holds rows of the whole input. Its sidecar records the run's input
(fingerprint and rows) and a digest of the file's contents, so that another run's
subset copied in, a hand-edited file or one of floats is refused in one line instead
of being read as this run's.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np

from ..io import save_json, save_npy
from ..readers import subset_rows
from ..tables import positions
from .run_layout import TOOL, RunDirError, read_json
from .rundir import RunDir

INDICES = re.compile(r"indices(?:-(\d+))?\.npy")  # RUN_DIR's curated subsets, one per target size


def sidecar(npy) -> str:
    """``RUN_DIR/indices.npy`` -> ``RUN_DIR/indices.json``."""
    return npy[: -len(".npy")] + ".json" if npy.endswith(".npy") else npy + ".json"


def _digest(indices) -> str:
    return hashlib.blake2b(np.ascontiguousarray(indices, dtype=np.int64).tobytes(), digest_size=16).hexdigest()


def save_indices(npy, indices, source, in_run) -> None:
    """Write ``indices`` (rows of the whole input) to ``npy``; with its sidecar when
    ``in_run`` (the file is one of the run directory's subsets, read back later)."""
    indices = np.asarray(indices, dtype=np.int64)
    save_npy(npy, indices)
    if in_run:
        save_json(
            sidecar(npy),
            {
                "tool": TOOL,
                "input": source["fingerprint"],
                "rows": int(source["shape"][0]),
                "n": int(len(indices)),
                "digest": _digest(indices),
            },
        )


def load_indices(npy, source, tree, rows):
    """The subset ``npy`` of the run whose input record is ``source``, as positions in
    ``tree`` (a fit on the input rows ``rows``; None: on the whole input);
    :class:`RunDirError` of one line unless it is an integer 1-D array written for this
    run (its sidecar agrees), every row in the pool."""
    try:
        a = np.load(npy, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise RunDirError(f"{npy}: not a readable .npy array of indices ({e}); rerun 'hkmeans sample'.") from None
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise RunDirError(
            f"{npy}: indices of shape {a.shape} and dtype {a.dtype}; an indices file is a 1-D "
            "array of integers. Rerun 'hkmeans sample'."
        )
    record = read_json(sidecar(npy))
    if not isinstance(record, dict) or record.get("tool") != TOOL:
        raise RunDirError(
            f"{npy}: no sidecar {os.path.basename(sidecar(npy))} says it was drawn from this run; "
            "rerun 'hkmeans sample' to write it again."
        )
    if record.get("input") != source["fingerprint"]:
        raise RunDirError(f"{npy}: drawn from another pool than this run's input; rerun 'hkmeans sample'.")
    if record.get("digest") != _digest(a):
        raise RunDirError(f"{npy}: changed since 'hkmeans sample' wrote it; rerun 'hkmeans sample'.")
    a = a.astype(np.int64)
    if rows is not None:
        at = np.minimum(np.searchsorted(rows, a), len(rows) - 1)
        if a.size and np.any(rows[at] != a):
            raise RunDirError(f"{npy}: row {a[rows[at] != a][0]} is not in the subset this run was fitted on.")
        a = at
    try:
        return positions(tree, a)
    except ValueError as e:
        raise RunDirError(f"{npy}: {e}") from None


def input_rows(source):
    """The rows of the whole input a fit on a subset was on (checked against the
    digest recorded then), or None: indices are written as rows of the whole input."""
    record = source.get("subset_indices")
    if record is None:
        return None
    rows, digest = subset_rows(record["path"])
    if digest != record["digest"]:
        raise RunDirError(
            f"{record['path']}: the subset indices changed since the fit; restore them to map the indices."
        )
    return rows


def fitted_rows(run_dir, manifest):
    """The rows of the whole input that the run's tree is over, in order: the rows its
    dedup step kept (of the subset, if it had one), else its subset indices; None for
    all rows of the input. Each row of the tree maps back to an input row through it."""
    found = RunDir.dedup(run_dir, manifest)
    if found is not None:
        input_rows(manifest["input"])  # a subset is checked unchanged all the same
        return found["kept"]
    return input_rows(manifest["input"])


def pool_positions(run_dir, manifest):
    """Where the tree's rows lie among the rows the run read (its pool before the
    dedup step: the subset's rows, if it had one), or None when it did not
    deduplicate (they are the same rows)."""
    found = RunDir.dedup(run_dir, manifest)
    if found is None:
        return None
    rows = input_rows(manifest["input"])
    return found["kept"] if rows is None else np.searchsorted(rows, found["kept"])


def run_subsets(run_dir, manifest, tree) -> dict:
    """The curated subsets a run directory holds, by file name: ``indices.npy``, then
    ``indices-N.npy`` by N (one per target size), each as positions in the tree."""
    names = [name for name in os.listdir(run_dir) if INDICES.fullmatch(name)]
    names.sort(key=lambda name: (name != "indices.npy", int(INDICES.fullmatch(name).group(1) or 0)))  # type: ignore[union-attr]
    rows = fitted_rows(run_dir, manifest) if names else None
    source = manifest["input"]
    return {name: load_indices(os.path.join(run_dir, name), source, tree, rows) for name in names}


def run_indices(run_dir, manifest, tree):
    """``RUN_DIR/indices.npy`` as positions in the tree, or None if there is none."""
    path = os.path.join(run_dir, "indices.npy")
    if not os.path.isfile(path):
        return None
    return load_indices(path, manifest["input"], tree, fitted_rows(run_dir, manifest))
