"""What a hostile or careless run directory, output path or input cannot make hkmeans
do: delete or write outside the run, replace a file a run reads, run another user's
code, or answer with a traceback."""

import errno
import json
import os
import shutil
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from hkmeans import ClusterTree
from hkmeans._kernels import fallback_cache_dir
from hkmeans.cli.rundir import RunDir
from hkmeans.ids import check_ids, decode, encode
from hkmeans.io import save_npy
from hkmeans.tables import assignments, cluster_table

from .test_cli import FIT, PROGRESS, assert_error, blobs, hkmeans, manifest


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A finished run with a curated subset, copied afresh for each test."""
    tmp = tmp_path_factory.mktemp("fitted")
    np.save(tmp / "x.npy", blobs())
    hkmeans("curate", tmp / "x.npy", "--out", tmp / "run", *FIT, "--target-size", 300, "-q")
    return tmp


def copied_run(fitted, tmp_path):
    """A copy of the run ``fitted/run`` and its input ``fitted/x.npy`` in ``tmp_path``,
    its manifest naming the copied input."""
    shutil.copy(fitted / "x.npy", tmp_path / "x.npy")
    shutil.copytree(fitted / "run", tmp_path / "run")
    m = manifest(tmp_path / "run")
    m["input"]["path"] = str(tmp_path / "x.npy")
    m["input"]["stat"] = {**m["input"]["stat"], **_stat(tmp_path / "x.npy")}
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(m))
    return tmp_path / "run"


@pytest.fixture
def run(fitted, tmp_path):
    return copied_run(fitted, tmp_path)


def _stat(path):
    st = os.stat(path)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _resume(run, *extra):
    return hkmeans("fit", run.parent / "x.npy", "--out", run, *FIT, *extra, check=False)


def _unfinished(run):
    """The run as a kill after its level 0 leaves it: status running, level 1 to do."""
    m = manifest(run)
    m["status"], m["steps"] = "running", [s for s in m["steps"] if s.startswith("level0/")]
    return m


# 1. no path out of a run directory


def test_a_step_key_leading_out_of_the_run_deletes_nothing(run, tmp_path):
    victim = tmp_path / "V"
    (victim / "x.chunks").mkdir(parents=True)
    (victim / "x.chunks" / "keep.npy").write_bytes(b"precious")
    (victim / "x.labels.npz").write_bytes(b"precious")
    m = _unfinished(run)
    m["steps"].append("level0/../../../V/x")
    (run / "manifest.json").write_text(json.dumps(m))
    assert_error(_resume(run), "is not a step hkmeans writes")
    assert (victim / "x.chunks" / "keep.npy").read_bytes() == b"precious"
    assert (victim / "x.labels.npz").read_bytes() == b"precious"


@pytest.mark.parametrize("key", ["/etc/passwd", "level0/step0000/../../x", "level0\\step0000", 7, "level0/step0000/"])
def test_malformed_step_keys_are_refused_on_every_read(run, key):
    m = manifest(run)
    m["steps"].append(key)
    (run / "manifest.json").write_text(json.dumps(m))
    for proc in (
        _resume(run),
        hkmeans("info", run, check=False),
        hkmeans("sample", run, "--target-size", 5, check=False),
    ):
        assert_error(proc, "is not a step hkmeans writes")


def test_a_symlinked_folder_inside_the_run_is_not_followed(run, tmp_path):
    outside = tmp_path / "outside"
    shutil.move(run / "steps", outside)
    os.symlink(outside, run / "steps")
    (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
    before = sorted(p.name for p in outside.rglob("*"))
    assert_error(_resume(run), "symbolic link")
    assert sorted(p.name for p in outside.rglob("*")) == before


@pytest.mark.parametrize("name", ["centroids", "tree.npz"])
def test_no_link_in_the_run_is_written_or_read_through(run, tmp_path, name):
    """What the run keeps is refused as a symbolic link, written (the centroids of a
    resumed fit) as read (the tree a sample comes from)."""
    outside = tmp_path / "outside"
    shutil.move(run / name, outside)
    os.symlink(outside, run / name)
    if name == "centroids":
        (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
        proc = _resume(run)
    else:
        proc = hkmeans("sample", run, "--target-size", 5, "-o", tmp_path / "s.npy", check=False)
    before = sorted(p.name for p in outside.rglob("*")) if outside.is_dir() else outside.read_bytes()
    assert_error(proc, f"{run / name}: a symbolic link inside the run directory")
    assert (sorted(p.name for p in outside.rglob("*")) if outside.is_dir() else outside.read_bytes()) == before
    assert not (tmp_path / "s.npy").exists()


def test_a_linked_copy_of_the_input_is_not_fitted(tmp_path):
    """A float16 input is fitted from its float32 copy in the run: a link put in its
    place (to other rows of the same shape) is refused, not fitted."""
    np.save(tmp_path / "x.npy", blobs().astype(np.float16))
    np.save(tmp_path / "other.npy", blobs(seed=1))
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "-q")
    run = tmp_path / "run"
    (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
    os.symlink(tmp_path / "other.npy", run / "data.npy")
    assert_error(_resume(run), f"{run / 'data.npy'}: a symbolic link inside the run directory")


def test_a_hard_link_to_the_input_in_the_run_is_refused(tmp_path):
    """The input hard-linked at ``data.npy`` of an unfinished run (where a float16
    input's float32 copy goes) is refused by file, not only by name, and left whole."""
    np.save(tmp_path / "x.npy", blobs().astype(np.float16))
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "-q")
    run = tmp_path / "run"
    (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
    os.link(tmp_path / "x.npy", run / "data.npy")
    before = (tmp_path / "x.npy").read_bytes()
    assert_error(_resume(run), f"{tmp_path / 'x.npy'}: the same file as {run / 'data.npy'}, which hkmeans writes")
    assert (tmp_path / "x.npy").read_bytes() == before


def test_a_copy_of_the_input_not_matching_it_is_made_again(tmp_path):
    """A ``data.npy`` of another shape than the input, empty, or no ``.npy`` file is
    not fitted: the copy is made again, and the resumed fit ends as an uninterrupted
    one."""
    np.save(tmp_path / "x.npy", blobs().astype(np.float16))
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "-q")
    run = tmp_path / "run"
    whole = ClusterTree.load(run / "tree.npz")
    for stale in (lambda p: np.save(p, blobs(n=2000)), lambda p: p.write_bytes(b""), lambda p: p.write_text("rows")):
        (run / "manifest.json").write_text(json.dumps({**_unfinished(run), "steps": []}))
        stale(run / "data.npy")
        hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "-q")
        resumed = ClusterTree.load(run / "tree.npz")
        assert all(np.array_equal(a, b) for a, b in zip(whole.labels, resumed.labels))
        assert not (run / "data.npy").exists()


def test_a_tree_of_other_rows_is_refused(run, tmp_path):
    tree = ClusterTree.load(run / "tree.npz")
    clusters = [len(c) for c in tree.centroids]
    ClusterTree.from_labels([tree.labels[0][:-1], *tree.labels[1:]]).save(run / "tree.npz")  # one row short
    assert_error(hkmeans("export", run, check=False), f"a tree of 2999 rows and {clusters} clusters, not the one")
    ClusterTree.from_labels([np.arange(100) % 7, np.arange(7) % 2]).save(run / "tree.npz")
    for args in (("sample", run, "--target-size", 5, "-o", tmp_path / "s.npy"), ("export", run), ("info", run)):
        assert_error(hkmeans(*args, check=False), "tree.npz: a tree of 100 rows and [7, 2] clusters, not the one")
    assert not (tmp_path / "s.npy").exists() and not (run / "assignments.parquet").exists()
    assert hkmeans("info", run, check=False).stdout == ""  # no half of its lines before the error


def test_replaced_ids_are_refused_before_anything_is_written(tmp_path):
    X = blobs()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "ids.npy", np.arange(len(X)) + 7)
    run = tmp_path / "run"
    hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "--ids", tmp_path / "ids.npy", "-q")
    np.save(run / "ids.npy", np.arange(100))
    proc = hkmeans("sample", run, "--target-size", 200, "-o", tmp_path / "s.npy", check=False)
    assert_error(proc, f"{run / 'ids.npy'}: 100 ids, where the run kept {len(X)} (changed or replaced)")
    assert not (tmp_path / "s.npy").exists() and not (tmp_path / "s.parquet").exists()


# 2. no shared kernel cache


def test_the_cache_fallback_is_private_and_refuses_an_open_folder(tmp_path):
    path, refused = fallback_cache_dir(str(tmp_path))
    assert refused is None and os.stat(path).st_mode & 0o777 == 0o700
    os.chmod(path, 0o777)  # opened by someone: its files could be anyone's
    other, refused = fallback_cache_dir(str(tmp_path))
    assert other != path and "mode 777" in refused and os.stat(other).st_mode & 0o777 == 0o700
    assert os.stat(other).st_uid == os.getuid()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to make another user's folder")
def test_the_cache_fallback_refuses_a_folder_another_user_made_first(tmp_path):
    planted = tmp_path / f"hkmeans-numba-cache-{os.getuid()}"
    planted.mkdir(mode=0o700)
    (planted / "kernels.nbi").write_bytes(b"crafted index")
    os.chown(planted, 65534, 65534)
    path, refused = fallback_cache_dir(str(tmp_path))
    assert path != str(planted) and "owned by another user" in refused
    assert os.listdir(path) == []


# 3. outputs that would destroy what a run reads or keeps


def test_outputs_never_replace_what_the_run_reads_or_keeps(run, tmp_path):
    x = tmp_path / "x.npy"
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(3000) % 7)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"doc-{i}\n" for i in range(3000)))
    other = tmp_path / "other"
    hkmeans("fit", x, "--out", other, "--n-clusters", "20,4", "-q")
    kept = {p: p.read_bytes() for p in [labels, ids, run / "indices.npy", other / "manifest.json", other / "tree.npz"]}
    hkmeans("fit", x, "--out", tmp_path / "withids", *FIT, "--ids", ids, "-q")
    cases = [
        (["report", run, "--labels", labels, "-o", labels], "a file this run reads"),
        (["report", run, "-o", run / "indices.npy"], "that this command does not write"),
        (["report", run, "-o", run / "steps" / "r.html"], "that this command does not write"),
        (["sample", tmp_path / "withids", "--target-size", 5, "-o", ids], "a file this run reads"),
        (["sample", run, "--target-size", 5, "-o", other / "indices.npy"], "another hkmeans run directory"),
        (["export", run, "--out", other], "another hkmeans run directory"),
        (["export", run, "--out", run / "steps"], "inside the run directory"),
        (["report", run, "-o", x], "the input embeddings file"),
    ]
    for args, message in cases:
        assert_error(hkmeans(*args, check=False), message)
    assert all(p.read_bytes() == b for p, b in kept.items())
    assert not (run / "steps" / "r.html").exists() and not (other / "assignments.parquet").exists()


def test_an_output_through_a_linked_folder_is_judged_where_it_lands(run, tmp_path):
    """A folder linked to the input's shards, or into another run, is where the file
    lands: refused there as it is written directly (``--force`` or not)."""
    X = np.load(tmp_path / "x.npy")
    (tmp_path / "shards").mkdir()
    np.save(tmp_path / "shards" / "a.npy", X[:1500])
    np.save(tmp_path / "shards" / "b.npy", X[1500:])
    hkmeans("fit", tmp_path / "shards", "--out", tmp_path / "on-shards", "--n-clusters", "20,4", "-q")
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "other", "--n-clusters", "20,4", "-q")
    os.symlink(tmp_path / "shards", tmp_path / "to-shards")
    os.symlink(tmp_path / "other" / "centroids", tmp_path / "to-centroids")
    kept = {p: p.read_bytes() for p in (tmp_path / "other").rglob("*") if p.is_file()}
    to_shards = ["sample", tmp_path / "on-shards", "--target-size", 5, "-o", tmp_path / "to-shards" / "out.npy"]
    assert_error(hkmeans(*to_shards, check=False), "would read it as one of its files")
    into_run = ["sample", run, "--target-size", 5, "-o", tmp_path / "to-centroids" / "level0.npy", "--force"]
    assert_error(hkmeans(*into_run, check=False), "a file of another hkmeans run directory")
    os.symlink(run / "steps", tmp_path / "to-steps")
    assert_error(hkmeans("export", run, "--out", tmp_path / "to-steps" / "e", check=False), "inside the run directory")
    assert not (run / "steps" / "e").exists()
    assert sorted(os.listdir(tmp_path / "shards")) == ["a.npy", "b.npy"]
    assert {p: p.read_bytes() for p in (tmp_path / "other").rglob("*") if p.is_file()} == kept


def test_no_run_dedup_or_demo_folder_inside_another_run(run, tmp_path):
    """An --out inside a run (its steps/, say, which its --overwrite removes whole) is
    refused, through a linked folder too, with nothing written."""
    os.symlink(run / "steps", tmp_path / "to-steps")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    for out in (run / "steps" / "new", tmp_path / "to-steps" / "new", run / "new"):
        fit = hkmeans("fit", tmp_path / "x.npy", "--out", out, *FIT, check=False)
        assert_error(fit, "inside the hkmeans run directory")
        dedup = hkmeans("dedup", tmp_path / "x.npy", "--threshold", 0.99, "--out", out, check=False)
        assert_error(dedup, "inside the hkmeans run directory")
        assert_error(hkmeans("demo", "--out", out, check=False), "inside the hkmeans run directory")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_an_output_beside_the_run_named_like_it_is_not_the_runs(run, tmp_path):
    hkmeans("sample", run, "--target-size", 5, "-o", tmp_path / f"{run.name}-indices.npy", "-q")
    assert len(np.load(tmp_path / f"{run.name}-indices.npy")) == 5


def test_dedup_writes_nothing_inside_a_zarr_input(tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("pyarrow")
    store = zarr.open(str(tmp_path / "x.zarr"), mode="w", shape=(500, 8), chunks=(100, 8), dtype="f4")
    store[:] = blobs(n=500)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "x.zarr").rglob("*"))
    proc = hkmeans("dedup", tmp_path / "x.zarr", "--threshold", 0.99, "--out", tmp_path / "x.zarr" / "d", check=False)
    assert_error(proc, "the input")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "x.zarr").rglob("*")) == before


def test_an_existing_file_is_replaced_only_with_force(run, tmp_path):
    mine = tmp_path / "mine.html"
    mine.write_text("my notes")
    assert_error(hkmeans("report", run, "-o", mine, check=False), "give --force to replace it")
    assert mine.read_text() == "my notes"
    hkmeans("report", run, "-o", mine, "--force")
    assert "<html" in mine.read_text()
    hkmeans("report", run)  # its own output in its own run directory: replaced without --force
    hkmeans("report", run)
    hkmeans("sample", run, "--target-size", 10)


def test_a_rerun_replaces_the_files_it_wrote_outside_its_run(run, tmp_path):
    """A command rerun (a killed curate -o, say) may replace the subsets it wrote
    outside the run directory, as they were left or while being written, not others."""
    out = tmp_path / "o"
    out.mkdir()
    args = ("sample", run, "--target-size", "10,20", "-o", out / "sub.npy", "-q")
    hkmeans(*args)
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["sub-10.npy", "sub-10.parquet", "sub-20.npy", "sub-20.parquet"]
    hkmeans(*args)  # the same command again: no --force needed
    m = manifest(run)
    m["outputs"][str(out / "sub-20.parquet")] = None  # a kill while it was being written
    (run / "manifest.json").write_text(json.dumps(m))
    (out / "sub-20.parquet").write_bytes(b"half")
    hkmeans(*args)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first
    np.save(out / "sub-10.npy", np.arange(10))  # changed since: the user's now
    assert_error(hkmeans(*args, check=False), "sub-10.npy: exists; give --force")
    np.testing.assert_array_equal(np.load(out / "sub-10.npy"), np.arange(10))


def test_reading_a_run_needs_neither_a_writable_manifest_nor_flock(run, tmp_path, monkeypatch):
    from hkmeans.cli import run_layout, rundir

    def read_only(path, obj):
        raise OSError(errno.EROFS, "Read-only file system", path)

    def no_flock(f, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(rundir, "save_json", read_only)  # a read-only run directory
    monkeypatch.setattr(run_layout.fcntl, "flock", no_flock)  # a file system without flock
    hkmeans("sample", run, "--target-size", 10, "-o", tmp_path / "s.npy", "-q")
    assert len(np.load(tmp_path / "s.npy")) == 10
    hkmeans("export", run, "--out", tmp_path / "tables")
    assert (tmp_path / "tables" / "clusters.parquet").is_file()


def test_a_fit_runs_unlocked_with_a_warning_where_flock_is_missing(tmp_path, monkeypatch):
    from hkmeans.cli import run_layout

    def no_flock(f, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(run_layout.fcntl, "flock", no_flock)  # e.g. Lustre without -o flock
    np.save(tmp_path / "x.npy", blobs(n=2000))
    out = hkmeans("curate", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "--target-size", 100, "-q")
    assert "cannot lock files (No locks available)" in out.stderr
    assert len(np.load(tmp_path / "run" / "indices.npy")) == 100


# 4. index files checked when loaded


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda run, other: shutil.copy(other / "indices.npy", run / "indices.npy"), "changed since"),
        (lambda run, other: [shutil.copy(other / f, run / f) for f in ("indices.npy", "indices.json")], "another pool"),
        (lambda run, other: np.save(run / "indices.npy", np.load(run / "indices.npy") + 0.5), "1-D array of integers"),
        (lambda run, other: np.save(run / "indices.npy", np.zeros((3, 2), np.int64)), "1-D array of integers"),
        (lambda run, other: os.unlink(run / "indices.json"), "no sidecar"),
    ],
)
def test_a_foreign_or_damaged_indices_file_is_one_line(run, tmp_path, damage, message):
    np.save(tmp_path / "y.npy", blobs(n=5000, seed=1))
    other = tmp_path / "other"
    hkmeans("curate", tmp_path / "y.npy", "--out", other, "--n-clusters", "20,4", "--target-size", 4000, "-q")
    damage(run, other)
    assert_error(hkmeans("report", run, check=False), message)
    assert_error(hkmeans("export", run, check=False), message)
    assert not (run / "report.html").exists() and not (run / "assignments.parquet").exists()


def test_tables_check_positions_and_ids(run):
    tree = ClusterTree.load(run / "tree.npz")
    for bad in ([1e9], [10**9], [[1, 2]], [-1], [0.5]):
        with pytest.raises(ValueError, match="selected must be"):
            cluster_table(tree, selected=np.array(bad))
    ids = np.arange(tree.n_samples)
    ids[5] = ids[7]
    with pytest.raises(ValueError, match=r"ids: id 7 is given twice \(rows 5 and 7\)"):
        assignments(tree, ids=ids)


def test_commands_that_read_a_run_wait_for_its_fit_and_hold_it_off(run, tmp_path):
    """sample, export and report refuse a run a fit holds (a fit starting over would
    swap the tree under them), and a fit cannot start over while one of them reads."""
    from hkmeans.cli.run_layout import share_lock, take_lock

    fit = take_lock(run)
    before = sorted(p.name for p in run.iterdir())
    for args in (("sample", run, "--target-size", 5), ("export", run), ("report", run)):
        assert_error(hkmeans(*args, check=False), "a fit is running there")
    assert sorted(p.name for p in run.iterdir()) == before
    fit.close()
    reading = share_lock(run)
    assert_error(_resume(run, "--overwrite"), "in use by another hkmeans process")
    assert share_lock(run) is not None  # readers share it
    reading.close()
    hkmeans("sample", run, "--target-size", 5, "-q")


# 5. hkmeans deletes only what it wrote


def test_resume_and_finish_leave_the_users_files_alone(run, tmp_path):
    mine = run / "notes"
    mine.mkdir()
    (mine / ".tmp-draft").write_text("mine")
    (run / ".tmp-mine").write_text("mine")
    (run / "scratch-notes.txt").write_text("mine")
    (run / "scratch-plots").mkdir()
    (run / "scratch-plots" / "a.png").write_text("mine")
    (run / ".tmp-abcd1234-tree.npz").write_text("left by a kill")  # the pattern hkmeans writes
    (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
    _resume(run, "-q")
    assert manifest(run)["status"] == "done"
    assert (mine / ".tmp-draft").read_text() == "mine" and (run / ".tmp-mine").read_text() == "mine"
    assert (run / "scratch-notes.txt").read_text() == "mine"
    assert (run / "scratch-plots" / "a.png").read_text() == "mine"
    assert not (run / ".tmp-abcd1234-tree.npz").exists()


def test_overwrite_leaves_a_users_folder_named_like_an_output(run):
    (run / "indices-7.npy").mkdir()
    (run / "indices-7.npy" / "notes.txt").write_text("mine")
    _resume(run, "--overwrite", "-q")
    assert manifest(run)["status"] == "done"
    assert (run / "indices-7.npy" / "notes.txt").read_text() == "mine"


def test_a_folder_holding_only_its_lock_fits_as_a_new_run(tmp_path):
    """What an --overwrite killed after removing the run's files leaves."""
    np.save(tmp_path / "x.npy", blobs())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".lock").write_text("")
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "-q")
    assert manifest(tmp_path / "run")["status"] == "done"


def test_scratch_arrays_write_through_no_link_and_go_when_the_fit_ends(run, tmp_path, monkeypatch):
    from hkmeans.cli import rundir

    monkeypatch.setattr(rundir, "SCRATCH_BYTES", 0)  # every intermediate array in a file
    mine = tmp_path / "mine.npy"
    np.save(mine, np.arange(10))
    before = mine.read_bytes()
    os.link(mine, run / "scratch-subset.npy")  # a user's file hard-linked under a scratch name
    (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
    _resume(run, "-q")
    assert manifest(run)["status"] == "done"
    assert mine.read_bytes() == before
    assert not list(run.glob("scratch-*"))


def test_a_lock_that_is_a_symlink_is_not_followed(run, tmp_path):
    os.unlink(run / ".lock")
    os.symlink(tmp_path / "created-elsewhere", run / ".lock")
    (run / "manifest.json").write_text(json.dumps(_unfinished(run)))
    assert_error(_resume(run), "symbolic link")
    assert not (tmp_path / "created-elsewhere").exists()


# 6. ids: compact and exact


def test_ids_memory_is_linear_in_their_total_length():
    n = 200_000
    huge = np.empty(n, dtype=object)
    huge[:] = [f"doc-{i}" for i in range(n)]
    huge[123] = "x" * (1 << 20)  # one 1 MB id: a fixed-width array would ask for 745 GiB
    tracemalloc.start()
    ids = check_ids(huge, n, "ids")
    offsets, data = encode(ids)
    back = decode(offsets, data)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 80 << 20, peak  # measured about 30 MB
    assert back[123] == huge[123] and back[7] == "doc-7"
    assert data.nbytes == sum(len(s) for s in huge)


def test_long_ids_and_nul_ids_round_trip_through_a_run(tmp_path):
    n = 3000
    ids = [f"https://example.org/{'p' * 1980}/{i:06d}" for i in range(n)]  # 2,000-character URLs
    ids[1], ids[2] = "doc-0\0", "doc-0"  # a NUL is kept, and these two are distinct
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n", encoding="utf-8")
    np.save(tmp_path / "x.npy", blobs())
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "--ids", tmp_path / "ids.txt", "-q")
    kept = RunDir.ids(tmp_path / "run")
    assert kept.dtype == object and list(kept) == ids
    total = sum(len(s.encode()) for s in ids)
    assert os.path.getsize(tmp_path / "run" / "ids.npz") < total + 8 * n + 4096  # not 4 x longest x n (24 MB)


def test_text_ids_with_a_bom_and_a_trailing_blank_line_are_integers(tmp_path):
    np.save(tmp_path / "x.npy", blobs())
    (tmp_path / "ids.txt").write_bytes(
        b"\xef\xbb\xbf" + "".join(f"{i + 10}\r\n" for i in range(3000)).encode() + b"\r\n"
    )
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "--ids", tmp_path / "ids.txt", "-q")
    np.testing.assert_array_equal(RunDir.ids(tmp_path / "run"), np.arange(3000) + 10)


# 7. messages


def test_text_id_errors_speak_of_text(tmp_path):
    np.save(tmp_path / "x.npy", blobs())
    (tmp_path / "ids.txt").write_bytes(b"\xff\xfe bad")
    proc = hkmeans(
        "fit", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "--ids", tmp_path / "ids.txt", check=False
    )
    assert_error(proc, "not a UTF-8 text file of ids")
    assert ".npy" not in proc.stderr.split("ids.txt")[-1]


def test_a_full_disk_names_the_file(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with pytest.raises(OSError) as e:
        save_npy(tmp_path / "ids.npy", np.arange(3))
    assert e.value.filename == str(tmp_path / "ids.npy") and e.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kind", ["pq suffix", "nulls", "lists", "npy objects", "npy NaN"])
def test_labels_files_are_read_by_content_and_refused_in_one_line(run, tmp_path, kind):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / ("labels.pq" if kind == "pq suffix" else "labels.parquet")
    if kind == "pq suffix":
        pq.write_table(pa.table({"label": [f"c{i % 5}" for i in range(3000)]}), path)
        hkmeans("report", run, "--labels", path)
        assert "c4" in (run / "report.html").read_text()
        return
    if kind == "npy objects":
        path = tmp_path / "labels.npy"
        np.save(path, np.array([None] * 3000), allow_pickle=True)
        message = "labels.npy: a .npy array of Python objects, which are never unpickled"
    elif kind == "npy NaN":
        path = tmp_path / "labels.npy"
        np.save(path, np.where(np.arange(3000) == 7, np.nan, np.arange(3000) % 5))
        message = "1 labels are NaN"
    elif kind == "nulls":
        pq.write_table(pa.table({"label": ["a"] * 2999 + [None]}), path)
        message = "1 nulls"
    else:
        pq.write_table(pa.table({"label": [[1, 2]] * 3000}), path)
        message = "not one label per row"
    assert_error(hkmeans("report", run, "--labels", path, check=False), message)


def test_a_closed_pipe_is_quiet(run):
    proc = subprocess.run(
        f"{sys.executable} -m hkmeans info {run} | head -1", shell=True, capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("run directory") and proc.stderr == "", proc.stderr


# 8. silence


def test_sample_warns_when_the_input_changed_since_the_fit(run, tmp_path):
    os.utime(tmp_path / "x.npy", ns=(0, 0))
    proc = hkmeans("sample", run, "--target-size", 10)
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "the input changed since the fit" in warnings[0]


def test_config_toml_holds_absolute_paths(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", blobs())
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in range(3000)))
    monkeypatch.chdir(tmp_path)
    hkmeans("fit", "x.npy", "--out", "run", *FIT, "--ids", "ids.txt", "-q")
    assert f'ids = "{tmp_path / "ids.txt"}"' in (tmp_path / "run" / "config.toml").read_text()


def test_progress_lines_without_a_terminal_are_time_stamped(tmp_path):
    np.save(tmp_path / "x.npy", blobs())
    proc = hkmeans("curate", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "--target-size", 10)
    *lines, last = proc.stderr.splitlines()
    assert lines and all(PROGRESS.match(line) for line in lines) and any("step level1" in line for line in lines)
    assert last.startswith("10 indices written to")
