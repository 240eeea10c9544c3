"""The run directory (``hkmeans/cli/rundir.py``, ``run_layout.py``, ``outputs.py``):
what a rerun, a resume, ``--overwrite`` and the later commands refuse, keep or clean
up, from what a kill, a full disk or a user's hand may leave in it."""

import json
import os
import threading

import numpy as np
import pytest

from hkmeans import ClusterTree
from hkmeans.cli import run_layout, rundir
from hkmeans.cli.rundir import RunDir

from .test_cli import FIT, assert_error, blobs, hkmeans, manifest

pytestmark = pytest.mark.usefixtures("warm_kernels")


@pytest.fixture
def path(tmp_path):
    """A pool of 3000 rows as ``x.npy``."""
    np.save(tmp_path / "x.npy", blobs())
    return tmp_path / "x.npy"


def _with_ids(tmp_path, ids_file="ids.npy"):
    X = blobs()
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "ids.npy", np.arange(len(X)) + 7)
    (tmp_path / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(len(X))))
    run = tmp_path / "run"
    hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "--ids", tmp_path / ids_file, "-q")
    return X, run


def _copies(tmp_path):
    """8 distinct rows, 10 copies each: a dedup keeps exactly 8."""
    np.save(tmp_path / "x.npy", np.repeat(np.eye(8, dtype=np.float32) + 0.1, 10, axis=0))
    return tmp_path / "x.npy"


def test_a_run_directory_of_another_format_is_refused(path, tmp_path):
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    (run / "manifest.json").write_text(json.dumps({**manifest(run), "format": 2}))
    for args in (("fit", path, "--out", run, *FIT), ("sample", run, "--target-size", 5), ("export", run)):
        assert_error(hkmeans(*args, check=False), "run directory format 2, this hkmeans reads format 1")
    assert not (run / "indices.npy").exists() and not (run / "assignments.parquet").exists()
    assert manifest(run)["format"] == 2  # the fit did not take it over


def test_overwrite_refuses_a_manifest_another_tool_marked_as_its_own(path, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "manifest.json").write_text(json.dumps({"tool": "othertool", "versions": {"hkmeans": "0.1"}}))
    (other / "tree.npz").write_bytes(b"theirs")
    assert_error(hkmeans("fit", path, "--out", other, *FIT, "--overwrite", check=False), "not an hkmeans run directory")
    assert (other / "tree.npz").read_bytes() == b"theirs"


def test_only_the_newest_step_of_each_level_keeps_its_labels(path, tmp_path):
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    steps = manifest(run)["steps"]
    for level in ("level0", "level1"):
        newest = [s for s in steps if s.startswith(level + "/")][-1]
        kept = sorted(p.name for p in (run / "steps" / level).glob("*.labels.npz"))
        assert kept == [newest.split("/")[1] + ".labels.npz"]


def test_a_tree_of_the_same_rows_but_other_clusters_is_refused(path, tmp_path):
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    ClusterTree.from_labels([np.arange(3000) % 50, np.arange(50) % 5]).save(run / "tree.npz")  # 3000 rows
    for args in (("sample", run, "--target-size", 5, "-o", tmp_path / "s.npy"), ("export", run)):
        assert_error(hkmeans(*args, check=False), "a tree of 3000 rows and [50, 5] clusters, not the one this run")
    assert not (tmp_path / "s.npy").exists()


def test_the_manifest_is_replaced_never_rewritten_in_place(path, tmp_path):
    """Written to a new file then renamed over the old one: a kill or a full disk
    mid-write leaves the old manifest whole, not a truncated one."""
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    before = os.stat(run / "manifest.json").st_ino
    hkmeans("fit", path, "--out", run, *FIT, "-q")  # a rerun writes the manifest again
    assert os.stat(run / "manifest.json").st_ino != before


def test_a_rerun_writes_what_a_kill_kept_from_being_written_or_removed(path, tmp_path):
    """The config a kill left unwritten is written; the input's copy a kill left behind
    (after the fit finished, before the clean-up) is removed."""
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    text = (run / "config.toml").read_text()
    (run / "config.toml").unlink()
    np.save(run / "data.npy", np.zeros((3000, 8), np.float32))
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    assert (run / "config.toml").read_text() == text and not (run / "data.npy").exists()


def test_an_output_in_a_folder_of_the_run_is_refused(path, tmp_path):
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    (run / "mine").mkdir()
    for folder in ("centroids", "steps", "mine"):
        out = run / folder / "report.html"  # the name report writes, in a folder below the run's top
        assert_error(hkmeans("report", run, "--target-size", 5, "-o", out, check=False), "a file of the run directory")
        assert not out.exists()


def test_ids_of_the_other_kind_replace_the_ones_a_killed_fit_left(tmp_path):
    X, run = _with_ids(tmp_path, "ids.txt")
    m = manifest(run)
    del m["ids"]  # as a fit killed after writing ids.npz, before its manifest listed them
    (run / "manifest.json").write_text(json.dumps(m))
    hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "--ids", tmp_path / "ids.npy", "-q")
    assert not (run / "ids.npz").exists()
    np.testing.assert_array_equal(RunDir.ids(run), np.arange(len(X)) + 7)


def test_overwrite_without_ids_deletes_the_ids_of_the_run_before(tmp_path):
    _, run = _with_ids(tmp_path, "ids.txt")
    assert (run / "ids.npz").exists()
    hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "--overwrite", "-q")
    assert not (run / "ids.npz").exists() and RunDir.ids(run) is None


@pytest.mark.parametrize("ids_file, kept", [("ids.npy", "ids.npy"), ("ids.txt", "ids.npz")])
def test_ids_removed_from_a_run_are_one_line_not_tables_without_ids(tmp_path, ids_file, kept):
    """A run that kept ids and lost their file refuses to write tables without them
    (they came out without an ``id`` column, exit 0); the fit rerun writes them again."""
    _, run = _with_ids(tmp_path, ids_file)
    (run / kept).unlink()
    for args in (("sample", run, "--target-size", 5, "-o", tmp_path / "s.npy"), ("export", run)):
        assert_error(hkmeans(*args, check=False), f"{run / kept}: missing; rerun 'hkmeans fit' with the ids")
    assert not (tmp_path / "s.npy").exists() and not (run / "assignments.parquet").exists()
    hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "--ids", tmp_path / ids_file, "-q")
    hkmeans("sample", run, "--target-size", 5, "-o", tmp_path / "s.npy", "-q")
    assert (run / kept).exists() and (tmp_path / "s.npy").exists()


def test_the_ids_file_of_another_run_may_be_given(tmp_path):
    X, run = _with_ids(tmp_path)
    other = run / "ids.npy"  # read, not written, by the second run
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run2", *FIT, "--ids", other, "-q")
    np.testing.assert_array_equal(RunDir.ids(tmp_path / "run2"), np.arange(len(X)) + 7)


def test_a_dedup_keeping_exactly_n_clusters_rows_fits(tmp_path):
    run = tmp_path / "run"
    args = ["--n-clusters", "8,2", "--sample-size", "2,2", "--n-resamples", "2", "--dedup", "0.99", "-q"]
    hkmeans("fit", _copies(tmp_path), "--out", run, *args)
    m = manifest(run)
    assert m["status"] == "done" and m["dedup"]["kept"] == 8 and m["n_clusters"] == [8, 2]


def test_a_dedup_file_missing_an_array_is_one_line(tmp_path):
    run = tmp_path / "run"
    args = ["--n-clusters", "4,2", "--sample-size", "2,2", "--n-resamples", "2", "--dedup", "0.99", "-q"]
    hkmeans("fit", _copies(tmp_path), "--out", run, *args)
    with np.load(run / "dedup.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "similarity"}
    np.savez(run / "dedup.npz", **arrays)
    for args in (("export", run), ("sample", run, "--target-size", 3, "-o", tmp_path / "s.npy")):
        assert_error(hkmeans(*args, check=False), "dedup.npz: not the dedup result this run wrote")


def test_a_run_started_over_while_a_resume_waited_is_not_resumed(path, tmp_path, monkeypatch):
    """The checks are made again under the lock: another process may have started the
    run over with other parameters between this one's first reading and its lock."""
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    take_lock = rundir.take_lock

    def started_over_meanwhile(where):  # what the other process leaves
        m = manifest(run)
        m["params"]["n_resamples"] = 4
        (run / "manifest.json").write_text(json.dumps(m))
        return take_lock(where)

    monkeypatch.setattr(rundir, "take_lock", started_over_meanwhile)
    config = (run / "config.toml").read_text()
    assert_error(hkmeans("fit", path, "--out", run, *FIT, check=False), "n_resamples=4 there, [3, 3] here")
    assert manifest(run)["params"]["n_resamples"] == 4 and (run / "config.toml").read_text() == config


def test_two_samples_at_once_both_record_their_outputs(path, tmp_path, monkeypatch):
    """``sample`` runs share the run's lock; their records of the files they wrote
    are made one after the other, so neither is lost."""
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    first, second = tmp_path / "first.npy", tmp_path / "second.npy"
    save_json = rundir.save_json
    inside, go = threading.Event(), threading.Event()

    def slow_for_the_first(where, manifest):
        if first.as_posix() in json.dumps(manifest):
            inside.set()
            go.wait(5)
        save_json(where, manifest)

    monkeypatch.setattr(rundir, "save_json", slow_for_the_first)
    a = threading.Thread(target=RunDir.record_outputs, args=(run, [first], False))
    a.start()
    assert inside.wait(5)
    b = threading.Thread(target=RunDir.record_outputs, args=(run, [second], False))
    b.start()
    b.join(0.5)  # without the lock it reads the manifest before the first writes and ends here
    go.set()
    a.join(5)
    b.join(5)
    assert set(manifest(run)["outputs"]) == {os.path.abspath(first), os.path.abspath(second)}


def test_the_record_of_outputs_waits_only_for_its_own_lock(path, tmp_path, monkeypatch):
    """A lock on the run directory itself (``flock RUN_DIR hkmeans sample ...``) is not
    waited for; the record's own lock is, for a while, and then written with a warning."""
    fcntl = pytest.importorskip("fcntl")

    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    out = tmp_path / "a.npy"
    out.write_bytes(b"written")
    folder = os.open(run, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        recording = threading.Thread(target=RunDir.record_outputs, args=(run, [out], False), daemon=True)
        recording.start()
        recording.join(5)
        assert not recording.is_alive() and os.path.abspath(out) in manifest(run)["outputs"]
    finally:
        os.close(folder)
    monkeypatch.setattr(run_layout, "MANIFEST_WAIT", 0.1)
    held = os.open(run / run_layout.MANIFEST_LOCK, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.warns(UserWarning, match="unlocked .another process held its lock for 0.1 s"):
            RunDir.record_outputs(run, [out], written=True)
    finally:
        os.close(held)
    assert manifest(run)["outputs"][os.path.abspath(out)] is not None


def test_a_lock_file_that_is_a_link_is_refused_before_any_output(path, tmp_path):
    run = tmp_path / "run"
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    target = tmp_path / "elsewhere"
    (run / run_layout.MANIFEST_LOCK).symlink_to(target)
    out = tmp_path / "picked.npy"
    proc = hkmeans("sample", run, "--target-size", 10, "-o", out, check=False)
    assert_error(proc, "a symbolic link; hkmeans does not follow it")
    assert not out.exists() and not target.exists()


def test_a_folder_holding_only_lock_files_takes_a_new_run(path, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / run_layout.LOCK).write_text("")
    (run / run_layout.MANIFEST_LOCK).write_text("")
    hkmeans("fit", path, "--out", run, *FIT, "-q")
    assert manifest(run)["status"] == "done"
