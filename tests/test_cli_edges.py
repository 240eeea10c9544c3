"""Edges of the command line that a mutation run found untested: what a user sees
(messages, warnings, info lines) and what a command refuses to write or overwrite."""

import os
import warnings

import numpy as np
import pytest

from hkmeans import ClusterTree, hierarchical_sampling
from hkmeans.cli import commands

from .test_cli import FIT, assert_error, blobs, hkmeans, manifest
from .test_safety import copied_run

pytestmark = pytest.mark.usefixtures("warm_kernels")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A finished fit of 3000 rows, copied afresh for each test."""
    tmp = tmp_path_factory.mktemp("edges")
    np.save(tmp / "x.npy", blobs())
    hkmeans("fit", tmp / "x.npy", "--out", tmp / "run", *FIT, "-q")
    return tmp


@pytest.fixture
def run(fitted, tmp_path):
    return copied_run(fitted, tmp_path)


def _copies(tmp_path):
    """8 distinct rows, 10 copies each: a dedup keeps exactly 8."""
    np.save(tmp_path / "c.npy", np.repeat(np.eye(8, dtype=np.float32) + 0.1, 10, axis=0))
    return tmp_path / "c.npy"


DEDUP_FIT = ["--n-clusters", "8,2", "--sample-size", "2,2", "--n-resamples", "2", "-q"]


# sample


def test_a_target_of_exactly_pool_times_multiplier_is_no_warning(run, tmp_path):
    proc = hkmeans("sample", run, "--target-size", 6000, "--multiplier", 2, "-o", tmp_path / "all.npy")
    assert "warning" not in proc.stderr
    idx = np.load(tmp_path / "all.npy")
    np.testing.assert_array_equal(np.bincount(idx, minlength=3000), np.full(3000, 2))
    proc = hkmeans("sample", run, "--target-size", 6001, "--multiplier", 2, "-o", tmp_path / "more.npy")
    assert "target size 6001 is above pool size x multiplier (3000 x 2); writing all 6000" in proc.stderr


def test_sample_says_what_it_wrote_unless_quiet(run, tmp_path):
    out = tmp_path / "s.npy"
    proc = hkmeans("sample", run, "--target-size", 300, "-o", out)
    assert f"300 indices written to {out}, their rows to {tmp_path / 's.parquet'}" in proc.stderr
    np.testing.assert_array_equal(
        np.load(out), hierarchical_sampling(ClusterTree.load(run / "tree.npz"), 300, random_state=0)
    )
    proc = hkmeans("sample", run, "--target-size", 300, "-o", out, "-q")
    assert proc.stderr == ""


def test_curate_never_writes_over_its_ids_file(tmp_path):
    np.save(tmp_path / "x.npy", blobs())
    ids = tmp_path / "ids.npy"
    np.save(ids, np.arange(3000) + 7)
    before = ids.read_bytes()
    args = ("curate", tmp_path / "x.npy", "--out", tmp_path / "run", *FIT, "--ids", ids, "--target-size", 300)
    assert_error(hkmeans(*args, "-o", ids, "--force", check=False), f"is a file this run reads ({ids})")
    assert ids.read_bytes() == before and not (tmp_path / "run").exists()


def test_a_subset_file_rewritten_unchanged_gives_no_warning(tmp_path):
    np.save(tmp_path / "x.npy", blobs())
    rows = tmp_path / "rows.npy"
    np.save(rows, np.arange(0, 3000, 2))
    run = tmp_path / "run"
    hkmeans("fit", tmp_path / "x.npy", "--out", run, *FIT, "--subset-indices", rows, "-q")
    np.save(tmp_path / "copy.npy", np.arange(0, 3000, 2))
    os.replace(tmp_path / "copy.npy", rows)  # the same rows: another inode and time
    os.utime(rows, ns=(1, 1))
    proc = hkmeans("sample", run, "--target-size", 100)
    assert "warning" not in proc.stderr
    assert np.all(np.load(run / "indices.npy") % 2 == 0)


# info


def test_info_names_string_ids_and_the_dedup_rule(tmp_path):
    path = _copies(tmp_path)
    (tmp_path / "ids.txt").write_text("".join(f"doc-{i}\n" for i in range(80)))
    hkmeans("fit", path, "--out", tmp_path / "a", *DEDUP_FIT, "--dedup", "0.99", "--ids", tmp_path / "ids.txt")
    out = hkmeans("info", tmp_path / "a").stdout
    assert f"ids            80 strings from {tmp_path / 'ids.txt'}" in out
    assert "dedup          cosine >= 0.99, keep hard: 8 of 80 rows kept, 72 removed" in out
    np.save(tmp_path / "ids.npy", np.arange(80))
    args = ("--dedup", "0.01", "--dedup-metric", "euclidean", "--ids", tmp_path / "ids.npy")
    hkmeans("fit", path, "--out", tmp_path / "b", *DEDUP_FIT, *args)
    out = hkmeans("info", tmp_path / "b").stdout
    assert "80 integers from" in out and "dedup          distance <= 0.01, keep hard: 8 of 80" in out


def test_info_counts_empty_clusters_not_singletons(tmp_path):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(59, 4)), [[1000.0] * 4]]).astype(np.float32)  # one far outlier
    np.save(tmp_path / "x.npy", X)
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", "--n-clusters", "6,2", "--sample-size", "4,2", "-q")
    tree = ClusterTree.load(tmp_path / "run" / "tree.npz")
    assert (tree.sizes(0) == 1).any()  # the outlier's own cluster
    out = hkmeans("info", tmp_path / "run").stdout
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0] in ("0", "1")]
    assert [int(r[2]) for r in rows] == [int(np.sum(tree.sizes(t) == 0)) for t in range(2)]


# demo


def test_demo_never_writes_through_a_link_even_with_force(tmp_path):
    folder, mine = tmp_path / "demo", tmp_path / "mine.html"
    folder.mkdir()
    mine.write_text("mine")
    (folder / "report.html").symlink_to(mine)
    assert_error(hkmeans("demo", "--out", folder, "--force", check=False), "exists and is not a regular file")
    assert mine.read_text() == "mine" and sorted(p.name for p in folder.iterdir()) == ["report.html"]


# report


def test_report_never_writes_over_its_show_file(run, tmp_path):
    show = tmp_path / "show.txt"
    show.write_text("".join(f"text {i}\n" for i in range(3000)))
    before = show.read_text()
    args = ("report", run, "--target-size", 100, "--show", show, "-o", show, "--force")
    assert_error(hkmeans(*args, check=False), f"is a file this run reads ({show})")
    assert show.read_text() == before and not (run / "report.html").exists()


@pytest.mark.parametrize("flag", ["--labels", "--show"])
@pytest.mark.parametrize("kind", ["empty file", "npz archive", "damaged npz", "text"])
def test_unreadable_labels_and_show_files_are_one_line(run, tmp_path, flag, kind):
    path = tmp_path / {"empty file": "values.npy", "text": "values.csv"}.get(kind, "values.npz")
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "text":  # numpy takes it for a pickle: its advice is to unpickle it
        path.write_text("".join(f"{'abc'[i % 3]}\n" for i in range(3000)))
    else:
        np.savez(path, a=np.arange(3000))
    if kind == "damaged npz":  # cut short, as a copy that stopped
        path.write_bytes(path.read_bytes()[:40])
    proc = hkmeans("report", run, "--target-size", 100, flag, path, check=False)
    assert_error(proc, str(path))
    assert "allow_pickle" not in proc.stderr
    assert not (run / "report.html").exists()


def test_report_of_a_run_without_a_sample_asks_for_one(run):
    assert_error(hkmeans("report", run, check=False), "no indices.npy nor indices-N.npy; give --target-size")
    assert not (run / "report.html").exists()


# export


def test_export_into_a_folder_of_another_run_names_that_run(run, tmp_path):
    other = tmp_path / "other"
    hkmeans("fit", tmp_path / "x.npy", "--out", other, "--n-clusters", "6,2", "-q")
    proc = hkmeans("export", run, "--out", other / "tables", check=False)
    assert_error(proc, f"{other / 'tables'}: another hkmeans run directory ({other})")
    assert not (other / "tables").exists()


def test_export_replaces_a_users_table_only_with_force(run, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "clusters.parquet").write_bytes(b"mine")
    proc = hkmeans("export", run, "--out", tables, check=False)
    assert_error(proc, f"{tables / 'clusters.parquet'}: exists; give --force")
    assert sorted(p.name for p in tables.iterdir()) == ["clusters.parquet"]
    assert (tables / "clusters.parquet").read_bytes() == b"mine"
    hkmeans("export", run, "--out", tables, "--force")
    tree = ClusterTree.load(run / "tree.npz")
    assert pq.read_table(tables / "clusters.parquet").num_rows == sum(tree.n_clusters)


# advise


def test_advise_costs_the_rows_a_dedup_keeps(tmp_path):
    path = _copies(tmp_path)
    out = hkmeans("advise", path, "--target-size", 4, "--dedup", "0.99").stdout
    assert out.startswith("# 80 points (8 after dedup), target 4")
    assert "# level 0, 8 rows -> " in out and "80 rows" not in out


# fit


def test_a_file_another_run_keeps_is_no_input(run, tmp_path):
    centroids = run / "centroids" / "level0.npy"  # 60 rows, rewritten by that run's --overwrite
    proc = hkmeans("fit", centroids, "--out", tmp_path / "new", "--n-clusters", "6,2", check=False)
    assert_error(proc, f"{centroids}: inside the run directory under a name hkmeans writes there")
    assert not (tmp_path / "new").exists()


def test_a_rerun_of_a_finished_fit_removes_the_copy_a_kill_left(tmp_path):
    np.save(tmp_path / "x.npy", blobs(n=300).astype(np.float16))  # fitted through a float32 copy
    run = tmp_path / "run"
    args = ("fit", tmp_path / "x.npy", "--out", run, "--n-clusters", "6,2", "-q")
    hkmeans(*args)
    assert not (run / "data.npy").exists()
    np.save(run / "data.npy", np.load(tmp_path / "x.npy").astype(np.float32))  # as a kill before the clean-up
    hkmeans(*args)
    assert not (run / "data.npy").exists() and manifest(run)["status"] == "done"


def test_ids_given_by_a_relative_path_stay_protected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", blobs(n=300))
    np.save("ids.npy", np.arange(300) + 7)
    before = (tmp_path / "ids.npy").read_bytes()
    hkmeans("fit", "x.npy", "--out", "run", "--n-clusters", "6,2", "--ids", "ids.npy", "-q")
    assert f"300 integers from {tmp_path / 'ids.npy'}" in hkmeans("info", "run").stdout
    proc = hkmeans("sample", "run", "--target-size", 10, "-o", "ids.npy", "--force", check=False)
    assert_error(proc, "ids.npy: is a file this run reads")
    assert (tmp_path / "ids.npy").read_bytes() == before


def test_labels_of_two_columns_are_refused(run, tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros((3000, 2), dtype=np.int64))
    proc = hkmeans("report", run, "--target-size", 100, "--labels", tmp_path / "labels.npy", check=False)
    assert_error(proc, "labels of shape (3000, 2) for a pool of 3000 rows; give one label per row")
    assert not (run / "report.html").exists()


# outputs


def test_an_output_in_a_missing_folder_is_refused_before_any_work(run, tmp_path):
    out = tmp_path / "nowhere" / "s.npy"
    before = (run / "manifest.json").read_bytes()
    assert_error(hkmeans("sample", run, "--target-size", 10, "-o", out, check=False), "its folder")
    assert (run / "manifest.json").read_bytes() == before and not (tmp_path / "nowhere").exists()


def test_a_hidden_file_in_the_input_folder_is_no_input_file(tmp_path):
    X = blobs(n=400)
    shards = tmp_path / "shards"
    shards.mkdir()
    np.save(shards / "a.npy", X[:200])
    np.save(shards / "b.npy", X[200:])
    run = tmp_path / "run"
    hkmeans("curate", shards, "--out", run, "--n-clusters", "6,2", "--target-size", 20, "-q")
    hkmeans("sample", run, "--target-size", 20, "-o", shards / ".picked.npy", "-q")
    np.testing.assert_array_equal(np.load(shards / ".picked.npy"), np.load(run / "indices.npy"))


# main


def test_a_warning_of_several_lines_is_printed_as_one(run, monkeypatch):
    def warn_twice(source):
        warnings.warn("first line\n  second line", UserWarning, stacklevel=2)

    monkeypatch.setattr(commands, "_warn_if_changed", warn_twice)
    proc = hkmeans("sample", run, "--target-size", 10, "-q")
    assert proc.stderr == "hkmeans: warning: first line second line\n"


def test_an_os_error_names_the_path(run, tmp_path):
    folder = tmp_path / "x.npy" / "tables"  # below a regular file
    assert_error(hkmeans("export", run, "--out", folder, check=False), f"Not a directory: {folder}")
    assert np.load(tmp_path / "x.npy").shape == (3000, 8)
