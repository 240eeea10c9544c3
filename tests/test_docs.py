"""The documentation: every fenced ``python`` block of README.md and docs/ runs, the
figures exist and stay small, and ``mkdocs build --strict`` is clean.

Blocks run in order, page by page, in one namespace per page, in a temporary folder
holding small versions of the files the examples name (``embeddings.npy``,
``pool.zarr``, ``shards/``). A block preceded by ``<!-- skip: reason -->`` is skipped
with that reason, and so is one importing a package that is not installed (a cluster's
or a GPU's); ``<!-- setup: code -->`` runs ``code`` (not shown on the page) first.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*(skip|setup):\s*((?:(?!-->).)*?)\s*-->\s*\Z", re.S)
IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_][\w]*)", re.M)


def _blocks(page: Path):
    """``(line, code, marker, argument)`` for each ```python block of ``page``."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = MARKER.search(text[: m.start()])
        kind, arg = (before.group(1), before.group(2)) if before else (None, None)
        out.append((text.count("\n", 0, m.start()) + 1, m.group(1), kind, arg))
    return out


BLOCKS = [(page, *block) for page in PAGES for block in _blocks(page)]


def _missing_module(code: str):
    for name in IMPORT.findall(code):
        if importlib.util.find_spec(name) is None:
            return name
    return None


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with the files the examples read."""
    path = tmp_path_factory.mktemp("docs")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16)).astype(np.float32)
    X = centres[rng.integers(40, size=3000)] + 0.2 * rng.normal(size=(3000, 16)).astype(np.float32)
    np.save(path / "embeddings.npy", X)
    (path / "shards").mkdir()
    for i in range(3):
        np.save(path / "shards" / f"part-{i}.npy", X[i * 500 : (i + 1) * 500])
    if importlib.util.find_spec("zarr") and importlib.util.find_spec("dask"):
        import dask.array as da

        da.from_array(X[:2000], chunks=(500, 16)).to_zarr(str(path / "pool.zarr"))
    return path


@pytest.fixture(scope="module")
def namespaces():
    """One namespace per page, shared by its blocks in order."""
    return {}


@pytest.fixture(scope="module")
def dask_client():
    """An in-process Dask client, made active, for pages that fit on dask arrays (the
    estimator would otherwise start a cluster of worker processes)."""
    if importlib.util.find_spec("distributed") is None:
        yield None
        return
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        yield client


def test_markers_are_read(tmp_path):
    """A marker applies to the block right after it, and to no later one."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- skip: needs a cluster -->\n```python\nraise SystemExit\n```\n\n"
        "Text.\n\n```python\nx = 1\n```\n\n"
        "<!-- setup: import numpy as np -->\n\n```python\nnp.zeros(1)\n```\n"
    )
    got = [(code, kind, arg) for _, code, kind, arg in _blocks(page)]
    assert got == [
        ("raise SystemExit\n", "skip", "needs a cluster"),
        ("x = 1\n", None, None),
        ("np.zeros(1)\n", "setup", "import numpy as np"),
    ]


def test_blocks_are_found():
    """The collector sees the examples (a broken pattern would pass every page)."""
    pages = {page.name for page, *_ in BLOCKS}
    assert {"README.md", "getting-started.md", "levels.md", "sampling.md", "metric.md"} <= pages
    assert len(BLOCKS) >= 10


@pytest.mark.parametrize(
    "page, line, code, kind, arg",
    BLOCKS,
    ids=[f"{p.relative_to(ROOT)}:{line}" for p, line, *_ in BLOCKS],
)
def test_example_runs(page, line, code, kind, arg, workdir, namespaces, request, monkeypatch):
    if kind == "skip":
        pytest.skip(arg)
    missing = _missing_module(code)
    if missing:
        pytest.skip(f"needs {missing}, not installed")
    if "dask" in code:
        request.getfixturevalue("dask_client")
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ns = namespaces.setdefault(page, {"__name__": "__docs__"})
    if kind == "setup":
        exec(compile(arg, f"{page.name}:{line} (setup)", "exec"), ns)
    exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), ns)


def test_figures_exist_and_are_small():
    """Every image a page shows is committed and under 150 KB."""
    images = set()
    for page in (ROOT / "docs").rglob("*.md"):
        for src in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            images.add((page.parent / src).resolve())
    assert images, "no figures found on the site"
    for image in images:
        assert image.is_file(), image
        assert image.stat().st_size < 150_000, f"{image.name}: {image.stat().st_size} bytes"


def test_mkdocs_build_strict(tmp_path):
    """The site builds without a warning (broken links, docstrings griffe cannot parse)."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            pytest.skip(f'{module} is not installed: pip install ".[docs]"')
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "api" / "estimators" / "index.html").is_file()
    assert "HierarchicalKMeans" in (tmp_path / "site" / "api" / "estimators" / "index.html").read_text()
    for page in (tmp_path / "site" / "api").rglob("*.html"):  # docs/griffe_roles.py rewrote every role
        assert not re.search(r":(func|class|meth|data|mod|attr):<code>", page.read_text()), page
