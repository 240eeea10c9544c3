"""One rule for the files a command writes: never a file a run reads or keeps.

A command may write:

- its own outputs at the top of its own run directory (``indices.npy`` for ``sample``,
  ``report.html`` for ``report`` ...), replacing the ones it wrote before;
- any new regular file elsewhere whose folder exists;
- an existing regular file elsewhere only with ``--force``.

Refused, before any work: a path that is not a regular file (a folder, a link, a FIFO),
a file the run reads (embeddings, shards, subset indices, ids, labels, ``--show``
files), a new file the input's folder or glob of shards would take in (in a zarr
store, any file), any other file
or folder inside a run directory (its manifest, steps, tree, the outputs of another
command, another run's files).
"""

from __future__ import annotations

import fnmatch
import glob
import os

from ..readers import NPY, PARQUET, ZARR_MARKERS
from .config import ConfigError
from .run_layout import below, resolved, run_holding


def check_output(path, *, own_run, names, reads=(), force=False) -> None:
    """Refuse (:class:`ConfigError`, one line) to write ``path`` unless the rule above
    allows it. ``own_run`` is the command's run directory (which need not exist yet),
    ``names`` the pattern of the outputs the command writes at its top, ``reads`` the
    paths of the files the run reads, the input embeddings first."""
    if os.path.islink(path):
        raise ConfigError(f"{path}: is a symbolic link; give the path of a regular file.")
    if os.path.exists(path) and not os.path.isfile(path):
        raise ConfigError(f"{path}: exists and is not a regular file; give another output path.")
    check_not_taken_in(path, reads[0] if reads else None)
    for i, read in enumerate(reads):
        if read is not None and os.path.exists(read) and os.path.exists(path) and os.path.samefile(path, read):
            what = "the input embeddings file" if i == 0 else f"a file this run reads ({read})"
            raise ConfigError(f"{path}: is {what}; give another output path.")
    full, own = resolved(path), os.path.realpath(own_run)
    folder = os.path.dirname(full)
    holder = own if below(full, own) else run_holding(folder)
    if holder is not None:
        if holder != own and not (os.path.isdir(own) and os.path.samefile(holder, own)):
            raise ConfigError(f"{path}: a file of another hkmeans run directory ({holder}); give another output path.")
        if folder != holder or not names.match(os.path.basename(full)):
            raise ConfigError(
                f"{path}: a file of the run directory {own_run} that this command does not write; "
                "give another output path."
            )
        return  # this command's own output: replaced
    if not os.path.isdir(folder):
        raise ConfigError(f"{path}: its folder {folder} does not exist.")
    if os.path.exists(path) and not force:
        raise ConfigError(f"{path}: exists; give --force to replace it, or another output path.")


def check_not_taken_in(path, source) -> None:
    """Refuse (one line) a file at ``path`` that the input ``source`` (None: no input)
    would read as one of its files, ``path``'s folder made or not."""
    if source is not None and _taken_in(path, os.fspath(source)):
        raise ConfigError(f"{path}: the input {source} would read it as one of its files; give a path outside it.")


def _taken_in(path, source) -> bool:
    """Whether a file at ``path`` would be among the files of the input ``source``: an
    array or table file (by its suffix) at the top of its folder or matched by its
    glob, or any file in a zarr store (whose folders it reads)."""
    full = resolved(path)
    table = full.endswith((*NPY, *PARQUET)) and not os.path.basename(full).startswith(".")
    if not os.path.exists(source) and glob.has_magic(source):  # as the readers tell a glob
        # glob's wildcards match within one path component ("*" does not cross "/")
        parts, pattern = full.split(os.sep), resolved(source).split(os.sep)
        return table and len(parts) == len(pattern) and all(map(fnmatch.fnmatch, parts, pattern))
    if not os.path.isdir(source):
        return False
    src = os.path.realpath(source)
    if any(os.path.exists(os.path.join(src, marker)) for marker in ZARR_MARKERS):
        return below(full, src)
    return table and os.path.dirname(full) == src
