"""Remake the screenshots of the "Reading the report" page and of the site into
docs/img/, with headless Chromium (Debian's ``chromium``).

    python docs/figures/screenshots.py [report] [site]     (default: both)

- ``report``: a run on 20,000 points of 40 concepts with long-tailed sizes, its
  report with the concepts as labels and a picture per point (``--show``): the top
  of the page, the label figure and the cluster browser opened at a cluster;
- ``site``: the built site (``mkdocs build``) opened from files: the home page,
  "Getting started" and "Reading the report".

Rerun when the report or those pages change; it takes about a minute on two cores.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "img"
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def shot(url: str, path: Path, height: int = 760, width: int = 1100) -> None:
    """A screenshot of ``url`` as a PNG of at most 256 colours (small in the repo)."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "shot.png"
        subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--hide-scrollbars", f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}",
                        "--virtual-time-budget=3000", f"--screenshot={raw}", url],
                       check=True, capture_output=True, timeout=120)
        Image.open(raw).convert("RGB").quantize(128).save(path, optimize=True)
    print(path.relative_to(ROOT))


def pool(folder: Path):
    """20,000 points of 40 concepts whose sizes fall as 1/rank, the concepts' names
    and a small picture per concept (its colour and number)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    share = 1 / np.arange(1, 41)
    concept = rng.choice(40, size=20_000, p=share / share.sum())
    centres = rng.normal(scale=4, size=(40, 32))
    X = (centres[concept] + rng.normal(size=(concept.size, 32))).astype(np.float32)
    np.save(folder / "embeddings.npy", X)
    np.save(folder / "labels.npy", np.array([f"concept-{c:02d}" for c in concept]))
    pictures = []
    for c in range(40):
        image = Image.new("RGB", (96, 72), tuple(int(v) for v in rng.integers(40, 230, size=3)))
        ImageDraw.Draw(image).text((8, 8), f"concept {c}", fill="white")
        pictures.append(folder / f"concept-{c:02d}.png")
        image.save(pictures[-1])
    (folder / "pictures.txt").write_text("\n".join(str(pictures[c]) for c in concept))
    return concept


def report() -> None:
    """The report's screenshots: its top, the label figure and the browser."""
    import matplotlib

    matplotlib.use("Agg")
    from hkmeans import ClusterTree, plot

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pool(folder)
        hkmeans = [sys.executable, "-m", "hkmeans"]
        subprocess.run([*hkmeans, "curate", folder / "embeddings.npy", "--out", folder / "run", "--n-clusters",
                        "400,16", "--n-resamples", "3", "--target-size", "2000", "-q"], check=True)
        subprocess.run([*hkmeans, "report", folder / "run", "--labels", folder / "labels.npy", "--show",
                        folder / "pictures.txt", "-o", folder / "report.html"], check=True, capture_output=True)
        page = (folder / "report.html").as_uri()
        shot(page, OUT / "report-top.png")
        tree = ClusterTree.load(folder / "run" / "tree.npz")
        biggest = int(np.argmax(tree.sizes(1)))
        text = (folder / "report.html").read_text()  # the browser alone: a short page needs no scrolling
        start, browser = text.index("<h1>"), text.index("<h2>Clusters</h2>")
        (folder / "browser.html").write_text(text[:start] + text[browser:])
        shot(f"{(folder / 'browser.html').as_uri()}#c=1.{biggest}", OUT / "report-browser.png", height=1150)
        fig = plot.label_shares(np.load(folder / "labels.npy"), np.load(folder / "run" / "indices.npy"),
                                random_state=0)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=72)
        from PIL import Image

        Image.open(buf).convert("RGB").quantize(128).save(OUT / "report-labels.png", optimize=True)
        print((OUT / "report-labels.png").relative_to(ROOT))


def site() -> None:
    """Three pages of the built site, opened from files."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--site-dir", tmp], cwd=ROOT, check=True,
                       capture_output=True)
        for page in ("index", "getting-started", "report"):
            shot((Path(tmp) / f"{page}.html").as_uri(), OUT / f"site-{page}.png", height=700)


if __name__ == "__main__":
    if BROWSER is None:
        sys.exit("needs chromium on the PATH (apt-get install chromium)")
    for name in sys.argv[1:] or ["report", "site"]:
        {"report": report, "site": site}[name]()
