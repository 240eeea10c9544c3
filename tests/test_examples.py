"""The examples gallery (docs/examples/*.py) runs, each script in a folder of its
own, and prints what the gallery page shows (docs/examples/NAME.txt, remade by
docs/figures/gallery.py), numbers aside: each script asserts its own result."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "figures"))
from gallery import EXAMPLES, run  # noqa: E402

NEEDS = {"curate_parquet": "pyarrow", "dask_pool": "distributed", "choosing_levels": "matplotlib"}
NUMBER = re.compile(r"\d+(\.\d+)?")


def shape(text: str) -> list[str]:
    """``text``'s lines with every number replaced by ``#``."""
    return [NUMBER.sub("#", line) for line in text.splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.py")))
def test_example_runs_and_prints_what_the_page_shows(name, tmp_path):
    module = NEEDS.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{name}.py needs {module}")
    done = run(EXAMPLES / f"{name}.py", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert shape(done.stdout) == shape((EXAMPLES / f"{name}.txt").read_text())


def test_every_example_is_on_the_page():
    page = (ROOT / "docs" / "examples.md").read_text()
    for script in EXAMPLES.glob("*.py"):
        assert f'--8<-- "{script.name}"' in page and f'--8<-- "{script.stem}.txt"' in page
