"""``hkmeans dedup``: near-duplicate removal of a pool into a folder of results."""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .._params import DEVICES
from ..backends.cuda import check_available
from ..dedup import KEEP, check_threshold, dedup
from ..io import atomic_folder, save_npy, save_parquet
from ..readers import open_pool
from ..tables import _structured
from . import config as cfg
from .fitting import client_of
from .inputs import compute_dtype, read_ids
from .outputs import check_not_taken_in
from .run_layout import refuse_inside_run

EXAMPLES = [
    "hkmeans dedup emb.npy --threshold 0.95 --out dedup/",
    "hkmeans dedup pool.parquet --column emb --id-column url --threshold 0.9 --out dedup/",
    "hkmeans dedup 'shards/*.npy' --threshold 0.95 --workers 4 --out dedup/",
]
PARQUET_HINT = 'install pyarrow (pip install "hkmeans[parquet]")'


def add_arguments(p) -> None:
    """The command's arguments on the parser ``p``."""
    p.add_argument(
        "embeddings",
        metavar="EMBEDDINGS",
        help="a 2-D float or integer .npy file (memory-mapped); a directory or glob of .npy shards "
        "or of Parquet files; a Parquet file; or a zarr array's directory",
    )
    p.add_argument(
        "--threshold",
        type=float,
        required=True,
        metavar="T",
        help="cosine similarity at or above which two rows are duplicates, in (0, 1] "
        "(with --metric euclidean: the distance at or below which they are)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="folder for kept.npy and duplicates.parquet (made; must be missing or empty)",
    )
    p.add_argument(
        "--metric",
        choices=("cosine", "euclidean"),
        default="cosine",
        help="compare rows by cosine similarity or by Euclidean distance (default: cosine)",
    )
    p.add_argument(
        "--keep",
        choices=KEEP,
        default="hard",
        help="which row of a group is kept: hard (farthest from its centroid, as SemDeDup), easy, "
        "random or first (default: hard)",
    )
    p.add_argument("--n-clusters", type=int, metavar="K", help="clusters searched (default: about sqrt(rows))")
    p.add_argument("--column", metavar="NAME", help="Parquet input: the column of embeddings")
    p.add_argument("--ids", metavar="FILE", help=cfg.INPUT_KEYS["ids"].help)
    p.add_argument("--id-column", metavar="NAME", help=cfg.INPUT_KEYS["id_column"].help)
    p.add_argument("--seed", type=int, default=0, help="seed of the clustering and of --keep random (default: 0)")
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cuda: the block similarities on an NVIDIA GPU, the result the CPU's (default: cpu)",
    )
    add_dask_arguments(p)
    p.set_defaults(verbosity=0)


def add_dask_arguments(p) -> None:
    """``--scheduler`` and ``--workers``: where the search runs."""
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="search on the Dask cluster of the scheduler at ADDRESS, its workers reading the input chunk "
        "by chunk (they must see its files at the same paths); the result is the one in process",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="search on a local Dask cluster of N worker processes; the result is the one in process",
    )


def check_dask_arguments(config) -> None:
    """One-line errors for ``--scheduler``/``--workers``, before any work."""
    if config["workers"] is not None and config["workers"] < 1:
        raise cfg.ConfigError(f"--workers must be a positive integer, got {config['workers']}.")
    if config["scheduler"] is not None and config["workers"] is not None:
        raise cfg.ConfigError("give --scheduler (an existing cluster) or --workers (a local one), not both.")
    if cfg.on_dask(config) and importlib.util.find_spec("distributed") is None:
        raise cfg.ConfigError('--scheduler/--workers need Dask: pip install "hkmeans[dask]".')


def search_pool(pool, source, column, threshold, config, **search):
    """:func:`hkmeans.dedup` of the rows of ``pool`` (opened from ``source``): in
    process, or on the Dask cluster ``config`` names, its workers reading the input."""
    client = client_of(config)
    if client is None:
        return dedup(rows_of(pool), threshold, device=config["device"], **search)
    from ..backends.dask.storage import pool_array

    dtype = compute_dtype(pool.dtype, "auto")
    X = pool_array(source, dtype, column=column, shape=pool.shape)
    return dedup(X, threshold, backend="dask", client=client, device=config["device"], **search)


def _check_out(out):
    if os.path.islink(out) or (os.path.exists(out) and not os.path.isdir(out)):
        raise cfg.ConfigError(f"{out}: exists and is not a folder; give another --out.")
    if os.path.isdir(out) and os.listdir(out):
        raise cfg.ConfigError(f"{out}: exists and is not empty; give a new or empty folder as --out.")
    refuse_inside_run(out)
    above = os.path.dirname(os.path.abspath(out))
    while not os.path.exists(above):
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        raise cfg.ConfigError(f"{out}: {above} is not a folder; give another --out.")


def _table(res, ids):
    removed = res.removed
    columns = {"row": removed, "duplicate_of_row": res.duplicate_of[removed], "similarity": res.similarity[removed]}
    if ids is not None:
        columns = {"id": ids[removed], **columns, "duplicate_of_id": ids[res.duplicate_of[removed]]}
    return _structured(columns)


def rows_of(pool) -> np.ndarray:
    """The rows of ``pool`` as one float32 or float64 array: its memory map, or read
    into memory."""
    X = pool.mapped()
    if X is None:
        X = pool.read(0, pool.shape[0])
    dtype = compute_dtype(X.dtype, "auto")
    return X if X.dtype == dtype else X.astype(dtype)


def run(args) -> None:

    check_threshold(args.threshold, args.metric)
    cfg.check("seed", args.seed, "--seed")  # as fit words it, before the input is read
    config = {"scheduler": args.scheduler, "workers": args.workers, "device": args.device}
    if args.device == "cuda" and not cfg.on_dask(config):  # on Dask, the workers' GPUs are checked
        try:
            check_available()
        except RuntimeError as e:
            raise cfg.ConfigError(f"--device: {e}") from None
    check_dask_arguments(config)
    _check_out(args.out)
    for name in ("duplicates.parquet", "kept.npy"):  # never inside a zarr input
        check_not_taken_in(os.path.join(args.out, name), args.embeddings)
    if importlib.util.find_spec("pyarrow") is None:
        raise cfg.ConfigError(f"dedup writes duplicates.parquet: {PARQUET_HINT}.")
    pool = open_pool(args.embeddings, column=args.column)
    ids = read_ids(pool, {"ids": args.ids, "id_column": args.id_column})
    ids = None if ids is None else ids[0]
    search = dict(metric=args.metric, keep=args.keep, random_state=args.seed, n_clusters=args.n_clusters)
    res = search_pool(pool, args.embeddings, args.column, args.threshold, config, **search)
    with atomic_folder(args.out) as out:  # both files or neither: a rerun finds the folder empty
        save_parquet(os.path.join(out, "duplicates.parquet"), [_table(res, ids)])
        save_npy(os.path.join(out, "kept.npy"), res.kept)
    n = len(res.duplicate_of)
    removed = n - len(res.kept)
    largest = 1 + int(np.bincount(res.duplicate_of[res.duplicate_of >= 0], minlength=1).max())
    print(f"{n} rows, {removed} removed ({removed / n:.1%}), largest group {largest} rows: {args.out}")
