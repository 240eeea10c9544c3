"""What the user's files give besides the embeddings: the dtype the kernels compute
in, the rows' ids, a labels file, the column a report shows."""

from __future__ import annotations

import os

import numpy as np

from ..ids import check_ids, column_ids, digest, load_ids, text_lines
from ..io import InputError
from ..readers import ParquetPool, SubsetPool, load_npy, open_pool
from . import config as cfg

PARQUET_HINT = 'install pyarrow (pip install "hkmeans[parquet]")'


def compute_dtype(stored, name):
    """The dtype a command computes in: ``name`` (``--dtype``), or for ``"auto"``
    float64 for rows stored in 8 bytes or more of float (either byte order, long
    double), else float32."""
    if name != "auto":
        return np.dtype(name)
    stored = np.dtype(stored)
    return np.dtype(np.float64 if stored.kind == "f" and stored.itemsize >= 8 else np.float32)


def read_ids(pool, config):
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


def is_parquet(path) -> bool:
    """Whether ``path`` is a Parquet file, by its leading magic bytes (any suffix)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def read_labels(path, column, n, pool=None, whole=None):
    """One label per pool row from a ``.npy`` file or a Parquet column (told apart
    by their contents); a one-line error if unreadable, of the wrong length, or with
    missing or nested values. ``pool``: ``(rows, positions)`` of a run whose dedup
    step kept ``n`` of its ``rows`` at ``positions``: labels of all its rows are
    taken there. ``whole``: ``(rows, fitted)`` of a run on ``fitted`` rows of an input
    of ``rows``: labels of all its rows are taken at ``fitted``."""
    if path is None:
        return None
    if not os.path.isfile(path):
        raise cfg.ConfigError(
            f"{path}: {'is a directory' if os.path.isdir(path) else 'no such file'}; give a file of labels."
        )
    try:
        if is_parquet(path):
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
            labels = load_npy(path, mmap_mode=None)  # one line naming the file, never unpickled
    except (cfg.ConfigError, InputError):  # already one line naming the file
        raise
    except ImportError:
        raise cfg.ConfigError('reading labels from Parquet needs pyarrow: pip install "hkmeans[parquet]"') from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "Parquet file" if is_parquet(path) else ".npy file (or a Parquet file)"
        raise cfg.ConfigError(f"{path}: cannot read labels as a {kind} ({first}).") from None
    labels = _per_row(labels, n, pool, f"{path}: labels", "label", whole)
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise cfg.ConfigError(f"{path}: {int(np.isnan(labels).sum())} labels are NaN; every row needs a label.")
    return labels


def _per_row(values, n, pool, what, one, whole=None):
    """``values``, one per fitted row: as given when there are ``n``; at the kept
    positions when there is one per row of the run's ``pool`` before its dedup step
    (``(rows, positions)``); at the fitted rows when there is one per row of the
    whole input (``whole``: ``(rows, fitted)``); a one-line error otherwise."""
    if values.ndim == 1 and len(values) == n:
        return values
    if pool is not None and values.ndim == 1 and len(values) == pool[0]:
        return values[pool[1]]
    if whole is not None and values.ndim == 1 and len(values) == whole[0]:
        return values[whole[1]]
    before = "" if pool is None else f" ({pool[0]} before dedup)"
    before += "" if whole is None else f" ({whole[0]} in the whole input)"
    raise cfg.ConfigError(
        f"{what} of shape {values.shape} for a pool of {n} rows{before}; give one {one} per row (a 1-D array or column)."
    )


def show_column(name, source, n, rows=None, pool=None, whole=None):
    """The values ``report --show`` shows per fitted row: a file of one value per row
    (``.npy``, or ``.txt`` lines; see :func:`_per_row` for ``pool`` and ``whole``), or a column of
    the Parquet input (taken at ``rows``, the input rows fitted, if not None); None
    for None."""
    if name is None:
        return None
    if os.path.isfile(name):
        try:
            if name.endswith(".txt"):
                values = np.array(text_lines(name), dtype=object)
            else:
                values = load_npy(name, mmap_mode=None)
        except (cfg.ConfigError, InputError):  # already one line naming the file
            raise
        except (OSError, ValueError, UnicodeDecodeError, EOFError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise cfg.ConfigError(f"{name}: cannot read the values to show ({first}).") from None
    else:
        # the whole input's column, its files in the order the rows were read
        try:
            whole_input = open_pool(source["path"], column=source.get("column"))
        except ImportError:
            raise cfg.ConfigError(f"--show {name}: reading a Parquet column {PARQUET_HINT}.") from None
        except (OSError, ValueError):
            whole_input = None
        if not isinstance(whole_input, ParquetPool) or not whole_input.has_column(name):
            raise cfg.ConfigError(f"--show {name}: neither a file nor a column of the Parquet input {source['path']}.")
        values = whole_input.read_column(name, nulls=True)  # or an InputError naming the file
        values = values if rows is None else values[rows]
    return _per_row(values, n, pool, f"--show {name}: values", "value", whole)
