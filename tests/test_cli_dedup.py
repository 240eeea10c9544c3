"""``hkmeans dedup`` on generated files."""

import importlib.util
import json
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import hkmeans
from hkmeans.cli import commands

from .test_cli import assert_error
from .test_cli import hkmeans as run

needs_pyarrow = pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="needs pyarrow")


@pytest.fixture
def pool(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 8)).astype(np.float32)
    X[400:500] = X[:100] + 0.001 * rng.normal(size=(100, 8)).astype(np.float32)
    path = tmp_path / "emb.npy"
    np.save(path, X)
    return X, path


@needs_pyarrow
def test_writes_kept_rows_and_duplicates_with_ids(pool, tmp_path):
    import pyarrow.parquet as pq

    X, path = pool
    ids = np.array([f"img{i}" for i in range(len(X))])
    np.save(tmp_path / "ids.npy", ids)
    out = tmp_path / "out"
    proc = run("dedup", path, "--threshold", 0.99, "--ids", tmp_path / "ids.npy", "--out", out)
    api = hkmeans.dedup(X, 0.99, random_state=0)
    np.testing.assert_array_equal(np.load(out / "kept.npy"), api.kept)
    table = pq.read_table(out / "duplicates.parquet").to_pydict()
    np.testing.assert_array_equal(table["row"], api.removed)
    np.testing.assert_array_equal(table["duplicate_of_row"], api.duplicate_of[api.removed])
    assert table["id"] == [f"img{i}" for i in api.removed]
    assert table["duplicate_of_id"] == [f"img{i}" for i in api.duplicate_of[api.removed]]
    np.testing.assert_array_equal(table["similarity"], api.similarity[api.removed])
    removed = len(api.removed)
    assert proc.stdout.strip() == f"600 rows, {removed} removed ({removed / 600:.1%}), largest group 2 rows: {out}"
    assert 90 <= removed <= 110


@pytest.mark.parametrize(
    "args, match",
    [
        (["--threshold", "0"], r"in \(0, 1\]"),
        (["--threshold", "-1", "--metric", "euclidean"], ">= 0"),
        (["--threshold", "0.9", "--keep", "last"], "invalid choice"),
    ],
)
def test_bad_parameters_exit_2_with_nothing_written(pool, tmp_path, args, match):
    out = tmp_path / "out"
    proc = run("dedup", pool[1], *args, "--out", out, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert re.search(match, proc.stderr)
    assert not out.exists()


def test_nan_rows_and_busy_out_exit_2(pool, tmp_path):
    X, _ = pool
    X = X.copy()
    X[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", X)
    out = tmp_path / "out"
    proc = run("dedup", tmp_path / "bad.npy", "--threshold", 0.9, "--out", out, check=False)
    assert proc.returncode == 2 and "row 3" in proc.stderr and not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = run("dedup", pool[1], "--threshold", 0.9, "--out", out, check=False)
    assert proc.returncode == 2 and "not empty" in proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@needs_pyarrow
def test_nothing_removed_still_types_the_string_id_columns(pool, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    X, path = pool
    (tmp_path / "ids.txt").write_text("".join(f"img{i}\n" for i in range(len(X))))
    run("dedup", path, "--threshold", 1.0, "--ids", tmp_path / "ids.txt", "--out", tmp_path / "out")
    schema = pq.read_schema(tmp_path / "out" / "duplicates.parquet")
    assert pq.read_metadata(tmp_path / "out" / "duplicates.parquet").num_rows == 0
    assert schema.field("id").type == pa.string() and schema.field("duplicate_of_id").type == pa.string()


@needs_pyarrow
def test_out_is_written_whole_or_not_at_all_and_a_bad_parent_fails_first(pool, tmp_path, monkeypatch):
    from hkmeans.cli import dedup as command

    def full_disk(path, array):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(command, "save_npy", full_disk)  # after duplicates.parquet
    for out in (tmp_path / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        proc = run("dedup", pool[1], "--threshold", 0.99, "--out", out, check=False)
        assert proc.returncode != 0 and "No space left" in proc.stderr
        assert (out.name == "empty") == out.exists() and not list(tmp_path.glob("*/*.parquet"))
    assert not list(tmp_path.glob(".tmp-*"))
    (tmp_path / "afile").write_text("")
    monkeypatch.setattr(command, "search_pool", lambda *a, **k: pytest.fail("searched before --out was checked"))
    assert_error(run("dedup", pool[1], "--threshold", 0.9, "--out", tmp_path / "afile" / "sub", check=False))


def test_device_cuda_without_a_gpu_is_one_line_with_nothing_written(pool, tmp_path):
    from hkmeans.backends.cuda import check_available

    try:
        check_available()
    except RuntimeError as e:
        reason = str(e)
    else:
        pytest.skip("a GPU is visible: the dedup would run")
    out = tmp_path / "out"
    proc = run("dedup", pool[1], "--threshold", 0.9, "--device", "cuda", "--out", out, check=False)
    assert proc.returncode == 2 and proc.stderr == f"hkmeans: error: --device: {reason}\n"
    assert not out.exists()


@needs_pyarrow
def test_workers_search_on_dask_and_write_what_the_search_in_process_writes(pool, tmp_path):
    pytest.importorskip("distributed")
    import pyarrow.parquet as pq

    X, path = pool
    (tmp_path / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 250), (250, 600)]):  # the duplicates of rows 0-99 in the other shard
        np.save(tmp_path / "shards" / f"s{i}.npy", X[a:b])
    run("dedup", path, "--threshold", 0.99, "--out", tmp_path / "here")
    proc = run("dedup", tmp_path / "shards", "--threshold", 0.99, "--workers", 2, "--out", tmp_path / "dask")
    np.testing.assert_array_equal(np.load(tmp_path / "dask" / "kept.npy"), np.load(tmp_path / "here" / "kept.npy"))
    assert pq.read_table(tmp_path / "dask" / "duplicates.parquet").equals(
        pq.read_table(tmp_path / "here" / "duplicates.parquet")
    )
    assert proc.stdout.startswith("600 rows, ")


def test_bad_ids_fail_before_the_search(pool, tmp_path, monkeypatch):
    from hkmeans.cli import dedup as command

    monkeypatch.setattr(command, "search_pool", lambda *a, **k: pytest.fail("searched before the ids were read"))
    np.save(tmp_path / "ids.npy", np.arange(len(pool[0]) - 1))
    proc = run(
        "dedup", pool[1], "--threshold", 0.9, "--ids", tmp_path / "ids.npy", "--out", tmp_path / "o", check=False
    )
    assert_error(proc, "599 ids for an input of 600 rows")
    assert not (tmp_path / "o").exists()


@needs_pyarrow
@pytest.mark.parametrize("stored", ["<f8", ">f8"])
@pytest.mark.parametrize("engine", ["in process", "dask"])
def test_float64_rows_are_searched_in_float64(tmp_path, engine, stored):
    """Pairs within 1e-8 of the threshold: float64 rows (either byte order) decide them
    as the API does on the float64 array (in float32 some go the other way)."""
    if engine == "dask":
        pytest.importorskip("distributed")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    u = rng.normal(size=x.shape)
    u -= (u * x).sum(1, keepdims=True) * x
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    c = 0.99 + rng.uniform(-1e-8, 1e-8, len(x))
    X = np.concatenate([x, c[:, None] * x + np.sqrt(1 - c**2)[:, None] * u]) * rng.uniform(0.5, 2, (400, 1))
    np.save(tmp_path / "x.npy", X.astype(stored))
    flags = ["--workers", 1] if engine == "dask" else []
    run("dedup", tmp_path / "x.npy", "--threshold", 0.99, *flags, "--out", tmp_path / "out")
    api = hkmeans.dedup(X, 0.99, random_state=0)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "kept.npy"), api.kept)
    assert not np.array_equal(hkmeans.dedup(X.astype(np.float32), 0.99, random_state=0).kept, api.kept)


@pytest.mark.slow
def test_bad_rows_the_workers_find_are_one_line_on_the_terminal(pool, tmp_path):
    pytest.importorskip("distributed")
    X = pool[0].copy()
    X[3, 2] = np.nan
    np.save(tmp_path / "bad.npy", X)
    out = tmp_path / "out"
    # a process of its own: the workers' logs reach its terminal, not this process's capture
    proc = run("dedup", tmp_path / "bad.npy", "--threshold", 0.9, "--workers", 1, "--out", out, check=False, env=None)
    assert_error(proc, "row 3")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, match",
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--workers", "0"], "positive integer"),
    ],
)
def test_bad_dask_flags_exit_2_with_nothing_written(pool, tmp_path, args, match):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    proc = run("dedup", pool[1], "--threshold", 0.9, *args, "--out", out, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert re.search(match, proc.stderr)
    assert not out.exists()


# curate --dedup: the fit on the rows kept, every output in rows of the pool

DEDUP_FIT = ["--n-clusters", "20,5", "--sample-size", "8,2", "--n-resamples", "2", "--checkpoint-interval", "0"]
DEDUP_API = dict(n_clusters=(20, 5), sample_size=(8, 2), n_resamples=2, random_state=0)


def tree_of(run_dir):
    return hkmeans.ClusterTree.load(run_dir / "tree.npz")


def assert_fitted_on(run_dir, X):
    """The run's tree is the Python API's on the rows ``X``."""
    model = hkmeans.HierarchicalKMeans(**DEDUP_API).fit(X)
    tree = tree_of(run_dir)
    assert tree.n_samples == len(X)
    for t, level in enumerate(model.levels_):
        np.testing.assert_array_equal(tree.labels[t], level.labels)
        np.testing.assert_array_equal(tree.centroids[t], level.centroids)


def read_manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


@needs_pyarrow
def test_curate_dedup_fits_the_kept_rows_and_writes_rows_and_ids_of_the_pool(pool, tmp_path):
    import pyarrow.parquet as pq

    X, path = pool
    ids = np.array([f"img{i}" for i in range(len(X))])
    np.save(tmp_path / "ids.npy", ids)
    run_dir = tmp_path / "run"
    args = ["curate", path, "--out", run_dir, *DEDUP_FIT, "--ids", tmp_path / "ids.npy", "--target-size", 200]
    run(*args, "--dedup", 0.99, "-q")
    api = hkmeans.dedup(X, 0.99, random_state=0)
    assert 90 <= len(api.removed) <= 110
    with np.load(run_dir / "dedup.npz") as f:
        np.testing.assert_array_equal(f["kept"], api.kept)
        np.testing.assert_array_equal(f["removed"], api.removed)
        np.testing.assert_array_equal(f["duplicate_of"], api.duplicate_of[api.removed])
        np.testing.assert_array_equal(f["similarity"], api.similarity[api.removed])
    m = read_manifest(run_dir)
    assert m["params"]["dedup"] == 0.99 and m["params"]["dedup_metric"] == "cosine"
    assert m["params"]["dedup_keep"] == "hard"
    assert {k: m["dedup"][k] for k in ("file", "rows", "kept", "removed")} == {
        "file": "dedup.npz",
        "rows": 600,
        "kept": len(api.kept),
        "removed": len(api.removed),
    }
    assert_fitted_on(run_dir, X[api.kept])
    picked = hkmeans.hierarchical_sampling(tree_of(run_dir), 200, random_state=0)
    indices = np.load(run_dir / "indices.npy")
    np.testing.assert_array_equal(indices, api.kept[picked])  # rows of the pool, none removed
    table = pq.read_table(run_dir / "selected.parquet").to_pydict()
    np.testing.assert_array_equal(table["row"], indices)
    assert table["id"] == [f"img{i}" for i in indices]
    run("sample", run_dir, "--target-size", 50, "-o", tmp_path / "s.npy", "-q")
    assert np.isin(np.load(tmp_path / "s.npy"), api.kept).all()
    run("export", run_dir)
    rows = pq.read_table(run_dir / "assignments.parquet").to_pydict()
    np.testing.assert_array_equal(rows["row"], api.kept)
    assert rows["id"] == [f"img{i}" for i in api.kept]
    clusters = pq.read_table(run_dir / "clusters.parquet").to_pydict()
    assert sum(s for s, lv in zip(clusters["selected"], clusters["level"]) if lv == 0) == 200
    info = run("info", run_dir).stdout
    assert f"cosine >= 0.99, keep hard: {len(api.kept)} of 600 rows kept, {len(api.removed)} removed" in info
    # a rerun of the same command does nothing; another threshold is another run
    err = run(*args, "--dedup", 0.99, "-v").stderr
    assert "fit is already done" in err and "removing near-duplicates" not in err
    proc = run(*args, "--dedup", 0.95, check=False)
    assert proc.returncode == 2 and "dedup=0.99 there, 0.95 here" in proc.stderr
    # a dedup file that is not the one the run wrote is refused, in one line
    with np.load(run_dir / "dedup.npz") as f:
        arrays = dict(f)
    arrays["kept"] = arrays["kept"][::-1].copy()
    np.savez(run_dir / "dedup.npz", **arrays)
    assert_error(run("sample", run_dir, "--target-size", 5, check=False), "not the dedup result this run wrote")
    # --overwrite without --dedup: a run on every row, the dedup file gone
    run(*args, "--overwrite", "-q")
    assert not (run_dir / "dedup.npz").exists() and "dedup" not in read_manifest(run_dir)
    assert tree_of(run_dir).n_samples == 600


def test_dedup_on_a_subset_keeps_rows_of_the_whole_input(pool, tmp_path):
    X, path = pool
    rows = np.arange(0, 600, 2)  # even rows: 50 of the copies (rows 400-498) and their originals
    np.save(tmp_path / "rows.npy", rows)
    run_dir = tmp_path / "run"
    run("fit", path, "--out", run_dir, *DEDUP_FIT, "--subset-indices", tmp_path / "rows.npy", "--dedup", 0.99, "-q")
    api = hkmeans.dedup(X[rows], 0.99, random_state=0)
    assert 40 <= len(api.removed) <= 55
    with np.load(run_dir / "dedup.npz") as f:
        np.testing.assert_array_equal(f["kept"], rows[api.kept])
        np.testing.assert_array_equal(f["duplicate_of"], rows[api.duplicate_of[api.removed]])
    assert_fitted_on(run_dir, X[rows[api.kept]])
    run("sample", run_dir, "--target-size", 40, "-q")
    np.testing.assert_array_equal(
        np.load(run_dir / "indices.npy"),
        rows[api.kept][hkmeans.hierarchical_sampling(tree_of(run_dir), 40, random_state=0)],
    )


def test_indices_of_a_run_without_the_dedup_are_refused(pool, tmp_path):
    """A subset drawn from the same input by a run without the dedup holds rows this
    run removed: refused, not mapped onto the rows kept."""
    path = pool[1]
    a, b = tmp_path / "a", tmp_path / "b"
    run("curate", path, "--out", a, "--n-clusters", "10,3", "--target-size", 50, "--dedup", 0.99, "-q")
    run("curate", path, "--out", b, "--n-clusters", "10,3", "--target-size", 550, "-q")
    with np.load(a / "dedup.npz") as f:
        removed = np.setdiff1d(np.arange(600), f["kept"])
    assert np.isin(np.load(b / "indices.npy"), removed).any()
    for name in ("indices.npy", "indices.json"):
        shutil.copy(b / name, a / name)
    assert_error(run("export", a, check=False), "is not in the subset this run was fitted on")
    assert not (a / "assignments.parquet").exists()


def test_dedup_keys_in_a_config_file_are_the_flags(pool, tmp_path):
    X, path = pool
    (tmp_path / "c.toml").write_text('dedup = 0.1\ndedup_metric = "euclidean"\ndedup_keep = "first"\n')
    run("fit", path, "--out", tmp_path / "a", *DEDUP_FIT, "--config", tmp_path / "c.toml", "-q")
    run("fit", path, "--out", tmp_path / "a", *DEDUP_FIT, "--dedup", 0.1, "--dedup-metric", "euclidean",
        "--dedup-keep", "first", "-q")  # fmt: skip
    api = hkmeans.dedup(X, 0.1, metric="euclidean", keep="first", random_state=0)
    assert 90 <= len(api.removed) <= 110 and (api.duplicate_of[api.removed] < api.removed).all()
    with np.load(tmp_path / "a" / "dedup.npz") as f:
        np.testing.assert_array_equal(f["kept"], api.kept)
    assert read_manifest(tmp_path / "a")["params"]["dedup"] == 0.1
    assert "dedup = 0.1\n" in (tmp_path / "a" / "config.toml").read_text()
    run("fit", path, "--out", tmp_path / "b", "--config", tmp_path / "a" / "config.toml", "-q")
    np.testing.assert_array_equal(tree_of(tmp_path / "b").labels[0], tree_of(tmp_path / "a").labels[0])
    # without --dedup, the run has no dedup keys: as runs made before they existed
    run("fit", path, "--out", tmp_path / "c", *DEDUP_FIT, "-q")
    assert not any(k.startswith("dedup") for k in read_manifest(tmp_path / "c")["params"])
    assert not (tmp_path / "c" / "dedup.npz").exists()


def _with_row(X, row, value, tmp_path):
    X = X.copy()
    X[row] = value
    np.save(tmp_path / "bad.npy", X)
    return tmp_path / "bad.npy"


@pytest.mark.parametrize(
    "case, match",
    [
        ("zero threshold", r"--dedup: threshold must be in \(0, 1\] for metric=\"cosine\""),
        ("above 1", r"--dedup: threshold must be in \(0, 1\]"),
        ("negative", "--dedup: dedup must be a finite non-negative number, got -1.0"),
        ("bad keep", "argument --dedup-keep: invalid choice: 'last'"),
        ("NaN row", r"1 row\(s\) hold NaN or infinity \(as float32\); the first is row 7"),
        ("zero row", r"1 row\(s\) are zero \(as float32\); the first is row 9"),
        ("bad config", "c.toml: dedup_metric must be one of 'cosine', 'euclidean', got 'dot'"),
    ],
)
def test_bad_dedup_input_is_one_line_with_nothing_written(pool, tmp_path, case, match):
    X, path = pool
    extra = {
        "zero threshold": ["--dedup", "0"],
        "above 1": ["--dedup", "1.5"],
        "negative": ["--dedup", "-1", "--dedup-metric", "euclidean"],
        "bad keep": ["--dedup", "0.9", "--dedup-keep", "last"],
        "bad config": ["--config", tmp_path / "c.toml"],
    }.get(case, ["--dedup", "0.9"])
    if case == "NaN row":
        path = _with_row(X, 7, np.nan, tmp_path)
    if case == "zero row":
        path = _with_row(X, 9, 0.0, tmp_path)
    (tmp_path / "c.toml").write_text('dedup = 0.9\ndedup_metric = "dot"\n')
    out = tmp_path / "run"
    proc = run("curate", path, "--out", out, *DEDUP_FIT, "--target-size", 10, *extra, check=False)
    assert_error(proc)
    assert re.search(match, proc.stderr), proc.stderr
    assert not out.exists()


@needs_pyarrow
def test_curate_dedup_on_dask_keeps_the_rows_in_process_keeps_and_fits_them_on_dask(pool, tmp_path):
    pytest.importorskip("distributed")
    X, path = pool
    on_dask = ["--workers", "2", "--target-size", 100, "-q"]
    run("curate", path, "--out", tmp_path / "run", *DEDUP_FIT, "--dedup", 0.99, *on_dask)
    run("dedup", path, "--threshold", 0.99, "--out", tmp_path / "dedup")
    with np.load(tmp_path / "run" / "dedup.npz") as f:
        np.testing.assert_array_equal(f["kept"], np.load(tmp_path / "dedup" / "kept.npy"))
    # the fit is Dask's on the rows kept (the same chunks; on one process here)
    import dask
    import dask.array as da

    from hkmeans.backends.dask.storage import chunk_rows

    kept = X[np.load(tmp_path / "dedup" / "kept.npy")]
    with dask.config.set(scheduler="synchronous"):
        model = hkmeans.HierarchicalKMeans(**DEDUP_API, backend="dask")
        model.fit(da.from_array(kept, chunks=(chunk_rows(8, np.float32), 8)))
    tree = tree_of(tmp_path / "run")
    for t, level in enumerate(model.levels_):
        np.testing.assert_array_equal(tree.labels[t], np.asarray(level.labels))
        np.testing.assert_array_equal(tree.centroids[t], level.centroids)
    assert not list((tmp_path / "run").glob("scratch-*"))


def test_a_zero_row_is_fine_under_euclidean(pool, tmp_path):
    X, _ = pool
    path = _with_row(X, 9, 0.0, tmp_path)
    run("fit", path, "--out", tmp_path / "run", *DEDUP_FIT, "--dedup", 0.01, "--dedup-metric", "euclidean", "-q")
    assert read_manifest(tmp_path / "run")["status"] == "done"


def test_too_few_rows_kept_for_the_clusters_is_one_line_and_keeps_the_dedup(tmp_path):
    X = np.repeat(np.eye(8, dtype=np.float32), 10, axis=0)  # 8 distinct rows, 10 copies each
    np.save(tmp_path / "x.npy", X)
    proc = run("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *DEDUP_FIT, "--dedup", 0.99, check=False)
    assert_error(proc)
    assert "--dedup kept 8 of 80 rows, fewer than n_clusters=20 (level 0)" in proc.stderr
    assert read_manifest(tmp_path / "run")["dedup"]["kept"] == 8


# killed anywhere in the dedup or the fit, a rerun gives the uninterrupted result


class Killed(BaseException):
    """Stands for SIGKILL: no handler of the command catches it."""


def _kill_at(monkeypatch, where):
    """Make the command stop at ``where``, as a kill would leave the run directory."""
    from hkmeans.cli import fitting
    from hkmeans.cli.rundir import RunDir

    if where == "in the dedup":

        def killed(*args, **kwargs):
            raise Killed

        monkeypatch.setattr(fitting, "dedup", killed)
    elif where == "dedup written, not yet listed":
        write = RunDir.write_manifest

        def write_manifest(self):
            if "dedup" in self.manifest:
                raise Killed
            write(self)

        monkeypatch.setattr(RunDir, "write_manifest", write_manifest)
    else:  # in the fit: after a step of level 0, or after a saved k-means state
        save = RunDir.save

        def save_then_die(self, key, arrays):
            save(self, key, arrays)
            if key == ("level0/step0001" if where == "between steps of the fit" else "level0/step0002/partial"):
                raise Killed

        monkeypatch.setattr(RunDir, "save", save_then_die)


@pytest.mark.parametrize(
    "where, engine",
    [
        ("in the dedup", "in process"),
        ("dedup written, not yet listed", "in process"),
        ("between steps of the fit", "in process"),
        ("inside a k-means run", "in process"),
        pytest.param("between steps of the fit", "dask", marks=pytest.mark.slow),
    ],
)
def test_a_run_killed_anywhere_resumes_to_the_uninterrupted_result(pool, tmp_path, monkeypatch, where, engine):
    if engine == "dask":  # the three runs on one cluster, which outlives the killed command as a real one would
        distributed = pytest.importorskip("distributed")
        # worker threads in this process start fast; they still read the rows kept from the run directory
        with distributed.LocalCluster(2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
            _killed_then_resumed(pool, tmp_path, monkeypatch, where, ["--scheduler", cluster.scheduler_address])
    else:
        _killed_then_resumed(pool, tmp_path, monkeypatch, where, [])


def _killed_then_resumed(pool, tmp_path, monkeypatch, where, engine):
    import gc

    from hkmeans.cli import fitting

    X, _ = pool
    path = tmp_path / "x16.npy"
    np.save(path, X.astype(np.float16))  # read through copies: scratch-dedup.npy, then data.npy
    args = ["curate", path, *DEDUP_FIT, "--dedup", 0.99, "--target-size", 100, "-q", *engine]
    run(*args, "--out", tmp_path / "straight")
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        _kill_at(m, where)
        with pytest.raises(Killed):
            run(*args, "--out", run_dir)
    gc.collect()  # the killed command's run directory object: its lock is let go
    (run_dir / ".tmp-abcd1234-dedup.npz").write_bytes(b"half a file")  # what a kill leaves
    before = read_manifest(run_dir)
    assert before["status"] == "running" and not (run_dir / "tree.npz").exists()
    in_fit = where in ("between steps of the fit", "inside a k-means run")
    assert ("dedup" in before) == in_fit
    assert (run_dir / "dedup.npz").exists() == (where != "in the dedup")
    if in_fit:  # the dedup is done: the rerun must not run it again
        rows_kept = "scratch-kept.npy" if engine else "data.npy"  # as the workers or this process read them
        assert (run_dir / rows_kept).exists() and before["steps"][-1] == "level0/step0001"
        assert list(run_dir.glob("steps/level0/*.partial.npz")) or where == "between steps of the fit"
        monkeypatch.setattr(fitting, "dedup", lambda *a, **k: pytest.fail("the dedup ran again"))
    run(*args, "--out", run_dir)
    after = read_manifest(run_dir)
    assert after["status"] == "done" and after["dedup"] == read_manifest(tmp_path / "straight")["dedup"]
    np.testing.assert_array_equal(np.load(run_dir / "indices.npy"), np.load(tmp_path / "straight" / "indices.npy"))
    for t in range(2):
        np.testing.assert_array_equal(tree_of(run_dir).labels[t], tree_of(tmp_path / "straight").labels[t])
        np.testing.assert_array_equal(tree_of(run_dir).centroids[t], tree_of(tmp_path / "straight").centroids[t])
    left = sorted(p.name for p in run_dir.iterdir())
    assert not [n for n in left if n.startswith((".tmp-", "scratch-")) or n == "data.npy"], left


@pytest.mark.slow
def test_sigkill_during_the_fit_after_the_dedup_resumes_with_the_same_kept_rows(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(20_000, 16)).astype(np.float32)
    X[15_000:] = X[:5000] + 0.001 * rng.normal(size=(5000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    args = ["fit", tmp_path / "x.npy", "--n-clusters", "200,20", "--n-resamples", "6", "--dedup", 0.99]
    args += ["--checkpoint-interval", "0", "-q"]
    run(*args, "--out", tmp_path / "straight")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hkmeans", *map(str, args), "--out", str(run_dir)])

    def fitting():
        try:
            m = read_manifest(run_dir)
        except (OSError, ValueError):
            return False
        return "dedup" in m and len(m["steps"]) >= 1

    start = time.monotonic()
    while not fitting():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() - start < 120
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_manifest(run_dir)["status"] == "running"
    kept = np.load(run_dir / "dedup.npz")["kept"]
    run(*args, "--out", run_dir)
    np.testing.assert_array_equal(np.load(run_dir / "dedup.npz")["kept"], kept)
    for t in range(2):
        np.testing.assert_array_equal(tree_of(run_dir).labels[t], tree_of(tmp_path / "straight").labels[t])
        np.testing.assert_array_equal(tree_of(run_dir).centroids[t], tree_of(tmp_path / "straight").centroids[t])


def test_advise_with_dedup_sizes_the_levels_for_the_rows_kept(pool, tmp_path):
    import tomllib

    X, path = pool
    out = run("advise", path, "--target-size", 100, "--dedup", 0.99).stdout
    n_kept = len(hkmeans.dedup(X, 0.99, random_state=0).kept)
    assert out.startswith(f"# 600 points ({n_kept} after dedup), target 100")
    assert f"# dedup keeps {n_kept} of 600 points" in out
    config = tomllib.loads(out)
    assert {k: config[k] for k in ("dedup", "dedup_metric", "dedup_keep", "seed")} == {
        "dedup": 0.99,
        "dedup_metric": "cosine",
        "dedup_keep": "hard",
        "seed": 0,
    }
    assert (
        config["n_clusters"]
        == hkmeans.advise(n_kept, 100).params["n_clusters"]
        != (hkmeans.advise(600, 100).params["n_clusters"])
    )
    (tmp_path / "c.toml").write_text(out)
    run("curate", path, "--out", tmp_path / "run", "--config", tmp_path / "c.toml", "--target-size", 100, "-q")
    assert read_manifest(tmp_path / "run")["dedup"]["kept"] == n_kept
    assert len(np.load(tmp_path / "run" / "indices.npy")) == 100
    proc = run("advise", path, "--target-size", 100, "--dedup", 2, check=False)
    assert_error(proc, "--dedup: threshold must be in (0, 1]")
    proc = run("advise", path, "--target-size", 100, "--workers", 2, check=False)
    assert_error(proc, "--scheduler/--workers run the --dedup search; give --dedup T.")
    proc = run("advise", path, "--target-size", 100, "--dedup", 0.99, "--workers", 0, check=False)
    assert_error(proc, "--workers must be a positive integer, got 0.")
    searched = []  # a bad target is refused before the dedup's search
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(commands, "search_pool", lambda *a, **k: searched.append(1))
        assert_error(run("advise", path, "--target-size", 0, "--dedup", 0.99, check=False), "target_size must be")
    assert not searched


def test_advise_runs_its_dedup_on_dask_with_the_same_rows_kept(pool, tmp_path):
    pytest.importorskip("distributed")
    X, path = pool
    here = run("advise", path, "--target-size", 100, "--dedup", 0.99, "--no-cost").stdout
    assert run("advise", path, "--target-size", 100, "--dedup", 0.99, "--workers", 2, "--no-cost").stdout == here
