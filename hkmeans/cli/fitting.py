"""The fit of a run: every check before anything is written, then the dedup step (if
asked for: in process or on Dask, its result kept in the run) and level 0 in process
(the input, or the rows the dedup kept, read in place or copied once as C-ordered
rows) or on Dask (the workers reading those rows chunk by chunk)."""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

from .._params import FIT_PARAMS
from .._progress import log
from .._validation import check_hierarchy
from ..backends import dask_module, resolve
from ..backends.cuda import check_available
from ..dedup import check_threshold, dedup
from ..hierarchy import fit_levels, tree_from_levels
from ..io import convert, file_id, save_npy, scan
from ..readers import SubsetPool, open_pool
from . import config as cfg
from .inputs import compute_dtype, read_ids
from .outputs import check_not_taken_in
from .run_layout import (
    DASK_SCRATCH,
    MANIFEST,
    RunDirError,
    inside,
    kept_at_top,
    owned,
    refuse_inside_run,
    written_in_run,
)
from .rundir import RunDir

SCRATCH = "data.npy"
DEDUP_SCRATCH = "scratch-dedup.npy"  # the input as the dedup reads it, when not in place
KEPT_SCRATCH = "scratch-kept.npy"  # the rows the dedup kept, as the Dask workers read them


def prepare_fit(args, config):
    """Every check of a fit, before anything is written: returns ``(params, pool,
    dtype, source, ids, client)``: ``params`` the checked fit parameters, ``ids``
    being ``(array, record)`` or None, ``client`` the Dask client level 0 runs on (or
    None)."""
    if config["n_clusters"] is None:
        raise cfg.ConfigError("n_clusters is required: give --n-clusters or set it in the config file.")
    if config["scheduler"] is not None and config["workers"] is not None:
        raise cfg.ConfigError("give --scheduler (an existing cluster) or --workers (a local one), not both.")
    if config["dedup"] is not None:
        try:
            check_threshold(config["dedup"], config["dedup_metric"])
        except ValueError as e:
            raise cfg.ConfigError(f"--dedup: {e}") from None
    if config["device"] == "cuda" and not cfg.on_dask(config):  # on Dask, the workers are checked
        try:
            check_available()
        except RuntimeError as e:
            raise cfg.ConfigError(f"--device: {e}") from None
    pool = open_pool(args.embeddings, column=config["column"], subset_indices=config["subset_indices"])
    check_not_taken_in(os.path.join(args.out, MANIFEST), args.embeddings)  # a run inside a zarr store, say
    refuse_inside_run(args.out)
    given = [config[key] for key in ("ids", "subset_indices") if config[key] is not None]
    kept = kept_at_top(args.out)
    for path in [args.embeddings, *pool.files, *given]:
        # the input's files, not even in another run; no file at all under the run's names
        if written_in_run(path, args.out) or path not in given and owned(path, args.out):
            raise cfg.ConfigError(
                f"{path}: inside the run directory under a name hkmeans writes there; move it or choose another --out."
            )
        linked = kept.get(file_id(path))
        if linked is not None:
            raise cfg.ConfigError(
                f"{path}: the same file as {linked}, which hkmeans writes in the run directory; "
                f"remove {linked} (a link to the input) or choose another --out."
            )
    ids = read_ids(pool, config)
    dtype = compute_dtype(pool.dtype, config["dtype"])
    params = check_hierarchy(pool, **{key: config[key] for key in FIT_PARAMS if key != "backend"})
    if cfg.on_dask(config) and params.n_splits[0] > 1:
        raise cfg.ConfigError(
            "n_splits > 1 at level 0 does not run on Dask; split a level above, or drop --scheduler/--workers."
        )
    source = {**pool.describe(), "shape": list(pool.shape), "dtype": pool.dtype.str}
    fingerprint = None if args.overwrite else _known_fingerprint(args.out, source)
    if fingerprint is None:
        log.info("checking %s: %d x %d %s", args.embeddings, *pool.shape, pool.dtype)
        cosine_dedup = config["dedup"] is not None and config["dedup_metric"] == "cosine"
        fingerprint = scan(pool, dtype, nonzero=cosine_dedup, metric=params.metric)
    return params, pool, dtype, {**source, "fingerprint": fingerprint}, ids, client_of(config)


def client_of(config):
    """The Dask client of ``--scheduler`` or ``--workers`` (workers with a GPU each
    for ``--device cuda``), or None."""
    if not cfg.on_dask(config):
        return None
    dask = dask_module()
    cuda = config["device"] == "cuda"
    try:
        if config["scheduler"] is not None:
            client = dask.connect(config["scheduler"])
        else:
            log.info("starting a local Dask cluster of %d workers", config["workers"])
            client = dask.local_cuda_client(config["workers"]) if cuda else dask.local_client(config["workers"])
        dask.check_workers(client, config["device"])
    except (ImportError, RuntimeError) as e:
        raise cfg.ConfigError(f"--device: {e}") from None
    return client


def _known_fingerprint(run_dir, source):
    """The fingerprint a run directory holds for this very input (the same files, of
    the same sizes, times and inodes: checked when the run began), so that a resume
    need not read it all again."""
    try:
        known = RunDir.read_manifest(run_dir)["input"]
    except (RunDirError, KeyError, TypeError):
        return None
    if all(known.get(key) == value for key, value in source.items() if key != "path"):
        log.info("input unchanged since the run began (size, time, inode): not read again")
        return known.get("fingerprint")
    return None


def fit_run(args, config, params, pool, dtype, source, ids=None, client=None):
    run = RunDir.open(args.out, config, source, overwrite=args.overwrite, ids=None if ids is None else ids[1])
    if ids is not None:
        run.set_ids(*ids)
    scratch = inside(run.path, SCRATCH)
    if run.manifest["status"] == "done":
        if os.path.isfile(scratch):  # a kill between the fit's end and its clean-up left it
            os.unlink(scratch)
        log.info("%s: the fit is already done", args.out)
        return run
    if config["dedup"] is not None:
        pool = _kept_rows(run, pool, dtype, config, params, args.embeddings, client)
    if client is not None:
        _fit_on_dask(args, config, params, pool, dtype, run, client)
        log.info("%s: fit done", args.out)
        return run
    X = _in_place(pool, dtype, scratch)
    levels = _levels(resolve(X, config["device"]), args, config, params, run)
    run.finish(levels, tree_from_levels(levels))
    del X
    if os.path.isfile(scratch):
        os.unlink(scratch)
    log.info("%s: fit done", args.out)
    return run


def _in_place(pool, dtype, scratch):
    """The rows of ``pool`` as one C-ordered array of ``dtype``: the input's memory
    map, or its copy at ``scratch`` (made chunk by chunk, atomically, unless there)."""
    X = pool.mapped()
    if X is None or X.dtype != dtype or not X.flags.c_contiguous:  # the kernels read C-ordered float32/64
        X = _load_copy(scratch)
        if X is None or X.shape != pool.shape or X.dtype != dtype or not X.flags.c_contiguous:
            log.info("copying the input as C-ordered %s, chunk by chunk, into %s", dtype, scratch)
            X = convert(pool, scratch, dtype)
    return X


def _load_copy(path):
    """The run's copy of the input at ``path`` (written atomically), memory-mapped;
    None where there is none or it is no ``.npy`` file a copy could be (it is then
    made again)."""
    if not os.path.isfile(path):
        return None
    try:
        return np.load(path, mmap_mode="r+", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None


def _kept_rows(run, pool, dtype, config, params, source, client=None):
    """The dedup step: the rows of ``pool`` (opened from ``source``) it keeps, as a
    pool over the whole input (:class:`~hkmeans.readers.SubsetPool`, as
    ``--subset-indices`` gives). Done once the manifest lists its file; until then (a
    first run, or one killed during it) it runs on the whole pool, in process or on
    ``client``'s workers (the same result), and writes ``dedup.npz``."""
    found = run.dedup(run.path, run.manifest)
    if found is None:
        scratch = inside(run.path, DEDUP_SCRATCH)
        if client is None:
            X = _in_place(pool, dtype, scratch)
            on = {}
        else:
            from ..backends.dask.storage import pool_array

            X = pool_array(
                source, dtype, column=config["column"], subset_indices=config["subset_indices"], shape=pool.shape
            )
            on = {"backend": "dask", "client": client}
        rule = ">=" if config["dedup_metric"] == "cosine" else "<="
        log.info("removing near-duplicates: %s %s %g", config["dedup_metric"], rule, config["dedup"])
        res = dedup(
            X,
            config["dedup"],
            metric=config["dedup_metric"],
            keep=config["dedup_keep"],
            random_state=config["seed"],
            device=config["device"],
            **on,
        )
        del X
        removed = res.removed
        rows = pool.rows if isinstance(pool, SubsetPool) else np.arange(pool.shape[0], dtype=np.int64)
        found = run.save_dedup(
            pool.shape[0],
            kept=rows[res.kept],
            removed=rows[removed],
            duplicate_of=rows[res.duplicate_of[removed]],
            similarity=res.similarity[removed],
        )
        if os.path.isfile(scratch):
            os.unlink(scratch)
    kept = found["kept"]
    if len(kept) < params.n_clusters[0]:
        raise cfg.ConfigError(
            f"--dedup kept {len(kept)} of {pool.shape[0]} rows, fewer than n_clusters={params.n_clusters[0]} "
            "(level 0); ask for fewer clusters or a stricter threshold, with --overwrite to start over."
        )
    if len(kept) == pool.shape[0]:
        return pool  # nothing removed: the pool as it is, read in place if it can be
    return SubsetPool(pool.base if isinstance(pool, SubsetPool) else pool, kept)


def _levels(data, args, config, params, run):
    verbose = args.verbosity > 0 or (args.verbosity == 0 and sys.stderr.isatty())
    return fit_levels(data, params, config["seed"], verbose, checkpoints=run)


def _fit_on_dask(args, config, params, pool, dtype, run, client):
    """Level 0 on Dask over the input read chunk by chunk by the workers; its steps'
    labels and distances written per chunk into the run directory by the workers, and
    its per-row state while it runs into ``RUN_DIR/scratch-dask`` (unless Dask's config
    ``hkmeans.scratch`` says otherwise). The tree file holds every row's labels and
    distance: they are gathered for it."""
    from dask import config as dask_config

    dask = dask_module()
    from ..backends.dask.storage import pool_array

    subset = config["subset_indices"]
    if config["dedup"] is not None and pool.shape[0] < run.manifest["dedup"]["rows"]:
        # the workers read the rows kept from a file, as they read --subset-indices
        subset = inside(run.path, KEPT_SCRATCH)
        save_npy(subset, pool.rows)
    X = pool_array(args.embeddings, dtype, column=config["column"], subset_indices=subset, shape=pool.shape)
    scratch = dask_config.get("hkmeans.scratch", None)
    scratch = inside(run.path, DASK_SCRATCH) if scratch is None else scratch
    with dask.using(client), dask_config.set({"hkmeans.scratch": scratch}):
        levels = _levels(resolve(X, config["device"], client, "dask"), args, config, params, run)
        labels, sqdist = dask.compute(levels[0].labels, levels[0].sqdist, client=client)
    levels = [dataclasses.replace(levels[0], labels=labels, sqdist=sqdist), *levels[1:]]
    run.finish(levels, tree_from_levels(levels))  # deletes the scratch files, the rows kept among them
