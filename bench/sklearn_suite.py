"""scikit-learn's own KMeans tests, run against :class:`hkmeans.KMeans`.

Copies ``sklearn/cluster/tests/test_k_means.py`` from the installed scikit-learn into a
temporary directory, imports ``KMeans`` and ``kmeans_plusplus`` from hkmeans instead
(``MiniBatchKMeans`` and everything else stay scikit-learn's), leaves out the
MiniBatchKMeans tests, runs pytest on it and prints the passes and the failures
grouped by cause.

Usage: ``python bench/sklearn_suite.py [-v] [pytest options...]``
"""

from __future__ import annotations

import collections
import pathlib
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import sklearn

IMPORT = "from sklearn.cluster import KMeans, MiniBatchKMeans, k_means, kmeans_plusplus\n"
SWAPPED = "from sklearn.cluster import MiniBatchKMeans, k_means\nfrom hkmeans import KMeans, kmeans_plusplus\n"

CONFTEST = """
pytest_plugins = ["sklearn.conftest"]


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        (drop if "minibatch" in item.nodeid.lower() else keep).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
"""


def swapped_suite(directory: pathlib.Path) -> pathlib.Path:
    """Write the swapped test file and its conftest into ``directory``."""
    source = pathlib.Path(sklearn.__file__).parent / "cluster" / "tests" / "test_k_means.py"
    text = source.read_text()
    if IMPORT not in text:
        raise SystemExit(f"{source}: the import line to swap was not found; scikit-learn {sklearn.__version__}?")
    target = directory / "test_k_means_hkmeans.py"
    target.write_text(text.replace(IMPORT, SWAPPED))
    (directory / "conftest.py").write_text(CONFTEST)
    return target


def cause(message: str) -> str:
    """A failure's first line with numbers and quoted values blanked, so that alike
    failures group together."""
    line = message.strip().splitlines()[0] if message.strip() else "(no message)"
    line = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", line)
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "N", line)[:150]


def main(argv: list[str]) -> int:
    verbose = "-v" in argv
    extra = [a for a in argv if a != "-v"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        test_file = swapped_suite(tmp)
        report = tmp / "report.xml"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                str(test_file),
                "-q",
                "-p",
                "no:cacheprovider",
                "-p",
                "no:randomly",
                f"--junitxml={report}",
                "-o",
                "addopts=",
                "--rootdir",
                str(tmp),
                *extra,
            ],
            cwd=tmp,
            stdout=subprocess.DEVNULL if not verbose else None,
        )
        cases = ET.parse(report).getroot().iter("testcase")
        passed, skipped, causes, names = 0, 0, collections.Counter(), collections.defaultdict(list)
        for case in cases:
            bad = case.find("failure")
            if bad is None:
                bad = case.find("error")
            if bad is not None:
                c = cause(bad.get("message", ""))
                causes[c] += 1
                names[c].append(case.get("name"))
            elif case.find("skipped") is not None:
                skipped += 1
            else:
                passed += 1
    failed = sum(causes.values())
    print(
        f"scikit-learn {sklearn.__version__}: {passed} passed, {failed} failed, {skipped} skipped "
        f"of {passed + failed + skipped} non-MiniBatch tests"
    )
    for c, n in causes.most_common():
        print(f"{n:4d}  {c}")
        if verbose:
            for name in names[c]:
                print(f"        {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
