"""The curation report and its figures, from Python and from the command line."""

import base64
import csv
import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("matplotlib")

from hkmeans import ClusterTree, HierarchicalKMeans, dedup, plot  # noqa: E402
from hkmeans.browser import cluster_data, to_json  # noqa: E402
from hkmeans.report import DedupSummary, curation_report, label_rows, level_rows, subset_rows  # noqa: E402

from .test_cli import hkmeans  # noqa: E402


class Page(HTMLParser):
    """A report as data: its tables by id (a list of rows, column name to text), its
    CSV links by file name (decoded rows), its figures by id (caption), its images'
    sources and the browser's JSON data."""

    def __init__(self):
        super().__init__()
        self.tables, self.csv, self.figures, self.images, self.data = {}, {}, {}, [], None
        self._table = self._row = self._text = self._figure = self._json = None
        self._columns = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and "id" in attrs:
            self._table, self._columns = attrs["id"], []
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("th", "td", "figcaption"):
            self._text = ""
        elif tag == "figure":
            self._figure = attrs["id"]
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and attrs.get("download"):
            text = base64.b64decode(attrs["href"].split("base64,", 1)[1]).decode("utf-8")
            self.csv[attrs["download"]] = list(csv.DictReader(io.StringIO(text)))
        elif tag == "script" and attrs.get("type") == "application/json":
            self._json = ""

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._table:
            (self._columns if tag == "th" else self._row).append(self._text)
        elif tag == "tr" and self._table and self._row:
            self.tables[self._table].append(dict(zip(self._columns, self._row)))
        elif tag == "table":
            self._table = None
        elif tag == "figcaption":
            self.figures[self._figure] = self._text
        elif tag == "script" and self._json is not None:
            self.data, self._json = json.loads(self._json), None
        if tag in ("th", "td", "figcaption"):
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text += data
        if self._json is not None:
            self._json += data


def parse(text):
    page = Page()
    page.feed(text)
    return page


def unbalanced(n=4000, seed=0):
    """Blobs of very different sizes: random sampling follows the big ones."""
    rng = np.random.default_rng(seed)
    sizes = np.array([0.6, 0.25, 0.1, 0.04, 0.01]) * n
    centres = rng.normal(scale=20, size=(5, 6))
    X = np.concatenate([c + rng.normal(size=(int(s), 6)) for c, s in zip(centres, sizes)]).astype(np.float32)
    return X, np.repeat(np.arange(5), sizes.astype(int))


@pytest.fixture(scope="module")
def fitted():
    X, blob = unbalanced()
    m = HierarchicalKMeans((40, 5), n_resamples=3, random_state=0).fit(X)
    return X, blob, m


def test_normalized_entropy_is_one_for_even_and_zero_for_one_bin():
    assert plot.normalized_entropy([5, 5, 5, 5]) == pytest.approx(1.0)
    assert plot.normalized_entropy([0, 9, 0]) == 0.0 and f"{plot.normalized_entropy([0, 9, 0]):.3f}" == "0.000"
    assert 0 < plot.normalized_entropy([1, 2, 30]) < 1


def test_curation_is_more_balanced_than_random_on_unbalanced_blobs(fitted):
    _, _, m = fitted
    sizes, curated, rand = plot.balance_curve(m.tree_, [100, 400], random_state=0)
    assert sizes == [100, 400]
    assert all(c > r for c, r in zip(curated, rand)), (curated, rand)


def test_the_report_holds_every_table_and_figure_with_and_without_labels(fitted):
    X, blob, m = fitted
    selected = m.sample(300)
    without = parse(
        curation_report(m.tree_, selected, params={"n_clusters": (40, 5), "n_resamples": 3, "sample_size": None})
    )
    assert list(without.figures) == ["sizes-level-0", "sizes-level-1", "balance", "centroids"]
    assert all(len(caption) > 100 for caption in without.figures.values())
    assert set(without.tables) == {"run", "levels", "parameters", "subsets"}  # no dedup section
    # sample sizes as the fit resolved them: half the average cluster size of each level's input
    assert [(r["level"], r["resamples"], r["sample size"]) for r in without.tables["levels"]] == [
        ("0", "3", str(round(4000 / 40 / 2))),
        ("1", "3", str(round(40 / 5 / 2))),
    ]
    assert [r["name"] for r in without.tables["run"]][0] == "hkmeans"

    labels = np.array([f"blob {b}" for b in blob])
    full = parse(curation_report(m.tree_, selected, labels=labels, info={"curated points": 300}))
    assert list(full.figures) == ["sizes-level-0", "sizes-level-1", "balance", "labels", "centroids"]
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in full.images)
    assert [(r["subset"], r["points"]) for r in full.tables["subsets"]] == [("curated", "300")]
    for tid, rows in full.tables.items():  # every table downloadable, with the same cells
        assert full.csv[f"{tid}.csv"] == rows
    summary = {r["subset"]: r for r in full.tables["label-summary"]}
    assert list(summary) == ["pool", "curated", "random"]
    counts = np.bincount(blob[selected], minlength=5)
    assert summary["curated"]["smallest label"] == str(counts.min())
    assert summary["curated"]["normalised entropy"] == f"{plot.normalized_entropy(counts):.3f}"
    assert summary["pool"]["smallest label"] == "40" and summary["pool"]["largest label"] == "2400"
    assert float(summary["curated"]["normalised entropy"]) > float(summary["random"]["normalised entropy"])
    assert int(summary["curated"]["smallest label"]) > int(summary["random"]["smallest label"])
    every = full.tables["labels"]
    assert [r["label"] for r in every] == [f"blob {b}" for b in range(5)]  # by pool count
    assert [int(r["pool count"]) for r in every] == [2400, 1000, 400, 160, 40]
    assert sum(int(r["random count"]) for r in every) == 300
    with pytest.raises(ValueError, match="selected holds no subset"):
        curation_report(m.tree_, {})
    with pytest.raises(ValueError, match="subset name 'random' is the report's own column"):
        curation_report(m.tree_, {"random": [1, 2]})
    with pytest.raises(ValueError, match="labels has 3 entries but the pool has 4000 points"):
        curation_report(m.tree_, selected, labels=[1, 2, 3])
    with pytest.raises(ValueError, match=r"subset 'curated' must be 1-D indices in \[0, 4000\)"):
        curation_report(m.tree_, [5, 4000])


def test_the_subsets_table_and_the_figures_compare_with_one_random_subset(fitted):
    """The points' labels are their top-level clusters: the label table's random
    column then counts per top cluster the random subset the figures show, and the
    subsets table's random balance must be that subset's."""
    X, _, m = fitted
    top = m.tree_.point_labels(m.tree_.n_levels - 1)
    assert np.all(m.tree_.sizes(m.tree_.n_levels - 1) > 0)  # one label per top cluster
    selected = {"curated": m.sample(300), "small": m.sample(40, random_state=1)}
    for seed in range(3):
        page = parse(curation_report(m.tree_, selected, labels=np.array([f"top {c}" for c in top]), random_state=seed))
        summary = {r["subset"]: r for r in page.tables["label-summary"]}
        subsets = {r["subset"]: r for r in page.tables["subsets"]}
        assert subsets["curated"]["balance, random"] == summary["random"]["normalised entropy"]


def test_the_dedup_section_counts_what_was_removed_and_escapes_ids(fitted):
    X, _, m = fitted
    n = len(X)
    near = X[5:6] + 0.002 * np.random.default_rng(0).normal(size=(1, X.shape[1])).astype(np.float32)
    pool = np.concatenate([X, X[:30], X[:30], near])  # 2 copies of rows 0-29, a near one of 5
    res = dedup(pool, 0.999999, keep="first", random_state=0)
    assert len(res.removed) == 61 and (res.duplicate_of[n:] == np.r_[np.arange(30), np.arange(30), 5]).all()
    ids = np.array([f"<b>doc</b> & {i}" for i in range(len(pool))])
    summary = DedupSummary.from_result(res, 0.999999, "cosine", "first", ids=ids)
    page = parse(curation_report(m.tree_, m.sample(300), dedup=summary))
    facts = {r["name"]: r["value"] for r in page.tables["dedup"]}
    assert facts["rows read"] == str(len(pool)) and facts["rows removed"] == "61"
    assert facts["share removed"] == f"{61 / len(pool):.2%}" and facts["rows kept"] == str(n)
    assert facts["groups (kept rows with duplicates)"] == "30"
    assert facts["duplicates when"] == "cosine similarity >= 0.999999; kept: first"
    groups = page.tables["dedup-groups"]
    assert groups[0] == {
        "kept row": "5",
        "id": "<b>doc</b> & 5",
        "duplicates": "3",
        "lowest similarity": repr(float(res.similarity[-1])),
    }
    assert 0.999999 <= res.similarity[-1] < 1 and groups[1]["lowest similarity"] == "1.0"  # exact copies
    assert [g["kept row"] for g in groups[1:4]] == ["0", "1", "2"] and groups[1]["duplicates"] == "2"
    assert len(groups) == 20 and page.csv["dedup-groups.csv"] == groups
    assert list(page.figures)[-1] == "dedup" and "threshold" in page.figures["dedup"]
    text = curation_report(m.tree_, m.sample(300), dedup=summary)
    assert "<b>doc</b>" not in text and "&lt;b&gt;doc&lt;/b&gt; &amp; 5" in text  # an id is text, not markup
    euclidean = dedup(pool, 0.01, metric="euclidean", keep="first", random_state=0)
    rows = DedupSummary.from_result(euclidean, 0.01, "euclidean", "first")
    assert {r["name"]: r["value"] for r in rows.rows()}["duplicates when"] == "Euclidean distance <= 0.01; kept: first"
    top = rows.groups()[0]
    mine = euclidean.similarity[euclidean.duplicate_of == top["kept row"]]
    assert top["largest distance"] == repr(float(mine.max())) and mine.max() > 0
    # nothing removed: the section says so, no figure and no groups
    none = dedup(X, 0.999999, random_state=0)
    assert len(none.removed) == 0
    page = parse(curation_report(m.tree_, m.sample(300), dedup=DedupSummary.from_result(none, 0.999999)))
    assert {r["name"]: r["value"] for r in page.tables["dedup"]}["rows removed"] == "0"
    assert "dedup-groups" not in page.tables and "dedup" not in page.figures


def test_size_plots_share_the_pool_order_and_mark_empty_clusters(fitted):
    X, _, m = fitted
    tree = m.tree_
    few = np.flatnonzero(tree.point_labels(0) < 10)[:50]  # reaches at most 10 of the 40 clusters
    fig = plot.cluster_sizes(tree, {"few": few}, level=0, random_rows=np.arange(0, 4000, 10))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    order = np.argsort(-tree.sizes(0), kind="stable")
    pool = lines["pool"].get_ydata()
    assert np.all(np.diff(pool) <= 0) and np.nansum(pool) == len(X)
    expected = plot.per_cluster(tree, few, 0)[order].astype(float)
    assert np.array_equal(lines["few"].get_ydata(), np.where(expected == 0, np.nan, expected), equal_nan=True)
    missed = int(np.count_nonzero(expected == 0))
    assert missed >= 30 and len(lines[f"few: {missed} with none"].get_xdata()) == missed
    assert np.nansum(lines["random"].get_ydata()) == 400


def test_label_figure_shows_every_label_as_plain_text(fitted):
    """Labels are drawn as text: ``$...$`` is neither parsed as math nor an error."""
    _, blob, m = fitted
    names = np.array(["$\\frac{1$", "$x^2$", "a_b", "<i>", "plain"])
    many = np.where(blob == 4, np.arange(blob.size) % 40, blob + 100)  # 44 labels
    assert len(plot.label_shares(many, m.sample(300), random_state=0).axes[0].get_xticklabels()) == 44
    fig = plot.label_shares(names[blob], m.sample(300), random_state=0, name="$\\alpha$ set")
    from matplotlib.cbook import is_math_text

    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert [t.replace(r"\$", "$") for t in ticks] == list(names)  # by pool share, each "$" escaped
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert r"\$\alpha\$ set" in legend
    assert not any(is_math_text(t) for t in ticks + legend)
    fig.savefig(io.BytesIO(), format="png")  # "$\frac{1$" parsed as math would raise here


def test_centroid_map_sizes_discs_by_points(fitted):
    _, _, m = fitted
    selected = m.sample(300)
    ax = plot.centroid_map(m.tree_, selected, np.arange(300)).axes[0]
    pool, curated, rand = ax.collections
    assert len(pool.get_offsets()) == 5
    ratio = pool.get_sizes() / m.tree_.sizes(1)
    assert np.allclose(ratio, ratio[0])
    counts = plot.per_cluster(m.tree_, selected, 1)
    assert np.allclose(curated.get_sizes() / counts, ratio[0] * 4000 / 300)


def curated_examples(n, s):
    """Curated members among the 12 examples of a cluster of ``n`` points, ``s`` of
    them curated: half, or more where too few others are left."""
    return min(s, max(6, min(12, n) - (n - s)))


def test_browser_data_names_each_cluster_its_children_and_examples(fitted):
    _, _, m = fitted
    tree, selected = m.tree_, m.sample(300)
    ids = np.array([f"doc-{i}" for i in range(tree.n_samples)])
    data = cluster_data(tree, selected, ids=ids, show=np.array([f"text {i}" for i in range(tree.n_samples)]))
    top, bottom = data["levels"][1], data["levels"][0]
    assert sorted(top["c"]) == list(range(5)) and top["n"] == sorted(top["n"], reverse=True)
    assert top["h"] == [int(np.count_nonzero(tree.labels[1] == c)) for c in top["c"]]
    assert bottom["p"] == [int(tree.labels[1][c]) for c in bottom["c"]]
    labels0 = tree.point_labels(0)
    for c, n, s, d, ex in zip(bottom["c"], bottom["n"], bottom["s"], bottom["d"], bottom["e"]):
        members = np.flatnonzero(labels0 == c)
        assert n == members.size and s == np.count_nonzero(labels0[selected] == c)
        assert d == pytest.approx(tree.distances[members].mean(), abs=1e-4)
        rows = [r for _, _, r in ex]
        assert len(rows) == min(12, n) and set(rows) <= set(members.tolist())
        assert all(i == f"doc-{r}" and cur == int(r in set(selected.tolist())) for i, cur, r in ex)
        assert sum(cur for _, cur, _ in ex) == curated_examples(n, s)
    assert data["kind"] == "text" and data["values"][str(bottom["e"][0][0][2])].startswith("text ")
    assert "<" not in to_json({"x": "</script><script>"})
    # rows picked twice (a multiplier above 1) count twice, as in the run's tables;
    # the examples are those of the rows picked
    twice = np.concatenate([selected, selected[:50]])
    again = cluster_data(tree, twice, ids=ids)
    for level, t in zip(again["levels"], range(tree.n_levels)):
        labels = tree.point_labels(t)
        assert level["s"] == [int(np.count_nonzero(labels[twice] == c)) for c in level["c"]]
        assert level["e"] == data["levels"][t]["e"]
    assert sum(again["levels"][1]["s"]) == 350


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 4000),
    k=st.integers(1, 8),
    share=st.floats(0, 1),
    max_clusters=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_browser_examples_are_each_clusters_smallest_keys_however_few_pass_the_screen(n, k, share, max_clusters, seed):
    """The screen by key limits (with the default share let through, with almost none,
    so that clusters pass again, and with every row) gives the examples of a full
    sort of every cluster's rows by key."""
    from hkmeans import browser

    rng = np.random.default_rng(seed)
    labels0 = rng.integers(k, size=n)
    tree = ClusterTree.from_labels([labels0, rng.integers(3, size=k)])
    selected = rng.choice(n, int(share * n), replace=False)
    found = []
    for oversample in (browser.OVERSAMPLE, 1e-3, 1e12):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(browser, "OVERSAMPLE", oversample)
            data = cluster_data(tree, selected, random_state=seed, max_clusters=max_clusters)
        found.append([level["e"] for level in data["levels"]])
    assert found[0] == found[1] == found[2]
    assert all(len(ex) == min(12, size) for level in data["levels"] for ex, size in zip(level["e"], level["n"]))


def test_browser_row_keys_are_a_chunks_own_and_distinct():
    from hkmeans.browser import row_keys

    rows = np.arange(100_000)
    keys = row_keys(rows, 12345)
    assert np.unique(keys).size == rows.size and keys.max() < 2**63
    np.testing.assert_array_equal(np.concatenate([row_keys(rows[:777], 12345), row_keys(rows[777:], 12345)]), keys)
    assert not np.array_equal(row_keys(rows, 12346), keys)


@pytest.mark.slow
def test_a_report_of_100000_clusters_stays_small_and_says_what_it_shows():
    rng = np.random.default_rng(0)
    labels0 = np.concatenate([np.arange(100_000), rng.integers(100_000, size=100_000)])
    tree = ClusterTree.from_labels([labels0, rng.integers(300, size=100_000)])
    text = curation_report(
        tree, rng.choice(tree.n_samples, 5000, replace=False), ids=np.array([f"id-{i}" for i in range(tree.n_samples)])
    )
    assert len(text.encode()) < 20 << 20
    page = parse(text)
    level0 = page.data["levels"][0]
    assert level0["k"] == 100_000 and len(level0["c"]) == 2000
    assert (
        level0["note"] == "2000 of its 100000 clusters: the 500 largest, the 500 smallest and 1000 others "
        "drawn at random"
    )
    sizes = tree.sizes(0)
    assert level0["n"][:500] == sorted(sizes, reverse=True)[:500]
    assert page.tables["levels"][0]["clusters"] == "100000"


def test_command_line_report_and_advise(tmp_path):
    X, blob = unbalanced(seed=1)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "labels.npy", blob)
    proc = hkmeans("advise", tmp_path / "x.npy", "--target-size", 300)
    (tmp_path / "c.toml").write_text(proc.stdout)
    hkmeans(
        "curate",
        tmp_path / "x.npy",
        "--out",
        tmp_path / "run",
        "--config",
        tmp_path / "c.toml",
        "--target-size",
        300,
        "-q",
    )
    hkmeans("report", tmp_path / "run", "--labels", tmp_path / "labels.npy", "-o", tmp_path / "r.html")
    page = parse((tmp_path / "r.html").read_text())
    levels = ClusterTree.load(tmp_path / "run" / "tree.npz").n_levels
    assert levels == 2  # the advice for 4000 points and a target of 300
    assert list(page.figures) == ["sizes-level-0", "sizes-level-1", "balance", "labels", "centroids"]
    assert "dedup" not in page.tables and "dedup-groups" not in page.tables  # the run removed nothing
    run = {r["name"]: r["value"] for r in page.tables["run"]}
    assert {"hkmeans", "created", "finished", "fit, created to finished (s)", "level 0 (s)"} <= set(run)
    assert all(r["sample size"] not in ("None", "") for r in page.tables["levels"])
    assert "normalised entropy" in page.tables["label-summary"][0]
    np.save(tmp_path / "short.npy", blob[:10])
    bad = hkmeans("report", tmp_path / "run", "--labels", tmp_path / "short.npy", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "labels of shape (10,)" in bad.stderr
    assert not (tmp_path / "run" / "report.html").exists()
    bad = hkmeans("report", tmp_path / "run", "-o", tmp_path / "x.npy", check=False)
    assert bad.returncode == 2 and "is the input embeddings file" in bad.stderr
    bad = hkmeans("report", tmp_path / "run", "--show", "caption", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "neither a file nor a column" in bad.stderr
    assert not (tmp_path / "run" / "report.html").exists()
    # values to show: one per line, whatever other line-break characters a line holds
    (tmp_path / "show.txt").write_text("".join(f"row {i} \x85 \u2028 \x0c end\n" for i in range(len(X))), "utf-8")
    hkmeans("report", tmp_path / "run", "--show", tmp_path / "show.txt", "-o", tmp_path / "s.html")
    # a subset upsampled past the pool (multiplier 2), in a locale without the page's characters
    hkmeans("sample", tmp_path / "run", "--target-size", 2 * len(X) - 5, "--multiplier", 2)
    env = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING="ascii")
    proc = hkmeans("report", tmp_path / "run", "-o", tmp_path / "up.html", env=env)
    assert proc.returncode == 0 and "\u2605" in (tmp_path / "up.html").read_text("utf-8")


def test_command_line_report_of_a_deduplicated_run(tmp_path):
    """``curate --dedup``: the report's dedup section from the run's dedup.npz, ids of
    the pool in its tables and browser, labels given per row of the pool or of the
    rows kept."""
    X, blob = unbalanced(n=2000, seed=4)
    copies = np.arange(0, 2000, 10)  # 200 rows copied, row 0 three more times
    pool = np.concatenate([X, X[copies], X[[0, 0, 0]]])
    labels = np.concatenate([blob, blob[copies], blob[[0, 0, 0]]])
    np.save(tmp_path / "x.npy", pool)
    np.save(tmp_path / "labels.npy", labels)
    ids = np.array([f"<i>{i}</i>" for i in range(len(pool))])
    np.save(tmp_path / "ids.npy", ids)
    run_dir = tmp_path / "run"
    hkmeans("curate", tmp_path / "x.npy", "--out", run_dir, "--n-clusters", "40,5", "--n-resamples", 1,
            "--target-size", 300, "--dedup", 0.9999999, "--dedup-keep", "first", "--ids", tmp_path / "ids.npy",
            "-q")  # fmt: skip
    with np.load(run_dir / "dedup.npz") as f:
        kept, removed = f["kept"], f["removed"]
    np.testing.assert_array_equal(removed, np.arange(2000, 2203))
    hkmeans("report", run_dir, "--labels", tmp_path / "labels.npy", "-o", tmp_path / "r.html")
    text = (tmp_path / "r.html").read_text()
    page = parse(text)
    facts = {r["name"]: r["value"] for r in page.tables["dedup"]}
    assert (facts["rows read"], facts["rows removed"], facts["rows kept"]) == ("2203", "203", "2000")
    assert facts["share removed"] == f"{203 / 2203:.2%}"
    assert facts["duplicates when"] == "cosine similarity >= 0.9999999; kept: first"
    top = page.tables["dedup-groups"][0]
    assert (top["kept row"], top["id"], top["duplicates"]) == ("0", "<i>0</i>", "4")
    assert "<i>0</i>" not in text  # ids are text in the page
    assert list(page.figures)[-1] == "dedup"
    pool_label = {r["label"]: r["pool count"] for r in page.tables["labels"]}
    assert sum(map(int, pool_label.values())) == 2000  # the labels of the rows kept
    assert pool_label == {str(b): str(c) for b, c in zip(*np.unique(blob, return_counts=True))}
    shown = [example for level in page.data["levels"] for cluster in level["e"] for example in cluster]
    assert shown and all(name == f"<i>{kept[row]}</i>" for name, _, row in shown)
    np.save(tmp_path / "kept-labels.npy", labels[kept])  # one per row kept: the same report
    hkmeans("report", run_dir, "--labels", tmp_path / "kept-labels.npy", "-o", tmp_path / "r2.html")
    assert parse((tmp_path / "r2.html").read_text()).tables["labels"] == page.tables["labels"]
    bad = hkmeans("report", run_dir, "--labels", tmp_path / "x.npy", check=False)
    assert bad.returncode == 2 and "for a pool of 2000 rows (2203 before dedup)" in bad.stderr


def test_command_line_report_of_a_run_on_a_subset_takes_values_per_input_row(tmp_path):
    """``fit --subset-indices`` (and a dedup step): labels and values to show are taken
    one per row of the whole input too, at the rows fitted."""
    X, blob = unbalanced(n=2000, seed=5)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "labels.npy", blob)
    (tmp_path / "show.txt").write_text("".join(f"input row {i}\n" for i in range(len(X))))
    subset = np.arange(0, len(X), 3)
    np.save(tmp_path / "rows.npy", subset)
    for flags in ((), ("--dedup", 0.9999999)):
        run_dir = tmp_path / f"run{len(flags)}"
        hkmeans("curate", tmp_path / "x.npy", "--out", run_dir, "--n-clusters", "20,4", "--n-resamples", 1,
                "--target-size", 100, "--subset-indices", tmp_path / "rows.npy", *flags, "-q")  # fmt: skip
        out = tmp_path / f"r{len(flags)}.html"
        hkmeans("report", run_dir, "--labels", tmp_path / "labels.npy", "--show", tmp_path / "show.txt", "-o", out)
        page = parse(out.read_text())
        pool = {r["label"]: int(r["pool count"]) for r in page.tables["labels"]}
        assert pool == {str(b): int(c) for b, c in zip(*np.unique(blob[subset], return_counts=True))}
        examples = [e for level in page.data["levels"] for cluster in level["e"] for e in cluster]
        assert examples and all(page.data["values"][str(row)] == f"input row {name}" for name, _, row in examples)
    np.save(tmp_path / "short.npy", blob[:10])
    bad = hkmeans("report", run_dir, "--labels", tmp_path / "short.npy", check=False)
    assert bad.returncode == 2 and "(667 before dedup) (2000 in the whole input)" in bad.stderr


def test_labels_per_row_of_a_subset_the_dedup_thinned(tmp_path):
    """Labels one per row of the subset, or of the whole input, of a run whose dedup
    removed rows of its subset: the same labels for the rows kept."""
    X, blob = unbalanced(n=2000, seed=5)
    subset = np.arange(0, len(X), 3)
    X[subset[1:100:2]] = X[subset[0:99:2]]  # 50 copies inside the subset
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "rows.npy", subset)
    run_dir = tmp_path / "run"
    hkmeans("curate", tmp_path / "x.npy", "--out", run_dir, "--n-clusters", "20,4", "--n-resamples", 1,
            "--target-size", 100, "--subset-indices", tmp_path / "rows.npy", "--dedup", 0.9999999, "-q")  # fmt: skip
    with np.load(run_dir / "dedup.npz") as f:
        kept = f["kept"]
    assert len(kept) == len(subset) - 50
    tables = []
    for name, labels in (("whole.npy", blob), ("subset.npy", blob[subset])):
        np.save(tmp_path / name, labels)
        hkmeans("report", run_dir, "--labels", tmp_path / name, "-o", tmp_path / f"{name}.html")
        tables.append(parse((tmp_path / f"{name}.html").read_text()).tables["labels"])
    assert tables[0] == tables[1]
    counts = {r["label"]: int(r["pool count"]) for r in tables[0]}
    assert counts == {str(b): int(c) for b, c in zip(*np.unique(blob[kept], return_counts=True))}


def test_command_line_report_shows_every_target_size_of_the_run(tmp_path):
    """``sample --target-size 100,300`` writes a subset per size; the report shows each
    (a row of the subsets table, a line per cluster-size figure, a star of the balance
    figure), and ``indices.npy`` first once there is one."""
    X, blob = unbalanced(seed=2)
    np.save(tmp_path / "x.npy", X)
    hkmeans("fit", tmp_path / "x.npy", "--out", tmp_path / "run", "--n-clusters", "40,5", "--n-resamples", 2, "-q")
    hkmeans("sample", tmp_path / "run", "--target-size", "300,100", "-q")
    hkmeans("report", tmp_path / "run", "-o", tmp_path / "r.html", "--force")
    page = parse((tmp_path / "r.html").read_text())
    subsets = page.tables["subsets"]
    assert [row["subset"] for row in subsets] == ["indices-100.npy", "indices-300.npy"]
    assert [row["points"] for row in subsets] == ["100", "300"]
    for row in subsets:
        assert float(row["balance, curated"]) > float(row["balance, random"]), row
        assert row["top-level clusters reached (of 5)"] == "5"
    assert list(page.figures) == ["sizes-level-0", "sizes-level-1", "balance", "centroids"]

    hkmeans("sample", tmp_path / "run", "--target-size", 200, "--strategy", "closest", "-q")
    hkmeans("report", tmp_path / "run", "-o", tmp_path / "r.html", "--force")
    subsets = parse((tmp_path / "r.html").read_text()).tables["subsets"]
    assert [row["subset"] for row in subsets] == ["indices.npy", "indices-100.npy", "indices-300.npy"]
    assert subsets[0]["points"] == "200"

    hkmeans("report", tmp_path / "run", "--target-size", 50, "-o", tmp_path / "r.html", "--force")
    assert [row["points"] for row in parse((tmp_path / "r.html").read_text()).tables["subsets"]] == ["50"]


@pytest.mark.parametrize("pattern", ["", "*.parquet"])
def test_shown_column_of_parquet_files_follows_the_rows_order(tmp_path, pattern):
    """The values of ``--show COLUMN`` of a folder (or glob) of Parquet files are the
    rows' own: the files taken in the order the rows were read (part-2 before
    part-10), not in sorted order."""
    pytest.importorskip("pyarrow")
    from .sources import write_parquet

    X, _ = unbalanced(n=600, seed=4)
    (tmp_path / "pool").mkdir()
    for name, rows in (("part-2", slice(0, 300)), ("part-10", slice(300, 600))):
        ids = np.array([f"row{i}" for i in range(600)])[rows]
        write_parquet(tmp_path / "pool" / f"{name}.parquet", X[rows], 100, id=ids, cap=np.char.add("cap-", ids))
    source = tmp_path / "pool" / pattern if pattern else tmp_path / "pool"
    fit = ("--column", "emb", "--n-clusters", "12,3", "--n-resamples", 1, "--target-size", 60, "-q")
    hkmeans("curate", source, "--out", tmp_path / "run", *fit)
    hkmeans("report", tmp_path / "run", "--show", "cap", "-o", tmp_path / "t.html")
    data = parse((tmp_path / "t.html").read_text()).data
    examples = [x for level in data["levels"] for cluster in level["e"] for x in cluster]
    assert examples and all(data["values"][str(row)] == f"cap-{name}" for name, _, row in examples)
    assert all(name == f"row{row}" for name, _, row in examples)  # the ids the files were written with


def test_command_line_report_shows_text_and_image_columns(tmp_path):
    """``--show`` a Parquet column of text (snippets) and a file of image paths
    (thumbnails, curated members marked)."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    Image = pytest.importorskip("PIL.Image")
    X, _ = unbalanced(n=1000, seed=3)
    emb = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
    text = pa.array([f"caption {i} " + "word " * (i % 50) for i in range(len(X))])
    ids = pa.array([f"img-{i}" for i in range(len(X))])
    pq.write_table(pa.table({"id": ids, "emb": emb, "caption": text}), tmp_path / "pool.parquet")
    for colour in range(4):
        Image.new("RGB", (200, 120), (60 * colour, 90, 200)).save(tmp_path / f"p{colour}.png")
    (tmp_path / "paths.txt").write_text("\n".join(str(tmp_path / f"p{i % 4}.png") for i in range(len(X))))
    hkmeans(
        "curate",
        tmp_path / "pool.parquet",
        "--out",
        tmp_path / "run",
        "--n-clusters",
        "20,4",
        "--n-resamples",
        1,
        "--target-size",
        100,
        "-q",
    )

    hkmeans("report", tmp_path / "run", "--show", "caption", "-o", tmp_path / "t.html")
    data = parse((tmp_path / "t.html").read_text()).data
    assert data["kind"] == "text"
    example = data["levels"][0]["e"][0][0]
    assert example[0] == f"img-{example[2]}"
    snippet = data["values"][str(example[2])]
    assert snippet.startswith(f"caption {example[2]} ") and len(snippet) <= 120

    hkmeans("report", tmp_path / "run", "--show", tmp_path / "paths.txt", "-o", tmp_path / "i.html")
    data = parse((tmp_path / "i.html").read_text()).data
    assert data["kind"] == "image"
    thumbs = list(data["values"].values())
    assert thumbs and all(t.startswith("data:image/jpeg;base64,") for t in thumbs)
    image = Image.open(io.BytesIO(base64.b64decode(thumbs[0].split(",", 1)[1])))
    assert image.size == (64, 38)
    top = data["levels"][-1]
    assert all(sum(cur for _, cur, _ in ex) == curated_examples(n, s) for ex, n, s in zip(top["e"], top["n"], top["s"]))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ATTACKS = (
    "<script>document.title='x'</script>",
    "<img src=x onerror=\"document.title='y'\">",
    "</script><b id=injected>b</b>",
    "$x^2$ & &amp; \u2028",
)


class Dom(HTMLParser):
    """The elements of a page and its text."""

    def __init__(self):
        super().__init__()
        self.tags, self.text, self.title = [], [], None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_title = tag == "title"

    def handle_data(self, data):
        self.text.append(data)
        if self._in_title:
            self.title, self._in_title = data, False


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on the PATH (.ci/run installs Debian's)")
def test_user_strings_stay_text_in_a_real_browser(fitted, tmp_path):
    """Labels, ids, shown values, subset names and run facts that look like HTML reach
    the page as text: headless Chromium runs the page's script, opens a cluster (the
    address's ``#c=``) and its DOM holds no element or script they would inject."""
    _, blob, m = fitted
    n = m.tree_.n_samples
    pick = np.arange(n) % len(ATTACKS)
    labels = np.array([f"{ATTACKS[b % 4]} {b}" for b in blob])
    ids = np.array([f"{ATTACKS[p]}#{i}" for i, p in enumerate(pick)])
    text = curation_report(
        m.tree_,
        {ATTACKS[0]: m.sample(300)},
        labels=labels,
        ids=ids,
        show=ids[::-1].copy(),
        params={ATTACKS[1]: ATTACKS[2]},
        info={"input": ATTACKS[1]},
    )
    page = tmp_path / "report.html"
    page.write_text(text)
    cluster = parse(text).data["levels"][0]["c"][0]
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"{page.as_uri()}#c=0.{cluster}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = Dom()
    dom.feed(proc.stdout)
    assert dom.title == "hkmeans curation report", proc.stderr[-2000:]
    assert sum(tag == "script" for tag, _ in dom.tags) == 2  # the data and the page's own script
    assert not [attrs for _, attrs in dom.tags if "onerror" in attrs or attrs.get("id") == "injected"]
    assert all(attrs["src"].startswith("data:image/") for tag, attrs in dom.tags if tag == "img")
    assert not [tag for tag, _ in dom.tags if tag == "b"]
    shown = "".join(dom.text)
    assert "level 0 cluster" in shown  # the script ran and opened the cluster
    assert all(f"{attack}#" in shown for attack in ATTACKS)  # ids, in the tables the script drew
    assert all(f"{ATTACKS[b % 4]} {b}" in shown for b in range(5))  # labels, in the label table


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on the PATH (.ci/run installs Debian's)")
def test_a_link_to_a_level_the_page_lacks_raises_no_script_error(fitted, tmp_path):
    _, _, m = fitted
    page = tmp_path / "report.html"
    page.write_text(curation_report(m.tree_, {"s": m.sample(100)}))
    for where in ("#c=9.0", "#c=0.99999"):
        proc = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                f"{page.as_uri()}{where}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "Top level:" in proc.stdout  # the script ran
        assert "Uncaught" not in proc.stderr, proc.stderr[-2000:]


def test_a_null_image_path_shows_no_thumbnail(tmp_path):
    from hkmeans.browser import _values

    pytest.importorskip("PIL")
    show = np.array([str(tmp_path / "missing.png"), None], dtype=object)
    assert _values(show, [0, 1], "image") == {0: None, 1: None}


def test_labels_errors_of_a_parquet_file_name_it_once(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from hkmeans.cli.config import ConfigError
    from hkmeans.cli.inputs import read_labels

    pq.write_table(pa.table({"label": pa.array(["a", None, "b"])}), tmp_path / "lab.parquet")
    with pytest.raises(ConfigError, match="holds 1 null") as e:
        read_labels(str(tmp_path / "lab.parquet"), None, 3)
    assert str(e.value).count("lab.parquet") == 1 and "cannot read labels" not in str(e.value)


def test_the_tables_count_picks_shares_and_the_weights_of_the_pool():
    tree = ClusterTree.from_labels([np.arange(12) % 4, np.arange(4) % 2])
    (row,) = subset_rows(tree, {"s": [0, 0, 1, 1, 2]})
    assert row["points"] == 5 and row["distinct points"] == 3  # a subset drawn with repeats
    labels = np.array(["a"] * 6 + ["b"] * 6)
    per_label, summary = label_rows(labels, {"pool": None, "curated": np.array([0, 1])})
    assert sum(float(r["curated share"]) for r in per_label) == pytest.approx(1)
    assert {r["subset"]: r["coverage"] for r in summary} == {"pool": "1.000", "curated": "0.500"}
    split = level_rows(tree, {"n_resamples": 3, "n_splits": [2, 1], "sample_size": [2, 2]})
    assert (split[0]["resamples"], split[0]["sample size"]) == (0, "-") and split[1]["resamples"] == 3
    weighted = ClusterTree([np.arange(12) % 4, np.arange(4) % 2], sample_weight=np.full(12, 10.0))
    assert level_rows(weighted, {"n_resamples": 1})[0]["sample size"] == 15  # half of 120 / 4


def test_a_clusters_mean_distance_above_level_0_is_over_its_children():
    from hkmeans.browser import _mean_distances

    children = np.array([[0.0, 0.0], [0.0, 2.0], [5.0, 0.0], [5.0, 4.0]])
    parents = np.array([[0.0, 1.0], [5.0, 1.0]])
    tree = ClusterTree([np.arange(12) % 4, np.array([0, 0, 1, 1])], centroids=[children, parents])
    np.testing.assert_allclose(_mean_distances(tree, 1), [1.0, 2.0])  # (1 + 1) / 2, (1 + 3) / 2
