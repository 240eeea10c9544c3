"""The ``hkmeans`` command on generated ``.npy`` files: in this process, and as a
process of its own where a test needs one (kills, environment, start-up)."""

import contextlib
import functools
import importlib.util
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from hkmeans import ClusterTree, HierarchicalKMeans, dedup, hierarchical_sampling
from hkmeans._kernels import COMPILE_NOTICE
from hkmeans.cli.main import main
from hkmeans.datasets import RING_SIZES

from .in_process import run_in_process
from .sources import BAD_SOURCES, bad_source, write_parquet, write_source

# in-process runs read stderr (the compile notice would come first), and runs in
# processes of their own, killed on cue, must not spend their time compiling
pytestmark = pytest.mark.usefixtures("warm_kernels")

FIT = ["--n-clusters", "60,10", "--sample-size", "8,2", "--n-resamples", "3"]
API = dict(n_clusters=(60, 10), sample_size=(8, 2), n_resamples=3, max_iter=50, random_state=0)


def hkmeans(*args, check=True, **kwargs):
    """Run ``hkmeans ARGS`` in this process (``main`` with its output captured), or as
    ``python -m hkmeans ARGS`` when ``kwargs`` (``env``, ``cwd``) ask for a process of
    its own; returns what a CompletedProcess has: ``returncode``, ``stdout``, ``stderr``."""
    argv = [str(a) for a in args]
    if kwargs:
        proc = subprocess.run([sys.executable, "-m", "hkmeans", *argv], capture_output=True, text=True, **kwargs)
    else:
        proc = run_in_process(argv)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


def blobs(n=3000, d=8, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) + 4 * rng.integers(0, 6, size=(n, 1))).astype(dtype)


@pytest.fixture
def data(tmp_path):
    X = blobs()
    path = tmp_path / "x.npy"
    np.save(path, X)
    return X, path


def manifest(run):
    with open(run / "manifest.json") as f:
        return json.load(f)


def assert_nothing_broken(run, killed=False):
    """Every file under its own name is whole: the manifest reads, its steps and any
    saved k-means state load. Temporary files (``.tmp-*``) may stay only after a kill
    (a rerun removes them)."""
    if not run.exists():
        return
    for root, _, files in os.walk(run):
        if not killed:
            assert not [f for f in files if f.startswith(".tmp-")], root
        for f in files:
            if f.endswith(".npz") and not f.startswith(".tmp-"):
                with np.load(os.path.join(root, f)) as arrays:
                    assert all(arrays[name] is not None for name in arrays.files)
    if (run / "manifest.json").exists():
        for key in manifest(run)["steps"]:
            with np.load(run / "steps" / f"{key}.npz") as f:
                assert "centers" in f or "labels" in f


def assert_same_tree(a, b):
    ta, tb = ClusterTree.load(a / "tree.npz"), ClusterTree.load(b / "tree.npz")
    for t in range(ta.n_levels):
        np.testing.assert_array_equal(ta.labels[t], tb.labels[t])
        np.testing.assert_array_equal(ta.centroids[t], tb.centroids[t])
    np.testing.assert_array_equal(ta.distances, tb.distances)


def fitted_like_the_api(run, X, **params):
    model = HierarchicalKMeans(**{**API, **params}).fit(X)
    tree = ClusterTree.load(run / "tree.npz")
    for t, level in enumerate(model.levels_):
        np.testing.assert_array_equal(tree.labels[t], level.labels)
        np.testing.assert_array_equal(tree.centroids[t], level.centroids)
        np.testing.assert_array_equal(np.load(run / "centroids" / f"level{t}.npy"), level.centroids)
    return model


# the subcommands


def test_fit_float32_matches_the_python_api(data, tmp_path):
    X, path = data
    run = tmp_path / "run"
    proc = hkmeans("fit", path, "--out", run, *FIT)
    # no bars when stderr is not a terminal: time-stamped lines, one per step at least
    lines = proc.stderr.splitlines()
    assert all(PROGRESS.match(line) for line in lines), proc.stderr
    assert sum("step level" in line for line in lines) == 8 and "fit done" in lines[-1]
    fitted_like_the_api(run, X)
    m = manifest(run)
    assert m["status"] == "done" and m["input"]["shape"] == [3000, 8] and m["input"]["dtype"] == "<f4"
    assert m["params"]["n_clusters"] == [60, 10] and m["versions"]["numpy"] == np.__version__
    assert (run / "config.toml").read_text().startswith("n_clusters = [60, 10]\n")
    assert len(m["steps"]) == 8  # per level: a first k-means and 3 resampling steps


def test_fit_with_a_split_level_writes_its_parents(data, tmp_path):
    X, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, "--n-clusters", "60,10", "--n-resamples", "0,3", "--n-splits", "6,1")
    model = fitted_like_the_api(run, X, n_resamples=(0, 3), n_splits=(6, 1), sample_size=None)
    split = model.levels_[0]
    np.testing.assert_array_equal(np.load(run / "centroids" / "level0-parents.npy"), split.parents)
    np.testing.assert_array_equal(np.load(run / "centroids" / "level0-child-offsets.npy"), split.child_offsets)
    assert not (run / "centroids" / "level1-parents.npy").exists()


def test_fit_float16_reads_in_blocks_and_computes_in_float32(tmp_path):
    X16 = blobs(dtype=np.float16)
    np.save(tmp_path / "x16.npy", X16)
    hkmeans("fit", tmp_path / "x16.npy", "--out", tmp_path / "run", *FIT)
    model = fitted_like_the_api(tmp_path / "run", X16.astype(np.float32))
    assert model.levels_[0].centroids.dtype == np.float32
    assert not (tmp_path / "run" / "data.npy").exists()  # the cast copy is gone once done


@pytest.mark.parametrize("layout", ["int16", "big-endian", "fortran"])
def test_other_dtypes_and_layouts_go_through_a_c_ordered_copy(tmp_path, layout):
    X = np.round(blobs() * 100)
    stored = {
        "int16": X.astype(np.int16),
        "big-endian": X.astype(">f4"),
        "fortran": np.asfortranarray(X.astype(np.float32)),
    }[layout]
    np.save(tmp_path / "x.npy", stored)
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT)
    fitted_like_the_api(tmp_path / "run", X.astype(np.float32))
    assert not (tmp_path / "run" / "data.npy").exists()


@pytest.mark.parametrize("stored", [">f8", "<f8"])
def test_float64_rows_in_either_byte_order_are_fitted_and_deduplicated_in_float64(tmp_path, stored):
    # rows 1e8 apart from 0 by 1e-3 steps: float32 would merge them (big-endian float64
    # was taken for another dtype and computed in float32)
    X = blobs().astype(np.float64) * 1e-3 + 1e8
    np.save(tmp_path / "x.npy", X.astype(stored))
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT)
    model = fitted_like_the_api(tmp_path / "run", X)
    assert model.levels_[0].centroids.dtype == np.float64
    hkmeans("dedup", tmp_path / "x.npy", "--metric", "euclidean", "--threshold", "1e-6", "--out", tmp_path / "dd")
    assert len(np.load(tmp_path / "dd" / "kept.npy")) == len(dedup(X, 1e-6, metric="euclidean").kept)


@pytest.mark.parametrize("kind", ["shards glob", "parquet", "zarr"])
def test_shards_parquet_and_zarr_fit_like_one_npy(tmp_path, kind):
    pytest.importorskip("pyarrow")
    pytest.importorskip("zarr")
    X16 = blobs(dtype=np.float16)
    column = []
    if kind == "parquet":  # beside another list column: named with --column
        source = tmp_path / "x.parquet"
        write_parquet(source, X16, 700, tags=[[1, 2]] * len(X16))
        column = ["--column", "emb"]
    else:
        source, _ = write_source(kind, X16, tmp_path, sizes=(700, 1100))
    run = tmp_path / "run"
    hkmeans("fit", source, *column, "--out", run, *FIT)
    fitted_like_the_api(run, X16.astype(np.float32))
    assert manifest(run)["input"]["shape"] == [3000, 8] and manifest(run)["input"]["dtype"] == "<f2"
    assert not (run / "data.npy").exists()
    if kind == "zarr":  # a kill between the fit's end and its clean-up: the rerun removes the copy
        np.save(run / "data.npy", X16.astype(np.float32))
        hkmeans("fit", source, *column, "--out", run, *FIT)
        assert not (run / "data.npy").exists()


def test_subset_indices_fit_on_those_rows_and_sample_rows_of_the_pool(data, tmp_path):
    X, path = data
    rows = np.flatnonzero(np.random.default_rng(1).random(len(X)) < 0.7)
    np.save(tmp_path / "rows.npy", rows)
    run = tmp_path / "run"
    hkmeans("curate", path, "--subset-indices", tmp_path / "rows.npy", "--out", run, *FIT, "--target-size", 300)
    fitted_like_the_api(run, X[rows])
    picked = hierarchical_sampling(ClusterTree.load(run / "tree.npz"), 300, random_state=0)
    np.testing.assert_array_equal(np.load(run / "indices.npy"), rows[picked])
    assert manifest(run)["input"]["subset_indices"]["path"] == str(tmp_path / "rows.npy")
    err = hkmeans("fit", path, "--subset-indices", tmp_path / "rows.npy", "--out", run, *FIT, "-v").stderr
    assert "not read again" in err and "fit is already done" in err
    np.save(tmp_path / "rows.npy", rows[1:])  # other rows of the same pool: another input
    proc = hkmeans("fit", path, "--subset-indices", tmp_path / "rows.npy", "--out", run, *FIT, check=False)
    assert_error(proc, "other input")
    assert_error(hkmeans("sample", run, "--target-size", 5, check=False), "rows.npy: the subset indices changed")


def test_fit_cosine_matches_the_python_api(data, tmp_path):
    X, path = data
    hkmeans("fit", path, "--out", tmp_path / "run", *FIT, "--metric", "cosine")
    fitted_like_the_api(tmp_path / "run", X, metric="cosine")


def test_fit_read_only_file_and_float64(tmp_path):
    X = blobs(dtype=np.float64)
    path = tmp_path / "x.npy"
    np.save(path, X)
    os.chmod(path, 0o444)
    hkmeans("fit", path, "--out", tmp_path / "run", *FIT)
    fitted_like_the_api(tmp_path / "run", X)


def test_sample_matches_hierarchical_sampling_and_flat(data, tmp_path):
    X, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT)
    tree = ClusterTree.load(run / "tree.npz")
    hkmeans("sample", run, "--target-size", 500, "--strategy", "closest", "--seed", 3, "-o", tmp_path / "i.npy")
    np.testing.assert_array_equal(
        np.load(tmp_path / "i.npy"), hierarchical_sampling(tree, 500, "closest", random_state=3)
    )
    hkmeans("sample", run, "--target-size", 200, "--method", "flat")
    flat = np.load(run / "indices.npy")
    assert len(flat) == 200 and np.all(np.diff(flat) > 0)


def test_target_above_the_pool_is_a_warning(data, tmp_path):
    _, path = data
    proc = hkmeans("curate", path, "--out", tmp_path / "run", *FIT, "--target-size", 10_000, "--multiplier", 2)
    assert "warning: target size 10000 is above pool size x multiplier (3000 x 2); writing all 6000" in proc.stderr
    assert len(np.load(tmp_path / "run" / "indices.npy")) == 6000


def test_curate_equals_fit_then_sample(data, tmp_path):
    _, path = data
    hkmeans("curate", path, "--out", tmp_path / "a", *FIT, "--target-size", 300, "-o", tmp_path / "a.npy")
    hkmeans("fit", path, "--out", tmp_path / "b", *FIT)
    hkmeans("sample", tmp_path / "b", "--target-size", 300)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b" / "indices.npy"))
    assert not (tmp_path / "a" / "indices.npy").exists()
    # the run's own names, given with -o: their tables keep the run's names too
    for name in ("indices.npy", "indices-7.npy"):
        hkmeans("sample", tmp_path / "b", "--target-size", 300, "-o", tmp_path / "b" / name, "--force")
        np.testing.assert_array_equal(np.load(tmp_path / "b" / name), np.load(tmp_path / "a.npy"))
    if importlib.util.find_spec("pyarrow") is not None:
        assert {"selected.parquet", "selected-7.parquet"} <= {p.name for p in (tmp_path / "b").iterdir()}


def test_info_reports_levels_and_sizes(data, tmp_path):
    _, path = data
    hkmeans("fit", path, "--out", tmp_path / "run", *FIT)
    out = hkmeans("info", tmp_path / "run").stdout
    tree = ClusterTree.load(tmp_path / "run" / "tree.npz")
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in ("0", "1")]
    assert [int(r[1]) for r in rows] == [60, 10]
    assert [int(r[-1]) for r in rows] == [tree.sizes(0).max(), tree.sizes(1).max()]
    assert "done (8 steps done)" in out and "n_clusters=[60, 10]" in out


def test_config_file_flags_override_and_effective_config_is_saved(data, tmp_path):
    _, path = data
    cfg = tmp_path / "c.toml"
    cfg.write_text('n_clusters = [60, 10]\nsample_size = [8, 2]\nn_resamples = 1\nseed = 0\ndtype = "float32"\n')
    hkmeans("fit", path, "--out", tmp_path / "run", "--config", cfg, "--n-resamples", 3)
    m = manifest(tmp_path / "run")
    assert m["params"]["n_resamples"] == [3, 3] and m["params"]["dtype"] == "float32"
    hkmeans("fit", path, "--out", tmp_path / "ref", *FIT)
    assert_same_tree(tmp_path / "run", tmp_path / "ref")
    # the saved configuration reproduces the run
    hkmeans("fit", path, "--out", tmp_path / "again", "--config", tmp_path / "run" / "config.toml")
    assert_same_tree(tmp_path / "run", tmp_path / "again")


@pytest.mark.filterwarnings("ignore")
def test_demo_prints_counts_and_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    proc = hkmeans("demo", "--out", tmp_path / "demo")
    lines = proc.stdout.splitlines()
    assert re.fullmatch(
        r"dedup: 31700 rows \(2000 near copies planted\), 2000 removed \(6\.3%\), largest group \d+ rows, [\d.]+ s",
        lines[1],
    )
    assert lines[2].startswith("Five rings of")  # the dedup before the curation
    table = [line.split() for line in lines if line.split() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in table] == list(RING_SIZES)
    assert sum(int(r[1]) for r in table) == 1000 and sum(int(r[2]) for r in table) == 1000
    small = table[int(np.argmin(RING_SIZES))]
    assert int(small[1]) > 5 * int(small[2])  # the small ring, curated vs random
    png = (tmp_path / "demo" / "rings.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "demo" / "report.html").read_text()
    figures = re.findall(r"<figure id='([^']+)'>", page)
    assert figures == ["sizes-level-0", "sizes-level-1", "balance", "labels", "centroids"]
    # a later demo replaces its own plot and report; a user's report.html only with --force
    from hkmeans.cli.commands import _check_demo_folder

    _check_demo_folder(tmp_path / "demo", force=False)
    (tmp_path / "demo" / "report.html").write_text("edited since")  # the user's now
    assert_error(hkmeans("demo", "--out", tmp_path / "demo", check=False), "was not written by a demo")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.html").write_text("mine")
    assert_error(hkmeans("demo", "--out", mine, check=False), "was not written by a demo; give --force")
    assert [p.name for p in mine.iterdir()] == ["report.html"] and (mine / "report.html").read_text() == "mine"
    _check_demo_folder(mine, force=True)


def test_the_demo_dedup_removes_exactly_the_planted_copies():
    from hkmeans import demo

    copies = demo.dedup_rings(seed=0)
    n = sum(RING_SIZES)
    res = copies.result
    np.testing.assert_array_equal(res.kept, np.arange(n))  # the rings, as curated before
    np.testing.assert_array_equal(res.removed, np.arange(n, n + demo.COPIES))
    planted = copies.X[n:]
    np.testing.assert_array_less(np.abs(planted - copies.X[res.duplicate_of[n:]]), demo.JITTER * 1.01)
    assert (copies.ring[n:] == copies.ring[res.duplicate_of[n:]]).all()
    sizes = np.bincount(res.duplicate_of[n:])
    assert sizes.max() >= demo.COPIES // 10  # one row copied many times
    assert int(re.search(r"largest group (\d+) rows", copies.line()).group(1)) == sizes.max() + 1
    X, ring = copies.kept()
    np.testing.assert_array_equal(ring, np.repeat(np.arange(len(RING_SIZES)), RING_SIZES))


# resuming


def _wait_for(predicate, proc, timeout=120):
    start = time.monotonic()
    while not predicate():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() - start < timeout
        time.sleep(0.005)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["between steps", "inside a k-means run", "between steps on dask"])
def test_sigkill_then_rerun_gives_the_uninterrupted_result(tmp_path, where):
    on_dask = where.endswith("on dask")
    if on_dask:
        pytest.importorskip("distributed")
    # large enough that a step lasts a while (a Dask step does: its tasks' round trips)
    X = blobs(n=5_000 if on_dask else 20_000, d=16, seed=1)
    path = tmp_path / "x.npy"
    np.save(path, X)
    args = ["fit", path, "--n-clusters", "200,20", "--n-resamples", "6", "--checkpoint-interval", "0", "-q"]
    args += ["--workers", "2"] if on_dask else []
    hkmeans(*args, "--out", tmp_path / "straight")
    run = tmp_path / "run"
    temporary = tmp_path / "temporary"  # where a cluster hkmeans starts keeps its scratch folder
    temporary.mkdir()
    # its own session: the local cluster's worker processes are taken down with it
    proc = subprocess.Popen(
        [sys.executable, "-m", "hkmeans", *map(str, args), "--out", str(run)],
        start_new_session=True,
        env=dict(os.environ, DASK_TEMPORARY_DIRECTORY=str(temporary)),
    )

    def level0_steps():
        try:
            return [s for s in manifest(run)["steps"] if s.startswith("level0/")]
        except (OSError, ValueError):
            return []

    if where == "between steps":
        _wait_for(lambda: len(level0_steps()) >= 2, proc)
    else:
        _wait_for(lambda: len(level0_steps()) >= 1 and any(run.glob("steps/level0/*.partial.npz")), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if on_dask:
        os.killpg(proc.pid, signal.SIGKILL)
        assert manifest(run)["params"]["backend"] == "dask"
        assert list(run.glob("steps/level0/step*.chunks/labels-*.npy"))  # written per chunk, not in one file
        assert not list(run.glob("steps/level0/*.labels.npz"))
    left = list(temporary.glob("hkmeans-scratch-*"))  # the killed process could not remove its own
    assert len(left) == on_dask
    assert manifest(run)["status"] == "running" and len(level0_steps()) < 7  # stopped inside level 0
    assert_nothing_broken(run, killed=True)
    assert_error(hkmeans("sample", run, "--target-size", 10, check=False), "the fit has not finished")
    assert "status         running" in hkmeans("info", run).stdout
    config = contextlib.nullcontext()
    if on_dask:
        import dask

        config = dask.config.set({"temporary-directory": str(temporary)})
    with config:
        hkmeans(*args, "--out", run)
    assert not any(p.exists() for p in left)  # removed by the rerun's cluster
    assert_nothing_broken(run)
    assert manifest(run)["status"] == "done"
    assert_same_tree(run, tmp_path / "straight")
    assert not list(run.glob("steps/**/*.partial.npz"))


class Killed(BaseException):
    """Stands for SIGKILL: no handler of the command catches it."""


def _kill_after_write(monkeypatch, n):
    """Stop the command right after its ``n``-th file written whole (0: never); the
    returned list counts the writes."""
    import contextlib

    from hkmeans import io

    atomic_path, done = io.atomic_path, [0]

    @contextlib.contextmanager
    def counted(path, *args, **kwargs):
        with atomic_path(path, *args, **kwargs) as tmp:
            yield tmp
        done[0] += 1
        if done[0] == n:
            raise Killed(path)

    monkeypatch.setattr(io, "atomic_path", counted)
    return done


def test_a_kill_after_any_write_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Each file a curate writes is in turn the last before a kill: the rerun of the
    same command gives the uninterrupted tree and subset."""
    import gc

    np.save(tmp_path / "x.npy", blobs(n=600, seed=3))
    args = ("curate", tmp_path / "x.npy", "--n-clusters", "12,3", "--n-resamples", 1, "--target-size", 40, "-q")
    with monkeypatch.context() as m:
        writes = _kill_after_write(m, 0)
        hkmeans(*args, "--out", tmp_path / "straight")
    assert writes[0] >= 8
    for n in range(1, writes[0] + 1):
        run = tmp_path / f"run{n}"
        with monkeypatch.context() as m:
            _kill_after_write(m, n)
            with pytest.raises(Killed):
                hkmeans(*args, "--out", run)
        gc.collect()  # the killed command's run directory object: its lock is let go
        hkmeans(*args, "--out", run)
        assert manifest(run)["status"] == "done", n
        assert_same_tree(run, tmp_path / "straight")
        np.testing.assert_array_equal(np.load(run / "indices.npy"), np.load(tmp_path / "straight" / "indices.npy"))


def test_a_resume_missing_the_last_chunk_of_dask_labels_is_one_line(tmp_path):
    """A step's labels written chunk by chunk on Dask, the last file lost: refused,
    not read as a shorter array."""
    distributed = pytest.importorskip("distributed")
    np.save(tmp_path / "x.npy", blobs())
    run = tmp_path / "run"
    with distributed.LocalCluster(2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        args = ("fit", tmp_path / "x.npy", "--out", run, *FIT, "--scheduler", cluster.scheduler_address, "-q")
        hkmeans(*args)
        m = manifest(run)
        m["status"], m["steps"] = "running", [s for s in m["steps"] if s.startswith("level0/")]
        (run / "manifest.json").write_text(json.dumps(m))
        (chunks,) = run.glob("steps/level0/*.chunks")
        sorted(chunks.glob("labels-*.npy"))[-1].unlink()
        assert_error(hkmeans(*args, check=False), "damaged")


def test_dask_fit_reads_shards_as_one_npy_and_is_another_run_than_in_process(tmp_path):
    pytest.importorskip("distributed")
    X = blobs(n=6000, d=8, seed=2)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "shards").mkdir()
    for i, (a, b) in enumerate([(0, 1000), (1000, 4500), (4500, 6000)]):
        np.save(tmp_path / "shards" / f"s{i}.npy", X[a:b])
    for name, source in (("one", "x.npy"), ("shards", "shards")):
        hkmeans(
            "curate",
            tmp_path / source,
            "--out",
            tmp_path / f"run-{name}",
            *FIT,
            "--workers",
            "2",
            "--target-size",
            500,
            "-q",
        )
    one, shards = tmp_path / "run-one", tmp_path / "run-shards"
    assert_same_tree(one, shards)
    np.testing.assert_array_equal(np.load(one / "indices.npy"), np.load(shards / "indices.npy"))
    tree = ClusterTree.load(one / "tree.npz")
    assert tree.n_samples == 6000 and tree.n_clusters == (60, 10)
    # the run directory is tied to the backend: resuming it in process is refused
    assert_error(hkmeans("fit", tmp_path / "x.npy", "--out", one, *FIT, check=False), "backend='dask' there")


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "not both"),
        (["--workers", "0"], "workers must be a positive integer"),
        (["--scheduler", "tcp://127.0.0.1:1"], "cannot reach the Dask scheduler"),
        (["--workers", "2", "--n-splits", "2,1", "--n-resamples", "0"], "n_splits > 1 at level 0"),
    ],
)
def test_bad_dask_flags_are_one_line_before_anything_is_written(data, tmp_path, monkeypatch, flags, message):
    pytest.importorskip("distributed")
    from hkmeans.backends import dask

    # nothing listens there: a second is as good a wait as the default 10
    monkeypatch.setattr(dask, "connect", functools.partial(dask.connect, timeout=1))
    _, path = data
    assert_error(hkmeans("fit", path, "--out", tmp_path / "run", *FIT, *flags, check=False), message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "address, message", [("notanaddress", "missing port number"), ("foo://x:1", "unknown address scheme 'foo'")]
)
def test_a_malformed_scheduler_address_is_one_line(data, tmp_path, address, message):
    pytest.importorskip("distributed")
    _, path = data
    # in a process of its own: a client left half-made would print its traceback at exit
    proc = hkmeans("fit", path, "--out", tmp_path / "run", *FIT, "--scheduler", address, check=False, env=None)
    assert_error(proc, message)
    assert not (tmp_path / "run").exists()


def test_rerun_of_a_finished_fit_does_nothing_and_other_parameters_are_refused(data, tmp_path):
    X, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT)
    before = (run / "tree.npz").stat().st_mtime_ns
    err = hkmeans("fit", path, "--out", run, *FIT, "-v").stderr
    assert "not read again" in err and "fit is already done" in err
    assert (run / "tree.npz").stat().st_mtime_ns == before
    proc = hkmeans("fit", path, "--out", run, *FIT[2:], "--n-clusters", "50,10", check=False)
    assert proc.returncode == 2 and "other parameters (n_clusters=[60, 10] there, [50, 10] here)" in proc.stderr
    (tmp_path / "same.toml").write_text("n_clusters = [60, 10]\nsample_size = [8, 2]\nn_resamples = [3, 3]\n")
    hkmeans("fit", path, "--out", run, "--config", tmp_path / "same.toml")  # the same run, spelt otherwise
    np.save(tmp_path / "y.npy", X[::-1])
    proc = hkmeans("fit", tmp_path / "y.npy", "--out", run, *FIT, check=False)
    assert proc.returncode == 2 and "other input" in proc.stderr and "--overwrite" in proc.stderr
    assert (run / "tree.npz").stat().st_mtime_ns == before  # nothing touched
    changed = np.load(path)
    changed[7, 3] += 1
    np.save(path, changed)  # same file and shape, other bytes: read again, refused
    proc = hkmeans("fit", path, "--out", run, *FIT, check=False)
    assert proc.returncode == 2 and "other input" in proc.stderr
    hkmeans("fit", tmp_path / "y.npy", "--out", run, *FIT, "--overwrite")
    assert manifest(run)["input"]["path"].endswith("y.npy")


# errors: one line, exit status 2, nothing half-written


PROGRESS = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")  # a progress line, without a terminal


def assert_error(proc, *fragments):
    """Exit 2 with one line of error (besides progress lines and the notice of a first
    compile, which a Dask worker of an empty kernel cache prints too)."""
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if not PROGRESS.match(line) and line != COMPILE_NOTICE]
    assert len(lines) == 1 and lines[0].startswith("hkmeans: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def bad_file(tmp_path, kind):
    path = tmp_path / "bad.npy"
    if kind == "missing":
        return tmp_path / "missing.npy"
    if kind == "not npy":
        path.write_text("not an array")
    elif kind == "damaged npz":  # an archive cut short, as a copy that stopped
        np.savez(tmp_path / "x.npz", blobs())
        path.write_bytes((tmp_path / "x.npz").read_bytes()[:200])
    elif kind == "3-D":
        np.save(path, np.zeros((4, 3, 2), np.float32))
    elif kind == "1-D":
        np.save(path, np.zeros(10, np.float32))
    elif kind == "strings":
        np.save(path, np.array([["a", "b"]]))
    elif kind == "nan":
        X = blobs()
        X[5, 2], X[17, 0], X[2999, 7] = np.nan, np.inf, -np.inf
        np.save(path, X)
    elif kind == "overflows float32":
        X = blobs(dtype=np.float64)
        X[42, 1] = 1e300
        np.save(path, X)
    elif kind == "squares overflow float64":
        X = blobs(dtype=np.float64)
        X[42, 1] = -1e200
        np.save(path, X)
    elif kind == "few points":
        np.save(path, blobs(n=40))
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "no such file"),
        ("not npy", "not a .npy file (numpy.save writes one)"),
        ("damaged npz", "bad.npy: a damaged .npz archive, not a .npy array"),
        ("3-D", "expected 2-D"),
        ("1-D", "expected 2-D"),
        ("strings", "not numeric"),
        ("nan", "3 row(s) hold NaN or infinity (as float32); the first is row 5"),
        ("squares overflow float64", "X has values up to 1e+200 in absolute value: squared distances of such rows"),
        ("few points", "n_samples=40 should be >= n_clusters=60"),
    ],
)
def test_bad_input(tmp_path, kind, message):
    proc = hkmeans("fit", bad_file(tmp_path, kind), "--out", tmp_path / "run", *FIT, check=False)
    assert_error(proc, message)
    assert not (tmp_path / "run").exists()


def run_main(*args):
    """``hkmeans ARGS`` in this process (the same ``main`` as the command, without
    the start-up of a subprocess); returns its exit status and stderr."""
    err = __import__("io").StringIO()
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setattr(sys, "stderr", err)
        status = main(list(map(str, args)))
    return SimpleNamespace(returncode=status, stderr=err.getvalue())


@pytest.mark.parametrize("case", BAD_SOURCES)
def test_bad_sources(tmp_path, case):
    pytest.importorskip("pyarrow")
    source, column = bad_source(tmp_path, case)
    flags = [] if column is None else ["--column", column]
    assert_error(run_main("fit", source, *flags, "--out", tmp_path / "run", "--n-clusters", 3), BAD_SOURCES[case])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "rows, message",
    [([5, 3000], "out of range for a pool of 3000 rows"), ([5, 4], "not sorted"), ([5, 5], "listed twice")],
)
def test_bad_subset_indices(data, tmp_path, rows, message):
    _, path = data
    np.save(tmp_path / "rows.npy", np.array(rows))
    proc = run_main("fit", path, "--subset-indices", tmp_path / "rows.npy", "--out", tmp_path / "run", *FIT)
    assert_error(proc, "rows.npy: ", message)
    assert not (tmp_path / "run").exists()


def test_a_row_of_mixed_length_in_parquet_is_found_before_anything_is_written(tmp_path):
    pytest.importorskip("pyarrow")
    source, _ = bad_source(tmp_path, "mixed lengths")
    assert_error(
        hkmeans("curate", source, "--out", tmp_path / "run", "--n-clusters", 3, "--target-size", 5, check=False),
        BAD_SOURCES["mixed lengths"],
    )
    assert not (tmp_path / "run").exists()


def test_values_that_overflow_the_compute_dtype(tmp_path):
    path = bad_file(tmp_path, "overflows float32")
    proc = hkmeans("fit", path, "--out", tmp_path / "run", *FIT, "--dtype", "float32", check=False)
    assert_error(proc, "1 row(s) hold NaN or infinity (as float32); the first is row 42")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes regardless of permissions")
def test_unreadable_file_and_unwritable_run_dir(data, tmp_path):
    _, path = data
    os.chmod(path, 0)
    assert_error(hkmeans("fit", path, "--out", tmp_path / "run", *FIT, check=False), "permission denied")
    os.chmod(path, 0o644)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert_error(hkmeans("fit", path, "--out", locked / "run", *FIT, check=False), "cannot create")
    assert_error(hkmeans("fit", path, "--out", locked, *FIT, check=False), "not writable")


def test_run_dir_that_cannot_be_made(data, tmp_path):
    _, path = data
    (tmp_path / "file").write_text("")
    assert_error(hkmeans("fit", path, "--out", tmp_path / "file" / "run", *FIT, check=False), "cannot create")
    assert_error(hkmeans("fit", path, "--out", tmp_path / "file", *FIT, check=False), "not a directory")
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert_error(hkmeans("fit", path, "--out", other, *FIT, "--overwrite", check=False), "not an hkmeans run directory")
    assert (other / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "text, message",
    [
        ("n_clusters = [60, 10]\nn_cluster = 5\n", "unknown key 'n_cluster'"),
        ('n_clusters = [60, 10]\nmax_iter = "many"\n', "max_iter must be a positive integer, got 'many'"),
        ("n_clusters = [60, 10]\nn_resamples = true\n", "n_resamples must be a non-negative integer or one per level"),
        ("n_clusters = [60, 10]\ntol = inf\n", "tol must be a finite non-negative number, got inf"),
        ("n_clusters = [60, 10]\ncheckpoint_interval = -1\n", "checkpoint_interval must be a finite non-negative"),
        ("n_clusters = [60, 10]\ncheckpoint_interval = nan\n", "checkpoint_interval must be a finite non-negative"),
        ("n_clusters = [60, 10]\nseed = -1\n", "seed must be a non-negative integer, got -1"),
        ('n_clusters = [60, 10]\nresample_strategy = "far"\n', "resample_strategy must be one of 'closest', 'random'"),
        ("n_clusters = [60, 10\n", "not valid TOML"),
        ("# caf\xe9\nn_clusters = [60, 10]\n", "c.toml: not a UTF-8 text file"),
        (
            "n_clusters = [60, 10]\nn_resamples = -1\n",
            "n_resamples must be a non-negative integer or one per level, got -1",
        ),
    ],
)
def test_bad_config(data, tmp_path, text, message):
    _, path = data
    (tmp_path / "c.toml").write_text(text, encoding="latin-1")
    proc = hkmeans("fit", path, "--out", tmp_path / "run", "--config", tmp_path / "c.toml", check=False)
    assert_error(proc, message)
    assert not (tmp_path / "run").exists()


def test_bad_flags_and_missing_parameters(data, tmp_path):
    _, path = data
    assert_error(hkmeans("fit", path, "--out", tmp_path / "r", check=False), "n_clusters is required")
    assert_error(hkmeans("fit", path, "--out", tmp_path / "r", "--n-clusters", "6o", check=False), "expected integers")
    assert_error(hkmeans("curate", path, "--out", tmp_path / "r", *FIT, check=False), "target_size is required")
    assert_error(
        hkmeans("curate", path, "--out", tmp_path / "r", *FIT, "--target-size", -5, check=False), "target_size must be"
    )
    assert_error(
        hkmeans("curate", path, "--out", tmp_path / "r", *FIT, "--target-size", 5, "--multiplier", 0, check=False),
        "multiplier must be an integer from 1",
    )
    for big in (2**63 - 1, 2**62 + 1, 99999999999999999999):
        proc = hkmeans(
            "curate", path, "--out", tmp_path / "r", *FIT, "--target-size", 5, "--multiplier", big, check=False
        )
        assert_error(proc, "--multiplier: multiplier must be an integer from 1 to 4611686018427387904")
    assert_error(
        hkmeans("fit", path, "--out", tmp_path / "r", *FIT, "--seed", -1, check=False),
        "--seed: seed must be a non-negative integer, got -1",
    )
    assert_error(hkmeans("sample", tmp_path / "r", "--target-size", 5, check=False), "not an hkmeans run directory")
    assert_error(hkmeans(check=False), "required: COMMAND")
    assert not (tmp_path / "r").exists()


def test_disk_full_keeps_finished_steps_and_the_rerun_completes(data, tmp_path):
    _, path = data
    hkmeans("fit", path, "--out", tmp_path / "straight", *FIT)
    step_bytes = max(
        f.stat().st_size for f in (tmp_path / "straight").rglob("*") if f.is_file() and f.name != "tree.npz"
    )
    tree_bytes = (tmp_path / "straight" / "tree.npz").stat().st_size
    assert tree_bytes > step_bytes  # so a file-size limit between them fails only the tree

    def limit_file_size():  # writes past the limit fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ((step_bytes + tree_bytes) // 2,) * 2)

    run = tmp_path / "run"
    proc = hkmeans("fit", path, "--out", run, *FIT, check=False, preexec_fn=limit_file_size)
    assert_error(proc, "cannot write", "rerun the same command to resume")
    assert_nothing_broken(run)
    assert not (run / "tree.npz").exists() and manifest(run)["status"] == "running"
    assert len(manifest(run)["steps"]) == 8  # every step kept
    hkmeans("fit", path, "--out", run, *FIT)
    assert_same_tree(run, tmp_path / "straight")


def test_verbose_logs_with_timestamps_and_quiet_is_silent(data, tmp_path):
    _, path = data
    err = hkmeans("fit", path, "--out", tmp_path / "v", *FIT, "-v").stderr
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert re.search(f"{stamp}level 0: 3000 -> 60 clusters", err)
    assert re.search(f"{stamp}step level1/step0003 done\n", err)
    assert "levels: 100%" in err  # bars too, even when stderr is not a terminal
    assert hkmeans("fit", path, "--out", tmp_path / "q", *FIT, "-q").stderr == ""


@pytest.mark.slow
def test_a_run_dir_in_use_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", blobs(n=40_000, d=32, seed=1))
    args = ["fit", tmp_path / "x.npy", "--out", tmp_path / "run", "--n-clusters", "300,30", "-q"]
    proc = subprocess.Popen([sys.executable, "-m", "hkmeans", *map(str, args)])
    _wait_for(lambda: (tmp_path / "run" / "manifest.json").exists(), proc)
    try:
        assert_error(hkmeans(*args, check=False), "in use by another hkmeans process")
    finally:
        proc.kill()
        proc.wait()
    assert_nothing_broken(tmp_path / "run", killed=True)


def test_help_gives_defaults_a_line_per_option_and_examples():
    for command in ("fit", "sample", "curate"):
        text = hkmeans(command, "--help").stdout
        options = re.findall(r"^  (-[-\w, ]+?)(?:\s[A-Z{]|\n|\s\s)", text, re.M)
        assert len(options) > 5
        blocks = re.split(r"\n  (?=-)", text.split("options:")[1].split("examples:")[0])
        assert all(len(b.split()) > 2 for b in blocks[1:]), blocks  # every option described
        assert "examples:" in text and text.count(f"hkmeans {command} ") >= 2
    text = hkmeans("curate", "--help").stdout
    assert "(default: 10)" in text and "(default: k-means++)" in text and "(default: 60.0)" in text
    assert re.search(r"--n-clusters.*\n.*required", text) and re.search(
        r"--target-size N\s+points to pick \(required", text
    )


# run directories and outputs: nothing of the user's is ever lost


def test_overwrite_touches_only_a_run_directory_and_only_what_hkmeans_wrote(data, tmp_path):
    X, path = data
    foreign = tmp_path / "v"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"app": "x"}')
    (foreign / "notes.txt").write_text("keep")
    np.save(foreign / "emb.npy", X)
    for extra in ([], ["--overwrite"]):
        proc = hkmeans("curate", foreign / "emb.npy", "--out", foreign, *FIT, "--target-size", 5, *extra, check=False)
        assert_error(proc, "not an hkmeans run directory", "not written by hkmeans")
        assert sorted(p.name for p in foreign.iterdir()) == ["emb.npy", "manifest.json", "notes.txt"]
    run = tmp_path / "run"
    hkmeans("curate", path, "--out", run, *FIT, "--target-size", 5)
    assert manifest(run)["tool"] == "hkmeans"
    np.save(run / "emb.npy", X)  # the user's files, put in the run directory afterwards
    (run / "notes.txt").write_text("keep")
    hkmeans("curate", run / "emb.npy", "--out", run, *FIT[:-1], "2", "--target-size", 5, "--overwrite")
    assert (run / "notes.txt").read_text() == "keep"
    np.testing.assert_array_equal(np.load(run / "emb.npy"), X)
    assert manifest(run)["params"]["n_resamples"] == [2, 2]
    # an input named as a file hkmeans writes in the run directory is refused
    np.save(run / "data.npy", X)
    proc = hkmeans("fit", run / "data.npy", "--out", run, *FIT, "--overwrite", check=False)
    assert_error(proc, "inside the run directory under a name hkmeans writes there")
    np.testing.assert_array_equal(np.load(run / "data.npy"), X)
    # so are ids and subset indices under such names (a resume or --overwrite would delete them)
    ids = np.array([f"img{i:05d}" for i in range(len(X))])
    for name in ("ids.npy", "indices.npy", "scratch-ids.npy"):
        np.save(run / name, ids)
        for extra in ([], ["--overwrite"]):
            proc = hkmeans("fit", path, "--out", run, *FIT, "--ids", run / name, *extra, check=False)
            assert_error(proc, "inside the run directory under a name hkmeans writes there")
            np.testing.assert_array_equal(np.load(run / name), ids)
    np.save(run / "indices.npy", np.arange(0, len(X), 2))
    proc = hkmeans("fit", path, "--out", run, *FIT, "--subset-indices", run / "indices.npy", check=False)
    assert_error(proc, "inside the run directory under a name hkmeans writes there")
    np.save(run / "ids.npy", ids)  # another run's ids, read by a run elsewhere: fine
    hkmeans("fit", path, "--out", tmp_path / "elsewhere", *FIT, "--ids", run / "ids.npy", "-q")


def test_overwrite_starts_over_from_a_damaged_manifest_and_deletes_it_last(data, tmp_path, monkeypatch):
    from hkmeans.cli import run_layout

    _, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT)
    _edit_manifest(run, steps="none")
    assert_error(hkmeans("fit", path, "--out", run, *FIT, check=False), "damaged", "use --overwrite")
    removed = []
    remove = run_layout._remove
    monkeypatch.setattr(run_layout, "_remove", lambda full: removed.append(os.path.basename(full)) or remove(full))
    hkmeans("fit", path, "--out", run, *FIT, "--overwrite")
    assert removed[-1] == "manifest.json" and {"tree.npz", "steps"} <= set(removed)  # killed midway: still a run
    assert manifest(run)["status"] == "done"


def test_a_resume_without_its_labels_is_one_line_and_a_damaged_saved_state_starts_over(data, tmp_path):
    _, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT)
    done = ClusterTree.load(run / "tree.npz")

    def stopped_after_level0():  # as a kill after the last step of level 0 leaves it
        m = manifest(run)
        _edit_manifest(run, status="running", steps=[s for s in m["steps"] if s.startswith("level0/")])
        (run / "tree.npz").unlink(missing_ok=True)

    stopped_after_level0()
    newest = run / "steps" / "level0" / "step0003.labels.npz"
    data_labels = newest.read_bytes()
    newest.unlink()  # copied in part
    assert_error(hkmeans("fit", path, "--out", run, *FIT, check=False), "step0003.labels.npz: missing")
    newest.write_bytes(data_labels)
    (run / "steps" / "level1").mkdir(exist_ok=True)
    (run / "steps" / "level1" / "step0000.partial.npz").write_bytes(b"not a saved state")
    proc = hkmeans("fit", path, "--out", run, *FIT)
    assert "step0000.partial.npz: damaged; its k-means starts over" in proc.stderr
    for t in range(2):
        np.testing.assert_array_equal(ClusterTree.load(run / "tree.npz").labels[t], done.labels[t])


def test_out_of_memory_is_one_line(data, tmp_path, monkeypatch):
    from hkmeans.cli import commands

    _, path = data
    hkmeans("fit", path, "--out", tmp_path / "run", *FIT)

    def too_large(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(commands, "hierarchical_sampling", too_large)
    assert_error(hkmeans("sample", tmp_path / "run", "--target-size", 10, check=False), "out of memory")


def test_a_path_that_is_not_utf8_is_refused_before_the_run_directory_is_made(data, tmp_path):
    _, path = data
    subset = tmp_path / os.fsdecode(b"rows\xff.npy")
    np.save(subset, np.arange(0, 3000, 2))
    proc = hkmeans("fit", path, "--out", tmp_path / "run", *FIT, "--subset-indices", subset, check=False)
    assert_error(proc, "not valid UTF-8")
    assert not (tmp_path / "run").exists()


def test_a_rerun_with_other_ids_is_refused_and_a_touched_input_is_read_once(data, tmp_path):
    X, path = data
    run = tmp_path / "run"
    np.save(tmp_path / "ids.npy", np.arange(len(X)) + 100)
    np.save(tmp_path / "other.npy", np.arange(len(X)) + 200)
    hkmeans("fit", path, "--out", run, *FIT, "--ids", tmp_path / "ids.npy")
    proc = hkmeans("fit", path, "--out", run, *FIT, "--ids", tmp_path / "other.npy", check=False)
    assert_error(proc, "holds a run with other ids")
    np.testing.assert_array_equal(np.load(run / "ids.npy"), np.arange(len(X)) + 100)
    os.utime(path, ns=(10**18, 10**18))  # the same bytes, a new time: read once more, then known
    hkmeans("fit", path, "--out", run, *FIT, "--ids", tmp_path / "ids.npy")
    assert manifest(run)["input"]["stat"]["mtime_ns"] == 10**18


def test_an_output_the_input_folder_or_glob_would_take_in_is_refused(data, tmp_path):
    X, _ = data
    (tmp_path / "shards").mkdir()
    np.save(tmp_path / "shards" / "a.npy", X[:1500])
    np.save(tmp_path / "shards" / "b.npy", X[1500:])
    for source in (tmp_path / "shards", str(tmp_path / "shards" / "*.npy")):
        out = tmp_path / "shards" / "subset.npy"
        proc = hkmeans("curate", source, "--out", tmp_path / "run", *FIT, "--target-size", 5, "-o", out, check=False)
        assert_error(proc, "would read it as one of its files")
        assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["a.npy", "b.npy"]
    hkmeans("curate", tmp_path / "shards", "--out", tmp_path / "run", *FIT, "--target-size", 5)
    hkmeans("report", tmp_path / "run", "-o", tmp_path / "shards" / "report.html")  # not an input file
    # a folder below the input's is not read, nor matched by its glob: a run there is fine
    for name, source in (("run", tmp_path / "shards"), ("run2.npy", str(tmp_path / "shards" / "*.npy"))):
        run = tmp_path / "shards" / name
        hkmeans("curate", source, "--out", run, *FIT, "--target-size", 5, "-q")
        hkmeans("curate", source, "--out", run, *FIT, "--target-size", 5, "-q")  # the input unchanged
        hkmeans("report", run)
        assert (run / "indices.npy").is_file() and (run / "report.html").is_file()


def test_a_run_or_tables_inside_a_zarr_store_are_refused(data, tmp_path):
    pytest.importorskip("zarr")
    X, _ = data
    store, _ = write_source("zarr", X, tmp_path, sizes=(700,))
    proc = hkmeans("fit", store, "--out", os.path.join(store, "run"), *FIT, check=False)
    assert_error(proc, "would read it as one of its files")
    assert not os.path.exists(os.path.join(store, "run"))
    hkmeans("fit", store, "--out", tmp_path / "run", *FIT, "-q")
    proc = hkmeans("export", tmp_path / "run", "--out", os.path.join(store, "tables"), check=False)
    assert_error(proc, "would read it as one of its files")
    assert not os.path.exists(os.path.join(store, "tables"))


def test_an_input_folder_named_like_a_glob_is_a_folder(tmp_path):
    from hkmeans.cli.outputs import _taken_in

    (tmp_path / "br[1]").mkdir()
    assert _taken_in(tmp_path / "br[1]" / "x.npy", str(tmp_path / "br[1]"))
    assert not _taken_in(tmp_path / "br[1]" / "sub" / "x.npy", str(tmp_path / "br[1]"))


def test_no_output_goes_into_a_zarr_store(data, tmp_path):
    zarr = pytest.importorskip("zarr")
    X, _ = data
    store = zarr.create_array(str(tmp_path / "z.zarr"), shape=X.shape, chunks=(700, X.shape[1]), dtype="f4")
    store[:] = X
    hkmeans("curate", tmp_path / "z.zarr", "--out", tmp_path / "run", *FIT, "--target-size", 5, "-q")
    before = sorted(str(p) for p in (tmp_path / "z.zarr").rglob("*"))
    for out in ("c/s.npy", "report.html"):
        proc = hkmeans("sample", tmp_path / "run", "--target-size", 5, "-o", tmp_path / "z.zarr" / out, check=False)
        assert_error(proc, "would read it as one of its files")
    assert sorted(str(p) for p in (tmp_path / "z.zarr").rglob("*")) == before


def test_output_never_replaces_the_input_a_run_file_or_a_non_regular_file(data, tmp_path):
    X, path = data
    run = tmp_path / "run"
    hkmeans("curate", path, "--out", run, *FIT, "--target-size", 5)
    os.symlink(tmp_path / "target.npy", tmp_path / "link.npy")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    cases = [
        (path, "is the input embeddings file"),
        (run / "tree.npz", "that this command does not write"),
        (run / "manifest.json", "that this command does not write"),
        (run / "steps" / "x.npy", "that this command does not write"),
        (tmp_path / "link.npy", "is a symbolic link"),
        (tmp_path / "fifo", "not a regular file"),
        (tmp_path / "dir", "not a regular file"),
        ("/dev/null", "not a regular file"),
    ]
    before = {p: p.read_bytes() for p in (path, run / "tree.npz", run / "manifest.json")}
    for out, message in cases:
        assert_error(hkmeans("sample", run, "--target-size", 5, "-o", out, check=False), message)
    assert_error(
        hkmeans("curate", path, "--out", run, *FIT, "--target-size", 5, "-o", path, check=False),
        "is the input embeddings file",
    )
    new_run = tmp_path / "new"
    assert_error(
        hkmeans("curate", path, "--out", new_run, *FIT, "--target-size", 5, "-o", new_run / "tree.npz", check=False),
        "that this command does not write",
    )
    assert not new_run.exists()
    assert all(p.read_bytes() == b for p, b in before.items())
    assert not (tmp_path / "target.npy").exists() and os.path.islink(tmp_path / "link.npy")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_output_files_follow_the_umask(data, tmp_path):
    _, path = data
    run = tmp_path / "run"

    def umask(mask):
        return lambda: os.umask(mask)

    hkmeans("curate", path, "--out", run, *FIT, "--target-size", 5, preexec_fn=umask(0o022))
    for name in ("indices.npy", "tree.npz", "manifest.json", "config.toml", "centroids/level0.npy"):
        assert (run / name).stat().st_mode & 0o777 == 0o644, name
    hkmeans("sample", run, "--target-size", 5, "-o", tmp_path / "s.npy", preexec_fn=umask(0o077))
    assert (tmp_path / "s.npy").stat().st_mode & 0o777 == 0o600


def test_huge_multipliers_and_targets_give_the_right_indices(data, tmp_path):
    _, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT)
    for multiplier in (2**62, 4611686018427387904 // 3):
        hkmeans("sample", run, "--target-size", 50, "--multiplier", multiplier, "-o", tmp_path / "s.npy", "--force")
        idx = np.load(tmp_path / "s.npy")
        assert len(idx) == 50 and idx.min() >= 0 and idx.max() < 3000
    proc = hkmeans(
        "sample", run, "--target-size", 2**62, "--multiplier", 1, "-o", tmp_path / "s.npy", "--force", check=False
    )
    assert proc.returncode == 0 and "writing all 3000" in proc.stderr
    assert np.array_equal(np.load(tmp_path / "s.npy"), np.arange(3000))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run: (run / "manifest.json").write_text("[1, 2]"), "not written by hkmeans"),
        (
            lambda run: (run / "manifest.json").write_text('{"tool": "hkmeans", "format": 1}'),
            "damaged (missing or malformed: input",
        ),
        (
            lambda run: (run / "tree.npz").write_bytes((run / "tree.npz").read_bytes()[:100]),
            "not a readable ClusterTree file",
        ),
        (lambda run: _set_n_levels(run / "tree.npz", 5), "not a readable ClusterTree file (missing 'labels_2"),
        (lambda run: _set_n_levels(run / "tree.npz", 1), "holds more levels than its n_levels"),
        (lambda run: _edit_manifest(run, input=dict(manifest(run)["input"], shape=[3000])), "input.shape"),
        (lambda run: _edit_manifest(run, ids={"n": 3000}), "malformed: ids"),
        (lambda run: _edit_manifest(run, ids={"dtype": "str"}), "malformed: ids"),
        (lambda run: _edit_manifest(run, dedup={}), "malformed: dedup"),
        (lambda run: _edit_manifest(run, created=5), "malformed: created"),
    ],
    ids=["list", "keys", "truncated", "more levels", "fewer levels", "shape", "ids", "ids dtype", "dedup", "created"],
)
def test_a_damaged_run_directory_is_one_line_and_exit_2(data, tmp_path, damage, message):
    _, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT)
    damage(run)
    for command in ("sample", "info", "report", "export"):
        args = ("--target-size", 5) if command == "sample" else ()
        assert_error(hkmeans(command, run, *args, check=False), message)
    assert not (run / "indices.npy").exists() and not (run / "report.html").exists()


def _edit_manifest(run, **fields):
    (run / "manifest.json").write_text(json.dumps({**manifest(run), **fields}))


def _set_n_levels(file, n_levels):
    with np.load(file) as f:
        arrays = dict(f)
    arrays["n_levels"] = np.array(n_levels)
    np.savez(file, **arrays)


def test_a_damaged_step_file_is_one_line_and_exit_2(data, tmp_path):
    _, path = data
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT[:-1], "1", "-q")
    m = manifest(run)
    m["status"] = "running"
    (run / "manifest.json").write_text(json.dumps(m))
    step = run / "steps" / "level1" / "step0001.npz"
    step.write_bytes(step.read_bytes()[:50])
    assert_error(hkmeans("fit", path, "--out", run, *FIT[:-1], "1", check=False), "step0001.npz: damaged")


def test_import_falls_back_to_a_temporary_kernel_cache(tmp_path):
    """With neither the package folder nor the home folder writable (here: made
    impossible by files where the folders would go, as root writes anywhere)."""
    import shutil

    import hkmeans

    copy = tmp_path / "site" / "hkmeans"
    shutil.copytree(os.path.dirname(hkmeans.__file__), copy, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in (copy, copy / "_kernels", copy / "cli"):
        (folder / "__pycache__").write_text("")
    (tmp_path / "home").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_CACHE_HOME=str(tmp_path / "home" / "cache"),
        TMPDIR=str(tmp_path),
        PYTHONPATH=str(tmp_path / "site"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    code = "import hkmeans, numba; print(numba.config.CACHE_DIR); hkmeans.ClusterTree([[0, 1, 1]]).sizes(0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(tmp_path / "hkmeans-numba-cache-"))
    assert "compiled kernels are cached in" in proc.stderr


def test_docs_list_every_key_with_its_default():
    import pathlib
    import tomllib

    from hkmeans.cli.config import KEYS

    text = (pathlib.Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    example = tomllib.loads(text.split("```toml\n")[1].split("```")[0])
    assert set(example) == set(KEYS)
    for key, spec in KEYS.items():
        if spec.default is not None:
            assert example[key] == spec.default, key


def test_device_cuda_without_a_gpu_is_one_line_before_anything_is_written(data, tmp_path):
    from hkmeans.backends.cuda import check_available

    try:
        check_available()
    except RuntimeError as e:
        reason = str(e)
    else:
        pytest.skip("a GPU is visible: the fit would run")
    _, path = data
    proc = hkmeans("fit", path, "--out", tmp_path / "run", *FIT, "--device", "cuda", check=False)
    assert proc.returncode == 2 and proc.stderr == f"hkmeans: error: --device: {reason}\n"
    assert not (tmp_path / "run").exists()
    if importlib.util.find_spec("dask_cuda") is None:  # a local GPU cluster needs dask-cuda: one line too
        proc = hkmeans("fit", path, "--out", tmp_path / "run", *FIT, "--device", "cuda", "--workers", 2, check=False)
        assert_error(proc, "hkmeans[dask-cuda]")
        assert not (tmp_path / "run").exists()
