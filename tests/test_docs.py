"""The documentation: every fenced ``python`` and shell (``bash``, ``sh``, ``shell``,
``console``) block of README.md and docs/ runs, the figures exist and stay small, and
``mkdocs build --strict`` is clean.

Blocks run in order, page by page, each page in a folder of its own holding small
versions of the files the examples name (``embeddings.npy``, 3000 x 16; ``labels.npy``;
``shards/``; ``pool.zarr``; ``pool.parquet``, with ``id`` and ``emb`` columns): its
python blocks in one namespace, its shell blocks with ``bash`` (``set -euo pipefail``)
and ``python`` and ``hkmeans`` running this interpreter, so that a later block may use
what an earlier one wrote. A block preceded by ``<!-- skip: reason -->`` is skipped with
that reason; so is a python block importing a package that is not installed (a
cluster's or a GPU's) and a shell block calling a command that is not on the PATH
(``sbatch``, ``nvidia-smi``). ``<!-- setup: code -->`` runs ``code``, in the block's
language and not shown on the page, first. How blocks are found and run:
``tests/doc_examples.py``.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .doc_examples import (
    Block,
    blocks,
    command_folder,
    commands,
    hkmeans_commands,
    run_commands,
    run_python,
    run_shell,
    skip_reason,
    where,
)

# the examples' processes find the kernels compiled
pytestmark = pytest.mark.usefixtures("warm_kernels")

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
BLOCKS = [block for page in PAGES for block in blocks(page)]


@pytest.fixture(scope="module")
def example_files(tmp_path_factory):
    """A folder with the files the examples read."""
    path = tmp_path_factory.mktemp("example-files")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 16)).astype(np.float32)
    concept = rng.integers(40, size=3000)
    X = centres[concept] + 0.2 * rng.normal(size=(3000, 16)).astype(np.float32)
    np.save(path / "embeddings.npy", X)
    np.save(path / "labels.npy", np.array([f"concept-{c}" for c in concept]))
    (path / "shards").mkdir()
    for i in range(3):
        np.save(path / "shards" / f"part-{i}.npy", X[i * 500 : (i + 1) * 500])
    if importlib.util.find_spec("zarr") and importlib.util.find_spec("dask"):
        import dask.array as da

        da.from_array(X[:2000], chunks=(500, 16)).to_zarr(str(path / "pool.zarr"))
    if importlib.util.find_spec("pyarrow"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        emb = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])
        ids = pa.array([f"img/{i:05d}.jpg" for i in range(len(X))])
        pq.write_table(pa.table({"id": ids, "emb": emb}), path / "pool.parquet", row_group_size=1000)
    return path


@pytest.fixture(scope="module")
def page_folder(example_files):
    """The folder of a page: a copy of the example files, made on first use (named
    after them: a worker that comes back to this module makes both anew)."""
    folders = {}

    def folder(page: Path) -> Path:
        if page not in folders:
            folders[page] = example_files.parent / f"{example_files.name}-page-{len(folders)}-{page.stem}"
            shutil.copytree(example_files, folders[page])
        return folders[page]

    return folder


@pytest.fixture(scope="module")
def shell_env(tmp_path_factory):
    """The environment of the shell blocks: ``python`` and ``hkmeans`` of this
    interpreter first on the PATH, then its own folder of commands (``mkdocs``, ...)."""
    bin_dir = command_folder(tmp_path_factory.mktemp("bin"))
    path = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    return dict(os.environ, PATH=path, MPLBACKEND="Agg")


@pytest.fixture(scope="module")
def namespaces():
    """One namespace per page, shared by its blocks in order, and the lines of the
    blocks run in it (under ``(page, "run")``)."""
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
    """A marker applies to the block right after it, and to no later one; a console
    block's commands are its ``$`` lines, on their lines of the page."""
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- skip: needs a cluster -->\n```python\nraise SystemExit\n```\n\n"
        "Text.\n\n```python\nx = 1\n```\n\n"
        "<!-- setup: import numpy as np -->\n\n```python\nnp.zeros(1)\n```\n"
        "<!-- setup: export N=3 -->\n```bash\necho $N\n```\n"
        "```console\n$ hkmeans info run/ \\\n    | head -1\nrun directory ...\n```\n"
    )
    got = [(b.line, b.language, b.code, b.marker, b.argument) for b in blocks(page)]
    assert got == [
        (2, "python", "raise SystemExit\n", "skip", "needs a cluster"),
        (8, "python", "x = 1\n", None, None),
        (14, "python", "np.zeros(1)\n", "setup", "import numpy as np"),
        (18, "shell", "echo $N\n", "setup", "export N=3"),
        (21, "shell", "hkmeans info run/ \\\n    | head -1\n\n", None, None),
    ]


def test_blocks_are_found():
    """The collector sees the examples (a broken pattern would pass every page)."""
    python = {b.page.name for b in BLOCKS if b.language == "python"}
    shell = {b.page.name for b in BLOCKS if b.language == "shell"}
    assert {"README.md", "getting-started.md", "levels.md", "sampling.md", "metric.md"} <= python
    assert {"README.md", "cli.md", "getting-started.md", "scaling.md", "testing.md"} <= shell
    assert sum(b.language == "shell" for b in BLOCKS) >= 12


def test_commands_of_a_shell_block():
    code = (
        "HYPOTHESIS_PROFILE=thorough python -m pytest x.py   # a comment\n"
        "hkmeans curate a.npy \\\n    --out run/ > log.txt 2>&1 && sbatch job.sh | tee out\n"
        "for f in *.npy; do echo $f; done\n"
        'python -c "import numpy; print(1)"\n'
        "if true; then nvidia-smi; fi\n"
    )
    assert commands(code) == ["python", "hkmeans", "sbatch", "tee", "python", "nvidia-smi"]


def test_plain_hkmeans_blocks_run_in_process_others_in_bash(tmp_path):
    page = tmp_path / "page.md"
    plain = "hkmeans fit a.npy \\\n    --out run/  # a comment\nhkmeans advise 'shards/*.npy' > c.toml\n"
    assert hkmeans_commands(Block(page, 3, "shell", plain)) == [
        (4, ["fit", "a.npy", "--out", "run/"], None),
        (6, ["advise", "shards/*.npy"], "c.toml"),
    ]
    for code in (
        "hkmeans info run/ | head -1\n",
        "hkmeans info run/ > a.txt 2>&1\n",
        "hkmeans fit shards/*.npy --out run/\n",
        "hkmeans fit $X --out run/\n",
        "hkmeans fit a.npy \\\n",
        "python -m hkmeans info run/\n",
    ):
        assert hkmeans_commands(Block(page, 3, "shell", code)) is None, code
    assert hkmeans_commands(Block(page, 3, "shell", "hkmeans info run/\n", "setup", "N=1")) is None


def test_a_shell_block_calling_a_missing_command_is_skipped(tmp_path, shell_env):
    block = Block(tmp_path / "page.md", 3, "shell", "hkmeans info run/\nsbatch curate.slurm\n")
    assert skip_reason(block, shell_env["PATH"]) == "needs the command sbatch, not on the PATH"
    assert skip_reason(Block(tmp_path / "page.md", 3, "shell", "hkmeans --version\n"), shell_env["PATH"]) is None


@pytest.mark.parametrize(
    "command, exit_status",
    [
        ("false", 1),
        ("false | cat", 1),  # pipefail
        ("echo $UNSET_VARIABLE", 1),  # nounset
        ("hkmeans info no-such-run/", 2),
    ],
)
def test_a_failing_shell_block_fails_with_its_page_line_and_output(tmp_path, shell_env, command, exit_status):
    """The test of a broken example fails, naming the page, the failing command's line
    and what the block printed before it; nothing after it runs."""
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\n```bash\necho first output\n{command}\necho never\n```\n")
    (block,) = blocks(page)
    with pytest.raises(pytest.fail.Exception) as failed:
        run_shell(block, tmp_path, shell_env, tmp_path)
    message = str(failed.value)
    assert message.startswith(f"page.md:3: the shell example failed (exit {exit_status})")
    assert "first output" in message
    assert f"page.md:5: exit {exit_status}: " in message or "page.md: line 5: UNSET_VARIABLE: unbound" in message
    assert "never" not in message.replace("echo never", "")
    if command.startswith("hkmeans"):
        assert "hkmeans: error: " in message


def test_shell_blocks_of_a_page_run_in_order_in_its_folder(tmp_path, shell_env):
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\nhkmeans --version > version.txt\n```\n\n<!-- setup: N=2 -->\n"
        '```sh\ntest "$(cat version.txt)" = "hkmeans $(python -c \'import hkmeans; print(hkmeans.__version__)\')"\n'
        "test $N = 2\n```\n"
    )
    for block in blocks(page):
        run_shell(block, tmp_path, shell_env, tmp_path)
    assert (tmp_path / "version.txt").read_text().startswith("hkmeans ")


@pytest.mark.parametrize("block", BLOCKS, ids=[where(b, ROOT) for b in BLOCKS])
def test_example_runs(block, page_folder, shell_env, namespaces, request, monkeypatch):
    reason = skip_reason(block, shell_env["PATH"])
    if reason:
        pytest.skip(f"{where(block, ROOT)}: {reason}")
    # a test worker may get a page's blocks from the middle: it runs the ones before first
    done = namespaces.setdefault((block.page, "run"), set())
    for earlier in BLOCKS:
        if earlier.page == block.page and earlier.line < block.line and earlier.line not in done:
            if not skip_reason(earlier, shell_env["PATH"]):
                _run_block(earlier, page_folder, shell_env, namespaces, request, monkeypatch)
            done.add(earlier.line)
    _run_block(block, page_folder, shell_env, namespaces, request, monkeypatch)
    done.add(block.line)


def _run_block(block, page_folder, shell_env, namespaces, request, monkeypatch):
    folder = page_folder(block.page)
    if block.language == "shell":
        commands = hkmeans_commands(block)
        if commands:
            run_commands(block, commands, folder, ROOT)
        else:
            run_shell(block, folder, shell_env, ROOT)
        return
    if "dask" in block.code:
        request.getfixturevalue("dask_client")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    run_python(block, namespaces.setdefault(block.page, {"__name__": "__docs__"}), ROOT)


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


FENCE = re.compile(r"^([ \t]*)(```|~~~)[^\n]*\n(.*?)^\1\2[ \t]*$", re.S | re.M)
#: Words and names a user page has no use for: private modules and attributes, the
#: classes mkdocstrings would list as bases, escaped pipes shown as they are.
PRIVATE = re.compile(
    r"hkmeans\._\w+|\b_params\b|FIT_PARAMS|\bBases:|_CentroidClusterer|\bissues?\b|"
    r"\backlog\b|\btracker\b|\backnowledged\b|\\\|"
)


def test_code_blocks_fit_in_80_columns():
    """Every line of every fenced block of README.md and docs/, and of the gallery's
    scripts, is at most 80 characters: the site's code column shows about that many
    before it scrolls."""
    long = []
    for script in sorted((ROOT / "docs" / "examples").glob("*.py")):  # shown whole on the examples page
        long += [
            f"{script.relative_to(ROOT)}:{i}: {len(line)} characters"
            for i, line in enumerate(script.read_text().splitlines(), 1)
            if len(line) > 80
        ]
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            first = text.count("\n", 0, block.start()) + 2
            long += [
                f"{page.relative_to(ROOT)}:{first + i}: {len(line)} characters"
                for i, line in enumerate(block.group(3).splitlines())
                if len(line) > 80
            ]
    assert not long, "\n".join(long)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The site built with ``mkdocs build --strict``: ``(process, folder)``."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        try:
            found = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            found = None
        if found is None:
            pytest.skip(f'{module} is not installed: pip install ".[docs]"')
    folder = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    return done, folder


@pytest.mark.slow
def test_mkdocs_build_strict(site):
    """The site builds without a warning (broken links, docstrings griffe cannot parse)
    and works from files: pages are ``.html`` files, search needs no server."""
    done, folder = site
    assert done.returncode == 0, done.stderr[-4000:]
    page = folder / "api" / "estimators.html"
    assert "HierarchicalKMeans" in page.read_text()
    for page in (folder / "api").rglob("*.html"):  # docs/griffe_roles.py rewrote every role
        assert not re.search(r":(func|class|meth|data|mod|attr):<code>", page.read_text()), page
    assert 'href="getting-started.html"' in (folder / "index.html").read_text()
    assert (folder / "search" / "search_index.js").is_file()  # the offline plugin's index
    assert "arithmatex" not in (folder / "index.html").read_text()


def test_user_pages_name_nothing_private(site):
    """The built user pages (all but the developers' section) show no private module or
    attribute, no base class of the implementation and no literal ``\\|``."""
    done, folder = site
    assert done.returncode == 0, done.stderr[-4000:]
    found = []
    for page in sorted(folder.rglob("*.html")):
        name = page.relative_to(folder).as_posix()
        if name.startswith(("developer/", "assets/")) or name == "404.html":
            continue
        text = html.unescape(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")))
        found += [f"{name}: ...{text[max(0, m.start() - 40) : m.end() + 20]!r}" for m in PRIVATE.finditer(text)]
    assert not found, "\n".join(found)
