"""Run the examples gallery (docs/examples/*.py), each in a fresh folder, and keep
what the gallery page shows: its output as docs/examples/NAME.txt and the figures it
writes as docs/img/example-NAME.png.

    python docs/figures/gallery.py [NAME ...]     (default: every example)

tests/test_examples.py runs the same scripts and checks their output against these
files (numbers aside). Rerun when an example changes; about a minute on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"


def run(script: Path, folder: Path) -> subprocess.CompletedProcess:
    """``script`` run with this interpreter in ``folder``; figures without a display."""
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, str(script)], cwd=folder, capture_output=True, text=True, env=env,
                          timeout=600)


if __name__ == "__main__":
    names = sys.argv[1:] or sorted(p.stem for p in EXAMPLES.glob("*.py"))
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            done = run(EXAMPLES / f"{name}.py", Path(tmp))
            if done.returncode:
                sys.exit(f"{name}.py failed:\n{done.stderr[-3000:]}")
            (EXAMPLES / f"{name}.txt").write_text(done.stdout)
            for png in Path(tmp).glob("*.png"):
                shutil.copy(png, ROOT / "docs" / "img" / f"example-{png.name}")
        print(name)
