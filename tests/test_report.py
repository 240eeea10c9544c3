"""The curation report and its figures, from Python and from the command line."""

from html.parser import HTMLParser

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from hkmeans import ClusterTree, HierarchicalKMeans, plot  # noqa: E402
from hkmeans.report import curation_report  # noqa: E402

from .test_cli import hkmeans  # noqa: E402


class Page(HTMLParser):
    """Figure ids, their images' sources, table headers and the rows of the table of
    curated subsets (column name to text) of a report."""

    def __init__(self):
        super().__init__()
        self.figures, self.images, self.headers, self.subsets = [], [], [], []
        self._cell, self._in_subsets, self._columns, self._row = None, False, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figures.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._in_subsets = attrs.get("id") == "subsets"
        elif tag == "tr":
            self._row = []
        self._cell = tag if tag in ("th", "td") else None

    def handle_endtag(self, tag):
        if tag == "tr" and self._in_subsets and self._row:
            self.subsets.append(dict(zip(self._columns, self._row)))
        elif tag == "table":
            self._in_subsets = False

    def handle_data(self, data):
        if self._cell == "th":
            self.headers.append(data)
            if self._in_subsets:
                self._columns.append(data)
        elif self._cell == "td" and self._in_subsets:
            self._row.append(data)
        self._cell = None


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
    assert plot.normalized_entropy([0, 9, 0]) == 0.0
    assert 0 < plot.normalized_entropy([1, 2, 30]) < 1


def test_curation_is_more_balanced_than_random_on_unbalanced_blobs(fitted):
    _, _, m = fitted
    sizes, curated, rand = plot.balance_curve(m.tree_, [100, 400], random_state=0)
    assert sizes == [100, 400]
    assert all(c > r for c, r in zip(curated, rand)), (curated, rand)


def test_the_report_holds_every_figure_with_and_without_labels(fitted):
    X, blob, m = fitted
    selected = m.sample(300)
    without = parse(curation_report(m.tree_, selected, params={"n_clusters": (40, 5)}))
    assert without.figures == ["sizes-level-0", "sizes-level-1", "balance"]
    full = parse(curation_report(m.tree_, selected, X, labels=blob.astype(str), info={"curated points": 300}))
    assert full.figures == ["sizes-level-0", "sizes-level-1", "balance", "labels", "projection"]
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in full.images)
    assert "curated points" in full.headers and "n_clusters" in without.headers
    assert [(row["subset"], row["points"]) for row in full.subsets] == [("curated", "300")]
    with pytest.raises(ValueError, match="selected holds no subset"):
        curation_report(m.tree_, {})
    with pytest.raises(ValueError, match="labels has 3 entries but the pool has 4000 points"):
        curation_report(m.tree_, selected, labels=[1, 2, 3])


def test_plot_functions_return_figures_with_what_they_show(fitted):
    X, blob, m = fitted
    selected = m.sample(300)
    fig = plot.cluster_sizes(m.tree_, selected, level=1)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2 and lines[0].get_ydata().sum() == len(X) and lines[1].get_ydata().sum() == 300
    several = {"a": m.sample(100), "b": selected}
    lines = plot.cluster_sizes(m.tree_, several, level=0).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["pool", "a", "b"]
    assert [line.get_ydata().sum() for line in lines[1:]] == [100, 300]
    stars = plot.balance(m.tree_, [10, 100], random_state=0, selected=several).axes[0].get_lines()[-1]
    assert stars.get_label() == "selected subsets" and list(stars.get_xdata()) == [100, 300]
    assert all(0.9 < e < 1 + 1e-9 for e in stars.get_ydata())  # these blobs: about even
    assert len(plot.label_shares(blob, selected).axes[0].patches) == 3 * 5
    assert "PCA of 3000 pool points" in plot.projection(X, m.tree_, selected).axes[0].get_title()


def test_command_line_report_and_advise(tmp_path):
    X, blob = unbalanced(seed=1)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "labels.npy", blob)
    proc = hkmeans("advise", tmp_path / "x.npy", "--target-size", 300)
    (tmp_path / "c.toml").write_text(proc.stdout)
    hkmeans("curate", tmp_path / "x.npy", "--out", tmp_path / "run", "--config", tmp_path / "c.toml",
            "--target-size", 300, "-q")
    hkmeans("report", tmp_path / "run", "--labels", tmp_path / "labels.npy", "-o", tmp_path / "r.html")
    page = parse((tmp_path / "r.html").read_text())
    levels = ClusterTree.load(tmp_path / "run" / "tree.npz").n_levels
    assert levels == 2  # the advice for 4000 points and a target of 300
    assert page.figures == ["sizes-level-0", "sizes-level-1", "balance", "labels", "projection"]
    assert "created" in page.headers and "finished" in page.headers
    np.save(tmp_path / "short.npy", blob[:10])
    bad = hkmeans("report", tmp_path / "run", "--labels", tmp_path / "short.npy", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "labels of shape (10,)" in bad.stderr
    assert not (tmp_path / "run" / "report.html").exists()
    bad = hkmeans("report", tmp_path / "run", "-o", tmp_path / "x.npy", check=False)
    assert bad.returncode == 2 and "is the input embeddings file" in bad.stderr


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
    assert [row["subset"] for row in page.subsets] == ["indices-100.npy", "indices-300.npy"]
    assert [row["points"] for row in page.subsets] == ["100", "300"]
    for row in page.subsets:
        assert float(row["balance, curated"]) > float(row["balance, random"]), row
        assert row["top-level clusters reached (of 5)"] == "5"
    assert page.figures == ["sizes-level-0", "sizes-level-1", "balance", "projection"]

    hkmeans("sample", tmp_path / "run", "--target-size", 200, "--strategy", "closest", "-q")
    hkmeans("report", tmp_path / "run", "-o", tmp_path / "r.html", "--force")
    page = parse((tmp_path / "r.html").read_text())
    assert [row["subset"] for row in page.subsets] == ["indices.npy", "indices-100.npy", "indices-300.npy"]
    assert page.subsets[0]["points"] == "200"

    hkmeans("report", tmp_path / "run", "--target-size", 50, "-o", tmp_path / "r.html", "--force")
    assert [row["points"] for row in parse((tmp_path / "r.html").read_text()).subsets] == ["50"]
