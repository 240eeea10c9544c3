"""What each subcommand does, given its parsed arguments."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
import warnings

import numpy as np

from .._progress import log
from ..backends import dask_module
from ..hierarchy import check_hierarchy_params, hierarchical_kmeans, tree_from_levels
from ..ids import check_ids, column_ids, digest, load_ids
from ..io import InputError, convert, save_parquet, save_text, scan
from ..kmeans import check_kmeans_params
from ..readers import SubsetPool, open_pool
from ..sampling import flat_sampling, hierarchical_sampling
from ..tables import assignments, cluster_table, selected_table
from . import config as cfg
from .outputs import check_output
from .rundir import (
    DASK_SCRATCH,
    EXPORT_OUTPUTS,
    REPORT_OUTPUTS,
    SAMPLE_OUTPUTS,
    RunDir,
    RunDirError,
    input_files,
    owned,
    read_files,
    run_holding,
)
from .subsets import input_rows, run_indices, run_subsets, save_indices

SCRATCH = "data.npy"
EXPORT_ROWS = 1 << 20  # rows per row group of assignments.parquet
PARQUET_HINT = 'install pyarrow (pip install "hkmeans[parquet]")'


def _config(args, keys):
    flags = {key: getattr(args, key, None) for key in keys}
    return cfg.effective(args.config, flags)


def _compute_dtype(stored, name):
    if name != "auto":
        return np.dtype(name)
    return stored if stored in (np.float32, np.float64) else np.dtype(np.float32)


def _check_sampling(config):
    if config["target_size"] is None:  # the other keys were checked as they were read
        raise cfg.ConfigError("target_size is required: give --target-size or set it in the config file.")


def _prepare_fit(args, config):
    """Every check of a fit, before anything is written: returns ``(pool, dtype,
    source, ids, client)``: ``ids`` being ``(array, record)`` or None, ``client`` the
    Dask client level 0 runs on (or None)."""
    if config["n_clusters"] is None:
        raise cfg.ConfigError("n_clusters is required: give --n-clusters or set it in the config file.")
    if config["scheduler"] is not None and config["workers"] is not None:
        raise cfg.ConfigError("give --scheduler (an existing cluster) or --workers (a local one), not both.")
    if config["device"] == "cuda" and not cfg.on_dask(config):  # on Dask, the workers are checked
        from ..backends.cuda import check_available

        try:
            check_available()
        except RuntimeError as e:
            raise cfg.ConfigError(f"--device: {e}") from None
    pool = open_pool(args.embeddings, column=config["column"], subset_indices=config["subset_indices"])
    for path in [args.embeddings, *pool.files]:
        if owned(path, args.out):
            raise cfg.ConfigError(
                f"{path}: inside the run directory under a name hkmeans writes there; move it or choose another --out."
            )
    ids = _read_ids(pool, config)
    dtype = _compute_dtype(pool.dtype, config["dtype"])
    splits = check_hierarchy_params(
        pool.shape[0],
        config["n_clusters"],
        config["n_resamples"],
        config["sample_size"],
        config["resample_strategy"],
        config["n_splits"],
    )[3]
    check_kmeans_params(
        pool, 1, config["init"], config["n_init"], config["max_iter"], config["tol"], config["metric"], True
    )
    if cfg.on_dask(config) and splits[0] > 1:
        raise cfg.ConfigError(
            "n_splits > 1 at level 0 does not run on Dask; split a level above, or drop --scheduler/--workers."
        )
    source = {**pool.describe(), "shape": list(pool.shape), "dtype": pool.dtype.str}
    fingerprint = None if args.overwrite else _known_fingerprint(args.out, source)
    if fingerprint is None:
        log.info("checking %s: %d x %d %s", args.embeddings, *pool.shape, pool.dtype)
        fingerprint = scan(pool, dtype)
    return pool, dtype, {**source, "fingerprint": fingerprint}, ids, _client(config)


def _client(config):
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


def _read_ids(pool, config):
    """The ids of the input's rows (``--ids FILE``, or the Parquet column
    ``--id-column``, or ``id``), checked against the whole input (a subset's too), with
    the manifest's record of them; None when there are none."""
    if config["ids"] is not None and config["id_column"] is not None:
        raise cfg.ConfigError("give the ids either as a file (--ids) or as a Parquet column (--id-column), not both.")
    whole = pool.base if isinstance(pool, SubsetPool) else pool
    if config["ids"] is not None:
        name, raw = config["ids"], load_ids(config["ids"])
    else:
        raw = column_ids(whole, config["id_column"])
        if raw is None:
            return None
        name = f"{whole.source}: column {config['id_column'] or 'id'}"
    ids = check_ids(raw, whole.shape[0], name)
    record = {
        "from": os.path.abspath(name) if config["ids"] is not None else name,
        "n": int(len(ids)),
        "dtype": "str" if ids.dtype.kind == "O" else ids.dtype.str,
        "digest": digest(ids),
    }
    return ids, record


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


def _fit(args, config, pool, dtype, source, ids=None, client=None):
    run = RunDir.open(args.out, config, source, overwrite=args.overwrite)
    if ids is not None:
        run.set_ids(*ids)
    if run.manifest["status"] == "done":
        log.info("%s: the fit is already done", args.out)
        return run
    if client is not None:
        _fit_on_dask(args, config, pool, dtype, run, client)
        log.info("%s: fit done", args.out)
        return run
    scratch = os.path.join(run.path, SCRATCH)
    X = pool.mapped()
    if X is None or X.dtype != dtype or not X.flags.c_contiguous:  # the kernels read C-ordered float32/64
        if os.path.isfile(scratch):  # complete: written atomically
            X = np.load(scratch, mmap_mode="r+")
        else:
            log.info("copying the input as C-ordered %s, chunk by chunk, into %s", dtype, scratch)
            X = convert(pool, scratch, dtype)
    levels = _levels(X, args, config, run)
    run.finish(levels, tree_from_levels(levels))
    del X
    if os.path.isfile(scratch):
        os.unlink(scratch)
    log.info("%s: fit done", args.out)
    return run


def _levels(X, args, config, run, **backend):
    return hierarchical_kmeans(
        X,
        config["n_clusters"],
        n_resamples=config["n_resamples"],
        sample_size=config["sample_size"],
        resample_strategy=config["resample_strategy"],
        n_splits=config["n_splits"],
        init=config["init"],
        n_init=config["n_init"],
        max_iter=config["max_iter"],
        tol=config["tol"],
        metric=config["metric"],
        random_state=config["seed"],
        verbose=args.verbosity > 0 or (args.verbosity == 0 and sys.stderr.isatty()),
        device=config["device"],
        checkpoints=run,
        **backend,
    )


def _fit_on_dask(args, config, pool, dtype, run, client):
    """Level 0 on Dask over the input read chunk by chunk by the workers; its steps'
    labels and distances written per chunk into the run directory by the workers, and
    its per-row state while it runs into ``RUN_DIR/scratch-dask`` (unless Dask's config
    ``hkmeans.scratch`` says otherwise). The tree file holds every row's labels and
    distance: they are gathered for it."""
    from dask import config as dask_config

    dask = dask_module()
    from ..backends.dask.storage import pool_array

    X = pool_array(
        args.embeddings, dtype, column=config["column"], subset_indices=config["subset_indices"], shape=pool.shape
    )
    scratch = dask_config.get("hkmeans.scratch", None)
    scratch = os.path.join(run.path, DASK_SCRATCH) if scratch is None else scratch
    with dask.using(client), dask_config.set({"hkmeans.scratch": scratch}):
        levels = _levels(X, args, config, run, backend="dask", client=client)
        labels, sqdist = dask.compute(levels[0].labels, levels[0].sqdist, client=client)
    levels = [dataclasses.replace(levels[0], labels=labels, sqdist=sqdist), *levels[1:]]
    run.finish(levels, tree_from_levels(levels))


def _sizes(config):
    sizes = config["target_size"]
    return sizes if isinstance(sizes, list) else [sizes]


def _outputs(output, run_dir, sizes):
    """``(size, indices file, Parquet file)`` per target size: ``RUN_DIR/indices.npy``
    and ``selected.parquet`` (``X.npy`` and ``X.parquet`` for ``-o X.npy``; ``X`` and
    ``X.parquet`` for ``-o X``), with ``-SIZE`` before the suffix when there are
    several sizes."""
    suffix = ".npy"
    if output is None:
        npy, parquet = os.path.join(run_dir, "indices"), os.path.join(run_dir, "selected")
    elif output.endswith(".parquet"):
        raise cfg.ConfigError(
            f"{output}: -o names the indices file (X.npy); the Parquet file goes beside it (X.parquet)."
        )
    else:
        if not output.endswith(".npy"):
            suffix = ""  # the name as given
        npy = parquet = output[: len(output) - len(suffix)]
    tag = (lambda n: f"-{n}") if len(sizes) > 1 else (lambda n: "")
    return [(n, f"{npy}{tag(n)}{suffix}", f"{parquet}{tag(n)}.parquet") for n in sizes]


def _check_outputs(outputs, reads, run_dir, force):
    if len({n for n, _, _ in outputs}) != len(outputs):
        raise cfg.ConfigError("--target-size: a size is given twice; give each once.")
    for _, npy, parquet in outputs:
        for path in (npy, parquet):
            check_output(path, own_run=run_dir, names=SAMPLE_OUTPUTS, reads=reads, force=force)


def _sample(tree, config, outputs, verbosity, source, run_dir, ids=None):
    rows = input_rows(source)
    tables = importlib.util.find_spec("pyarrow") is not None
    if not tables:
        warnings.warn(f"indices only, no selected.parquet: {PARQUET_HINT} to get the Parquet file too.", UserWarning)
    sampler = hierarchical_sampling if config["method"] == "hierarchical" else flat_sampling
    for size, npy, parquet in outputs:
        n_max = tree.n_samples * config["multiplier"]
        if size > n_max:
            warnings.warn(
                f"target size {size} is above pool size x multiplier "
                f"({tree.n_samples} x {config['multiplier']}); writing all {n_max}.",
                UserWarning,
            )
        idx = sampler(
            tree, size, strategy=config["strategy"], multiplier=config["multiplier"], random_state=config["seed"]
        )
        in_run = os.path.dirname(os.path.abspath(npy)) == os.path.abspath(run_dir)
        save_indices(npy, idx if rows is None else rows[idx], source, in_run)
        if tables:
            save_parquet(parquet, [selected_table(tree, idx, ids, rows)])
        if verbosity >= 0:
            print(
                f"{len(idx)} indices written to {npy}" + (f", their rows to {parquet}" if tables else ""),
                file=sys.stderr,
            )


def fit(args) -> None:
    config = _config(args, cfg.FIT_KEYS.keys() | cfg.INPUT_KEYS.keys() | cfg.RUN_KEYS.keys())
    _fit(args, config, *_prepare_fit(args, config))


def curate(args) -> None:
    config = _config(args, cfg.KEYS.keys())
    _check_sampling(config)
    outputs = _outputs(args.output, args.out, _sizes(config))
    prepared = _prepare_fit(args, config)
    source = prepared[2]
    _check_outputs(outputs, input_files(source) + [config["ids"]], args.out, args.force)
    run = _fit(args, config, *prepared)
    _sample(RunDir.tree(run.path), config, outputs, args.verbosity, source, run.path, RunDir.ids(run.path))


def sample(args) -> None:
    config = _config(args, cfg.SAMPLE_KEYS.keys() | {"seed"})
    _check_sampling(config)
    tree = RunDir.tree(args.run_dir)
    manifest = RunDir.read_manifest(args.run_dir)
    outputs = _outputs(args.output, args.run_dir, _sizes(config))
    _check_outputs(outputs, read_files(manifest), args.run_dir, args.force)
    input_rows(manifest["input"])  # refuses changed subset indices before any warning
    _warn_if_changed(manifest["input"])
    _sample(tree, config, outputs, args.verbosity, manifest["input"], args.run_dir, RunDir.ids(args.run_dir))


def _warn_if_changed(source) -> None:
    """Warn when the input a run was fitted on has changed since (sizes, times,
    inodes of its files): the tree describes the old contents."""
    try:
        now = open_pool(
            source["path"], column=source.get("column"), subset_indices=source.get("subset_indices", {}).get("path")
        ).describe()
    except (InputError, OSError, ValueError):
        warnings.warn(
            f"{source['path']}: the input of this fit cannot be opened any more; sampling the tree as it was fitted.",
            UserWarning,
        )
        return
    if any(source.get(key) != value for key, value in now.items() if key not in ("path", "subset_indices")):
        warnings.warn(
            f"{source['path']}: the input changed since the fit (size, time or inode); the subset is "
            "drawn from the tree of the old contents: rerun the fit to curate the new ones.",
            UserWarning,
        )


def info(args) -> None:
    manifest = RunDir.read_manifest(args.run_dir)
    src = manifest["input"]
    print(f"run directory  {os.path.abspath(args.run_dir)}")
    print(f"status         {manifest['status']} ({len(manifest['steps'])} steps done)")
    subset = f" (the rows listed in {src['subset_indices']['path']})" if "subset_indices" in src else ""
    print(f"input          {src['path']}: {src['shape'][0]} x {src['shape'][1]} {np.dtype(src['dtype']).name}{subset}")
    if "ids" in manifest:
        kind = "strings" if manifest["ids"]["dtype"] in ("str", "<U") or "U" in manifest["ids"]["dtype"] else "integers"
        print(f"ids            {manifest['ids']['n']} {kind} from {manifest['ids']['from']}")
    print(f"hkmeans        {manifest['versions'].get('hkmeans')}")
    print("parameters     " + ", ".join(f"{k}={v}" for k, v in manifest["params"].items() if v is not None))
    if manifest["status"] != "done":
        return
    tree = RunDir.tree(args.run_dir)
    print(
        f"{'level':>5} {'clusters':>9} {'empty':>6}   points per cluster: {'min':>7} {'median':>8} {'mean':>9} {'max':>8}"
    )
    for t in range(tree.n_levels):
        sizes = tree.sizes(t)
        print(
            f"{t:>5} {len(sizes):>9} {int(np.sum(sizes == 0)):>6}   {'':>20}{sizes.min():>7} "
            f"{np.median(sizes):>8.1f} {sizes.mean():>9.1f} {sizes.max():>8}"
        )


def demo(args) -> None:
    from ..datasets import RING_SIZES
    from ..demo import load_kernels, plot, report, run_rings, table

    print(f"kernels ready in {load_kernels():.1f} s (compiled on the first run, then cached)")
    result = run_rings(seed=args.seed)
    print("Five rings of", ", ".join(map(str, RING_SIZES)), f"points; {len(result.curated)} picked.")
    print(table(result))
    print(f"hierarchical k-means (1000, 300) with 10 resamples + sampling: {result.seconds:.2f} s")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("(no PNG: install matplotlib, e.g. pip install 'hkmeans[plot]', to get one)")
        return
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "rings.png")
    plot(result, path)
    print(f"plot: {path}")
    path = os.path.join(args.out, "report.html")
    report(result, path)
    print(f"report: {path}")


def _is_parquet(path) -> bool:
    """Whether ``path`` is a Parquet file, by its leading magic bytes (any suffix)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def _labels(path, column, n):
    """One label per pool row from a ``.npy`` file or a Parquet column (told apart
    by their contents); a one-line error if unreadable, of the wrong length, or with
    missing or nested values."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise cfg.ConfigError(
            f"{path}: {'is a directory' if os.path.isdir(path) else 'no such file'}; give a file of labels."
        )
    try:
        if _is_parquet(path):
            import pyarrow as pa
            import pyarrow.parquet as pq

            name = column or "label"
            names = pq.read_schema(path).names
            if name not in names:
                raise cfg.ConfigError(
                    f"{path}: no column {name!r}; columns: {', '.join(names)} (choose one with --column)."
                )
            values = pq.read_table(path, columns=[name]).column(0)
            if pa.types.is_nested(values.type):
                raise cfg.ConfigError(f"{path}: column {name!r} is {values.type}, not one label per row.")
            if values.null_count:
                raise cfg.ConfigError(
                    f"{path}: column {name!r} holds {values.null_count} nulls; every row needs a label."
                )
            labels = values.to_numpy(zero_copy_only=False)
        else:
            labels = np.load(path, allow_pickle=False)
    except ImportError:
        raise cfg.ConfigError('reading labels from Parquet needs pyarrow: pip install "hkmeans[parquet]"') from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "Parquet file" if _is_parquet(path) else ".npy file (or a Parquet file)"
        raise cfg.ConfigError(f"{path}: cannot read labels as a {kind} ({first}).") from None
    if labels.ndim != 1 or len(labels) != n:
        raise cfg.ConfigError(
            f"{path}: labels of shape {labels.shape} for a pool of {n} rows; "
            "give one label per row (a 1-D array or column)."
        )
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise cfg.ConfigError(f"{path}: {int(np.isnan(labels).sum())} labels are NaN; every row needs a label.")
    return labels


def report(args) -> None:
    from ..report import curation_report

    manifest = RunDir.read_manifest(args.run_dir)
    source = manifest["input"]
    out = args.output or os.path.join(args.run_dir, "report.html")
    show = [args.show] if args.show and os.path.isfile(args.show) else []
    check_output(
        out,
        own_run=args.run_dir,
        names=REPORT_OUTPUTS,
        reads=read_files(manifest) + [args.labels] + show,
        force=args.force,
    )
    if manifest["status"] != "done":
        raise RunDirError(f"{args.run_dir}: the fit is not finished; rerun it first.")
    tree = RunDir.tree(args.run_dir)
    if args.target_size is not None:
        selected = {
            f"a fresh sample of {args.target_size}": hierarchical_sampling(tree, args.target_size, random_state=0)
        }
    else:
        selected = run_subsets(args.run_dir, source, tree)
        if not selected:
            raise cfg.ConfigError(
                f"{args.run_dir}: no indices.npy nor indices-N.npy; give --target-size or run hkmeans sample first."
            )
    labels = _labels(args.labels, args.column, tree.n_samples)
    show = _show(args.show, source, tree.n_samples)
    info = {
        "run directory": os.path.abspath(args.run_dir),
        "input": f"{source['path']} ({source['shape'][0]} x {source['shape'][1]})",
        "created": manifest.get("created", "?"),
        "finished": manifest.get("finished", "?"),
        **RunDir.timings(args.run_dir, tree.n_levels),
    }
    save_text(
        out, curation_report(tree, selected, labels, manifest["params"], info, ids=RunDir.ids(args.run_dir), show=show)
    )
    log.info("report: %s", out)
    print(out)


def _show(name, source, n):
    """The values ``report --show`` shows per pool row: a file of one value per row
    (``.npy``, or ``.txt`` lines), or a column of the Parquet input; None for None."""
    if name is None:
        return None
    if os.path.isfile(name):
        try:
            if name.endswith(".txt"):
                with open(name, encoding="utf-8") as f:
                    values = np.array(f.read().splitlines(), dtype=object)
            else:
                values = np.load(name, allow_pickle=False)
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise cfg.ConfigError(f"{name}: cannot read the values to show ({str(e).splitlines()[0]}).") from None
    else:
        try:
            import pyarrow.parquet as pq

            values = pq.read_table(source["path"], columns=[name]).column(0).to_numpy(zero_copy_only=False)
        except ImportError:
            raise cfg.ConfigError(f"--show {name}: reading a Parquet column {PARQUET_HINT}.") from None
        except (OSError, ValueError, KeyError, TypeError):
            raise cfg.ConfigError(
                f"--show {name}: neither a file nor a column of the Parquet input {source['path']}."
            ) from None
        rows = input_rows(source)
        values = values if rows is None else values[rows]
    if values.ndim != 1 or len(values) != n:
        raise cfg.ConfigError(f"--show {name}: {len(values)} values for a pool of {n} rows; give one per row.")
    return values


def export(args) -> None:
    manifest = RunDir.read_manifest(args.run_dir)
    source = manifest["input"]
    if importlib.util.find_spec("pyarrow") is None:
        raise cfg.ConfigError(f"export writes Parquet files: {PARQUET_HINT}.")
    tree = RunDir.tree(args.run_dir)
    folder = args.out or args.run_dir
    if os.path.islink(folder) or os.path.exists(folder) and not os.path.isdir(folder):
        raise cfg.ConfigError(f"{folder}: exists and is not a directory; give another --out.")
    holder = run_holding(folder)
    if holder is not None and not os.path.samefile(holder, args.run_dir):
        raise cfg.ConfigError(f"{folder}: another hkmeans run directory ({holder}), or inside one; give another --out.")
    if holder is not None and os.path.abspath(folder) != holder:
        raise cfg.ConfigError(
            f"{folder}: inside the run directory {args.run_dir}; give the run directory itself or a folder outside it."
        )
    paths = [os.path.join(folder, name) for name in ("assignments.parquet", "clusters.parquet")]
    if os.path.isdir(folder):
        for path in paths:
            check_output(path, own_run=args.run_dir, names=EXPORT_OUTPUTS, reads=read_files(manifest), force=args.force)
    ids, rows = RunDir.ids(args.run_dir), input_rows(source)
    selected = run_indices(args.run_dir, source, tree)
    os.makedirs(folder, exist_ok=True)
    blocks = (assignments(tree, ids, rows, a, a + EXPORT_ROWS) for a in range(0, tree.n_samples, EXPORT_ROWS))
    save_parquet(paths[0], blocks)
    save_parquet(paths[1], [cluster_table(tree, selected)])
    for path in paths:
        print(path)


def advise(args) -> None:
    from ..advise import advise as propose

    pool = open_pool(args.embeddings, column=args.column)
    advice = propose(pool.shape[0], args.target_size)
    print(f"# {pool.shape[0]} points, target {args.target_size}: a config file for hkmeans fit --config")
    for name, value in advice.params.items():
        print(f"{name} = {list(value)}")
    print()
    for line in advice.reasons:
        print(f"# {line}")
