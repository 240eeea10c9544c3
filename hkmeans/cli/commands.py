"""What each subcommand does, given its parsed arguments."""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings

import numpy as np

from .. import demo as rings
from .._progress import log
from ..advise import advise as propose
from ..cost import Hardware, estimate
from ..datasets import RING_SIZES
from ..dedup import check_threshold
from ..io import InputError, file_digest, save_json, save_parquet, save_text
from ..readers import open_pool
from ..report import DedupSummary, curation_report
from ..sampling import flat_sampling, hierarchical_sampling
from ..tables import assignments, cluster_table, selected_table
from . import config as cfg
from .dedup import check_dask_arguments, search_pool
from .fitting import fit_run, prepare_fit
from .inputs import PARQUET_HINT, compute_dtype, read_labels, show_column
from .outputs import check_not_taken_in, check_output
from .run_layout import (
    EXPORT_OUTPUTS,
    REPORT_OUTPUTS,
    SAMPLE_OUTPUTS,
    RunDirError,
    input_files,
    read_files,
    read_json,
    refuse_inside_run,
    run_holding,
    share_lock,
)
from .rundir import RunDir
from .subsets import fitted_rows, pool_positions, run_indices, run_subsets, save_indices

EXPORT_ROWS = 1 << 20  # rows per row group of assignments.parquet


def _config(args, keys):
    flags = {key: getattr(args, key, None) for key in keys}
    return cfg.effective(args.config, flags)


def _check_sampling(config):
    if config["target_size"] is None:  # the other keys were checked as they were read
        raise cfg.ConfigError("target_size is required: give --target-size or set it in the config file.")


def _sizes(config):
    sizes = config["target_size"]
    return sizes if isinstance(sizes, list) else [sizes]


def _outputs(output, run_dir, sizes):
    """``(size, indices file, Parquet file)`` per target size: ``RUN_DIR/indices.npy``
    and ``selected.parquet`` (``X.npy`` and ``X.parquet`` for ``-o X.npy``; ``X`` and
    ``X.parquet`` for ``-o X``; ``selected...`` beside ``-o RUN_DIR/indices...``),
    with ``-SIZE`` before the suffix when there are several sizes."""
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
        name = os.path.basename(npy)
        if name.startswith("indices") and os.path.abspath(os.path.dirname(npy)) == os.path.abspath(run_dir):
            parquet = os.path.join(os.path.dirname(npy), "selected" + name.removeprefix("indices"))  # the run's names
    tag = (lambda n: f"-{n}") if len(sizes) > 1 else (lambda n: "")
    return [(n, f"{npy}{tag(n)}{suffix}", f"{parquet}{tag(n)}.parquet") for n in sizes]


def _check_outputs(outputs, reads, run_dir, force):
    if len({n for n, _, _ in outputs}) != len(outputs):
        raise cfg.ConfigError("--target-size: a size is given twice; give each once.")
    for _, npy, parquet in outputs:
        for path in (npy, parquet):
            # a rerun (after a kill, say) may replace what the same run wrote outside it
            ours = not force and os.path.isfile(path) and RunDir.wrote(run_dir, path)
            check_output(path, own_run=run_dir, names=SAMPLE_OUTPUTS, reads=reads, force=force or ours)


def _sample(tree, config, outputs, verbosity, source, run_dir, rows, ids=None):
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
        table = selected_table(tree, idx, ids, rows) if tables else None  # its checks before any file is written
        outside = [] if in_run else [npy] + ([parquet] if table is not None else [])
        RunDir.record_outputs(run_dir, outside, written=False)
        save_indices(npy, idx if rows is None else rows[idx], source, in_run)
        if table is not None:
            save_parquet(parquet, [table])
        RunDir.record_outputs(run_dir, outside, written=True)
        if verbosity >= 0:
            print(
                f"{len(idx)} indices written to {npy}" + (f", their rows to {parquet}" if tables else ""),
                file=sys.stderr,
            )


def fit(args) -> None:
    config = _config(args, cfg.FIT_KEYS.keys() | cfg.DEDUP_KEYS.keys() | cfg.INPUT_KEYS.keys() | cfg.RUN_KEYS.keys())
    fit_run(args, config, *prepare_fit(args, config))


def curate(args) -> None:
    config = _config(args, cfg.KEYS.keys())
    _check_sampling(config)
    outputs = _outputs(args.output, args.out, _sizes(config))
    prepared = prepare_fit(args, config)
    source = prepared[3]
    _check_outputs(outputs, input_files(source) + [config["ids"]], args.out, args.force)
    run = fit_run(args, config, *prepared)
    rows = fitted_rows(run.path, run.manifest)
    _sample(RunDir.tree(run.path), config, outputs, args.verbosity, source, run.path, rows, RunDir.ids(run.path))


def sample(args) -> None:
    config = _config(args, cfg.SAMPLE_KEYS.keys() | {"seed"})
    _check_sampling(config)
    _lock = share_lock(args.run_dir)  # held (open) to the end of the command
    tree = RunDir.tree(args.run_dir)
    manifest = RunDir.read_manifest(args.run_dir)
    outputs = _outputs(args.output, args.run_dir, _sizes(config))
    _check_outputs(outputs, read_files(manifest), args.run_dir, args.force)
    rows = fitted_rows(args.run_dir, manifest)  # refuses changed subset indices before any warning
    _warn_if_changed(manifest["input"])
    _sample(tree, config, outputs, args.verbosity, manifest["input"], args.run_dir, rows, RunDir.ids(args.run_dir))


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


def _whole_input_rows(source):
    """The rows of the whole input a run on a subset of it read, or None when it
    cannot be opened any more."""
    try:
        return open_pool(source["path"], column=source.get("column")).shape[0]
    except (InputError, OSError, ValueError):
        return None


def info(args) -> None:
    manifest = RunDir.read_manifest(args.run_dir)
    tree = RunDir.tree(args.run_dir) if manifest["status"] == "done" else None  # checked before any line
    src = manifest["input"]
    lines = [
        f"run directory  {os.path.abspath(args.run_dir)}",
        f"status         {manifest['status']} ({len(manifest['steps'])} steps done)",
    ]
    subset = f" (the rows listed in {src['subset_indices']['path']})" if "subset_indices" in src else ""
    lines.append(
        f"input          {src['path']}: {src['shape'][0]} x {src['shape'][1]} {np.dtype(src['dtype']).name}{subset}"
    )
    if "ids" in manifest:
        kind = "strings" if manifest["ids"]["dtype"] in ("str", "<U") or "U" in manifest["ids"]["dtype"] else "integers"
        lines.append(f"ids            {manifest['ids']['n']} {kind} from {manifest['ids']['from']}")
    if "dedup" in manifest:
        d, p = manifest["dedup"], manifest["params"]
        rule = f"cosine >= {p.get('dedup')}" if p.get("dedup_metric") == "cosine" else f"distance <= {p.get('dedup')}"
        lines.append(
            f"dedup          {rule}, keep {p.get('dedup_keep')}: {d.get('kept')} of {d.get('rows')} rows kept, "
            f"{d.get('removed')} removed"
        )
    lines.append(f"hkmeans        {manifest['versions'].get('hkmeans')}")
    lines.append("parameters     " + ", ".join(f"{k}={v}" for k, v in manifest["params"].items() if v is not None))
    if tree is not None:
        lines.append(
            f"{'level':>5} {'clusters':>9} {'empty':>6}   points per cluster: "
            f"{'min':>7} {'median':>8} {'mean':>9} {'max':>8}"
        )
        for t in range(tree.n_levels):
            sizes = tree.sizes(t)
            lines.append(
                f"{t:>5} {len(sizes):>9} {int(np.sum(sizes == 0)):>6}   {'':>20}{sizes.min():>7} "
                f"{np.median(sizes):>8.1f} {sizes.mean():>9.1f} {sizes.max():>8}"
            )
    print("\n".join(lines))


#: Written in a demo's folder: the digests of the plot and report it wrote there, which
#: a later demo replaces without --force while they are unchanged.
DEMO_MARK = ".hkmeans-demo.json"
DEMO_OUTPUTS = ("rings.png", "report.html")


def _check_demo_folder(folder, force) -> None:
    """Refuse (one line) a folder whose plot or report the demo would replace without
    ``force``: files a demo did not write as they are, or anything but regular files."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise cfg.ConfigError(f"{folder}: exists and is not a directory; give another --out.")
    written = read_json(os.path.join(folder, DEMO_MARK))
    written = written if isinstance(written, dict) else {}
    for name in DEMO_OUTPUTS:
        path = os.path.join(folder, name)
        if os.path.islink(path) or os.path.exists(path) and not os.path.isfile(path):
            raise cfg.ConfigError(f"{path}: exists and is not a regular file; give another --out.")
        if os.path.exists(path) and not force and written.get(name) != file_digest(path):
            raise cfg.ConfigError(f"{path}: exists and was not written by a demo; give --force or another --out.")


def demo(args) -> None:
    refuse_inside_run(args.out)
    _check_demo_folder(args.out, args.force)

    print(f"kernels ready in {rings.load_kernels():.1f} s (compiled on the first run, then cached)")
    copies = rings.dedup_rings(seed=args.seed)
    print(copies.line())
    result = rings.run_rings(seed=args.seed, data=copies.kept())
    print("Five rings of", ", ".join(map(str, RING_SIZES)), f"points; {len(result.curated)} picked.")
    print(rings.table(result))
    print(f"hierarchical k-means (1000, 300) with 10 resamples + sampling: {result.seconds:.2f} s")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("(no PNG: install matplotlib, e.g. pip install 'hkmeans[plot]', to get one)")
        return
    os.makedirs(args.out, exist_ok=True)
    paths = [os.path.join(args.out, name) for name in DEMO_OUTPUTS]
    rings.plot(result, paths[0])
    print(f"plot: {paths[0]}")
    rings.report(result, paths[1])
    print(f"report: {paths[1]}")
    save_json(os.path.join(args.out, DEMO_MARK), {name: file_digest(p) for name, p in zip(DEMO_OUTPUTS, paths)})


def report(args) -> None:
    _lock = share_lock(args.run_dir)  # held (open) to the end of the command
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
        selected = run_subsets(args.run_dir, manifest, tree)
        if not selected:
            raise cfg.ConfigError(
                f"{args.run_dir}: no indices.npy nor indices-N.npy; give --target-size or run hkmeans sample first."
            )
    rows, positions = fitted_rows(args.run_dir, manifest), pool_positions(args.run_dir, manifest)
    pool = None if positions is None else (source["shape"][0], positions)
    whole = None if rows is None or "subset_indices" not in source else _whole_input_rows(source)
    whole = None if whole is None else (whole, rows)
    labels = read_labels(args.labels, args.column, tree.n_samples, pool, whole)
    show = show_column(args.show, source, tree.n_samples, rows, pool, whole)
    ids = RunDir.ids(args.run_dir)
    if rows is not None:  # the browser names the input's rows: by id, or by row number
        ids = rows if ids is None else ids[rows]
    info = {
        "run directory": os.path.abspath(args.run_dir),
        "input": f"{source['path']} ({source['shape'][0]} x {source['shape'][1]})",
        "created": manifest.get("created", "?"),
        "finished": manifest.get("finished", "?"),
        **RunDir.timings(args.run_dir, tree.n_levels),
    }
    dedup = _dedup_summary(args.run_dir, manifest, RunDir.ids(args.run_dir))
    save_text(out, curation_report(tree, selected, labels, manifest["params"], info, ids=ids, show=show, dedup=dedup))
    log.info("report: %s", out)
    print(out)


def _dedup_summary(run_dir, manifest, ids):
    """What the run's dedup step removed, for the report; None if it had none."""
    found = RunDir.dedup(run_dir, manifest)
    if found is None:
        return None
    params = manifest["params"]
    return DedupSummary(
        manifest["dedup"]["rows"],
        found["removed"],
        found["duplicate_of"],
        found["similarity"],
        params.get("dedup"),
        params.get("dedup_metric", "cosine"),
        params.get("dedup_keep"),
        ids,
    )


def export(args) -> None:
    _lock = share_lock(args.run_dir)  # held (open) to the end of the command
    manifest = RunDir.read_manifest(args.run_dir)
    if importlib.util.find_spec("pyarrow") is None:
        raise cfg.ConfigError(f"export writes Parquet files: {PARQUET_HINT}.")
    tree = RunDir.tree(args.run_dir)
    folder = args.out or args.run_dir  # a run directory given by a link is read as the other commands do
    if args.out is not None and os.path.islink(folder) or os.path.exists(folder) and not os.path.isdir(folder):
        raise cfg.ConfigError(f"{folder}: exists and is not a directory; give another --out.")
    holder = run_holding(folder)
    if holder is not None and not os.path.samefile(holder, args.run_dir):
        raise cfg.ConfigError(f"{folder}: another hkmeans run directory ({holder}), or inside one; give another --out.")
    if holder is not None and os.path.realpath(folder) != holder:
        raise cfg.ConfigError(
            f"{folder}: inside the run directory {args.run_dir}; give the run directory itself or a folder outside it."
        )
    paths = [os.path.join(folder, name) for name in ("assignments.parquet", "clusters.parquet")]
    for path in paths:
        if os.path.isdir(folder):
            check_output(path, own_run=args.run_dir, names=EXPORT_OUTPUTS, reads=read_files(manifest), force=args.force)
        else:  # a new folder: not in a zarr store the run reads
            check_not_taken_in(path, manifest["input"]["path"])
    ids, rows = RunDir.ids(args.run_dir), fitted_rows(args.run_dir, manifest)
    selected = run_indices(args.run_dir, manifest, tree)
    os.makedirs(folder, exist_ok=True)
    blocks = (assignments(tree, ids, rows, a, a + EXPORT_ROWS) for a in range(0, tree.n_samples, EXPORT_ROWS))
    save_parquet(paths[0], blocks)
    save_parquet(paths[1], [cluster_table(tree, selected)])
    for path in paths:
        print(path)


def advise(args) -> None:
    for flag, value in (("--cost-workers", args.cost_workers), ("--cost-gpus", args.cost_gpus)):
        if value is not None and value < 1:
            raise cfg.ConfigError(f"{flag} must be a positive integer, got {value}.")
    if args.cost_workers is not None and args.cost_gpus is not None:
        raise cfg.ConfigError("give --cost-workers or --cost-gpus, not both.")
    config = cfg.effective(None, {key: getattr(args, key) for key in (*cfg.DEDUP_KEYS, "seed")})
    on = {"scheduler": args.scheduler, "workers": args.workers, "device": "cpu"}
    check_dask_arguments(on)
    if config["dedup"] is None and cfg.on_dask(on):
        raise cfg.ConfigError("--scheduler/--workers run the --dedup search; give --dedup T.")
    pool = open_pool(args.embeddings, column=args.column)
    propose(pool.shape[0], args.target_size)  # its checks of the sizes, before a dedup's work
    n_kept, dedup_keys = None, {}
    if config["dedup"] is not None:
        try:
            check_threshold(config["dedup"], config["dedup_metric"])
        except ValueError as e:
            raise cfg.ConfigError(f"--dedup: {e}") from None
        log.info("removing near-duplicates to count the rows kept")
        found = search_pool(
            pool,
            args.embeddings,
            args.column,
            config["dedup"],
            on,
            metric=config["dedup_metric"],
            keep=config["dedup_keep"],
            random_state=config["seed"],
        )
        n_kept, dedup_keys = len(found.kept), {key: config[key] for key in (*cfg.DEDUP_KEYS, "seed")}
    advice = propose(pool.shape[0], args.target_size, n_kept=n_kept)
    after = "" if n_kept is None else f" ({n_kept} after dedup)"
    print(f"# {pool.shape[0]} points{after}, target {args.target_size}: a config file for hkmeans fit --config")
    print(cfg.to_toml(dedup_keys), end="")
    for name, value in advice.params.items():
        print(f"{name} = {list(value)}")
    print()
    for line in advice.reasons:
        print(f"# {line}")
    if args.cost:
        n = pool.shape[0] if n_kept is None else n_kept
        _print_cost(n, pool.shape[1], compute_dtype(pool.dtype, "auto"), advice.params, args)


def _print_cost(n, d, dtype, params, args) -> None:
    """Each level's work, time and peak memory (:func:`hkmeans.cost.estimate`), as
    comments of the config file."""
    hardware = Hardware(workers=args.cost_workers or 1, gpus=args.cost_gpus or 0, dask=args.cost_workers is not None)
    levels = estimate(n, d, dtype, hardware=hardware, **params)
    where = "this machine"
    if hardware.gpus:
        where = f"{hardware.gpus} GPUs at {hardware.gpu_tflops:g} TFLOP/s each (assumed)"
    elif hardware.on_dask:
        where = f"{hardware.workers} Dask workers as fast as this machine for level 0 (assumed)"
    print(f"#\n# cost on {where}: the time at most (every k-means to max_iter,")
    print("# every row searched; indicative below a second), the peak memory beside the")
    print("# input in this process, or per worker (docs/scaling.md)")
    for c in levels:
        each = " per worker" if c.level == 0 and hardware.on_dask else ""
        print(
            f"# level {c.level}, {c.rows} rows -> {c.clusters} clusters: {c.flops / 1e12:.3g} TFLOP, "
            f"at most {_duration(c.seconds)}, {c.peak_bytes / 2**20:.0f} MiB{each}"
        )
    print(f"# in all: at most {_duration(sum(c.seconds for c in levels))}")


def _duration(seconds) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"
