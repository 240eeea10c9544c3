"""The package's layers: no import circle, no import from a lower layer up to a higher
one, imports of the package's own modules at the top of modules (except those that
need an optional dependency), and no test of a dask array outside the backends."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hkmeans"

#: Lowest first; a module may import from its own layer and those below.
LAYERS = [
    (
        "foundation",
        {
            "hkmeans._config",
            "hkmeans._version",
            "hkmeans._params",
            "hkmeans._rng",
            "hkmeans._progress",
            "hkmeans._threads",
            "hkmeans._validation",
            "hkmeans.io",
            "hkmeans.readers",
            "hkmeans.ids",
            "hkmeans.checkpoint",
            "hkmeans.datasets",
            "hkmeans.advise",
        },
    ),
    ("kernels", {"hkmeans._kernels"}),
    ("backends", {"hkmeans.backends"}),
    ("engine", {"hkmeans.seeding", "hkmeans.kmeans", "hkmeans.tree", "hkmeans.hierarchy", "hkmeans.sampling"}),
    (
        "results",
        {"hkmeans.cost", "hkmeans.tables", "hkmeans.dedup", "hkmeans.browser", "hkmeans.plot", "hkmeans.report"},
    ),
    ("api", {"hkmeans", "hkmeans.estimator", "hkmeans.demo"}),
    ("cli", {"hkmeans.cli", "hkmeans.__main__"}),
]

#: Modules that import an optional dependency (dask, distributed, numba-cuda) when imported:
#: imported inside the functions that need them.
OPTIONAL = ("hkmeans.backends.dask", "hkmeans._kernels.cuda")


def modules() -> dict:
    found = {}
    for file in ROOT.rglob("*.py"):
        parts = list(file.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = file
    return found


MODULES = modules()


def imports(name: str) -> list:
    """``(module imported, at the top?)`` for each import of the package's own modules."""
    file = MODULES[name]
    package = name.split(".") if file.name == "__init__.py" else name.split(".")[:-1]
    tree = ast.parse(file.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in MODULES else stem for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        at_top = id(node) in top or _under_type_checking(tree, node)
        found += [(t, at_top) for t in targets if t in MODULES and t != name]
    return found


def _under_type_checking(tree, node) -> bool:
    for block in tree.body:
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test):
            if any(child is node for child in ast.walk(block)):
                return True
    return False


def layer(name: str) -> int:
    best = None
    for i, (_, members) in enumerate(LAYERS):
        for m in members:
            if (name == m or name.startswith(m + ".")) and (best is None or len(m) > len(best[1])):
                best = (i, m)
    assert best is not None, f"{name} is in no layer: add it to LAYERS"
    return best[0]


def test_every_module_is_in_a_layer():
    for name in MODULES:
        layer(name)


def test_no_import_from_a_lower_layer_up():
    upward = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
        for name in MODULES
        for target, _ in imports(name)
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_no_import_circle():
    graph = {name: {t for t, _ in imports(name)} for name in MODULES}
    seen, done, circles = set(), set(), []

    def visit(node, path):
        seen.add(node)
        for nxt in sorted(graph[node]):
            if nxt in path:
                circles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in seen:
                visit(nxt, path + [nxt])
        done.add(node)

    for name in sorted(graph):
        if name not in seen:
            visit(name, [name])
    assert circles == []


def test_the_package_imports_at_the_top_except_optional_dependencies():
    inside = [
        f"{name} imports {target} inside a function"
        for name in MODULES
        for target, at_top in imports(name)
        if not at_top and not target.startswith(OPTIONAL)
    ]
    assert inside == []


@pytest.mark.parametrize("word", ["is_dask(", ".lazy"])
def test_the_kind_of_an_array_is_asked_only_in_the_backends(word):
    outside = [
        f"{file.relative_to(ROOT.parent)}:{i}"
        for file in ROOT.rglob("*.py")
        if "backends" not in file.relative_to(ROOT).parts
        for i, line in enumerate(file.read_text().splitlines(), 1)
        if word in line
    ]
    assert outside == []


def test_the_checks_catch_what_they_look_for(tmp_path, monkeypatch):
    """The graph is read from the source: a module importing upward is seen."""
    names = dict(MODULES)
    fake = tmp_path / "tree.py"
    fake.write_text("from .estimator import KMeans\n")
    monkeypatch.setitem(MODULES, "hkmeans.tree", fake)
    assert ("hkmeans.estimator", True) in imports("hkmeans.tree")
    assert layer("hkmeans.estimator") > layer("hkmeans.tree")
    assert names.keys() == MODULES.keys()


def test_checked_parameters_are_the_table():
    """HierarchyParams holds exactly the parameter table's keys, so a parameter added to
    the table reaches the engine checked."""
    import dataclasses

    from hkmeans._params import FIT_PARAMS
    from hkmeans._validation import HierarchyParams

    assert {f.name for f in dataclasses.fields(HierarchyParams)} == set(FIT_PARAMS)


#: NumPy functions and array methods Numba compiles slowly (about 0.5-1.7 s each in a
#: fresh process, against 0.1-0.3 s for the same work as a loop; history.md, "What a
#: kernel costs to compile"): the CPU kernels write them as loops. (An array assigned
#: to a row or slice costs more still, but is not told apart from a scalar here.)
SLOW_TO_COMPILE = {"argsort", "sort", "lexsort", "where", "cumsum", "searchsorted", "unique"}
SLOW_TO_COMPILE |= {"min", "max", "argmin", "argmax"}


def slow_calls(source: str) -> list[str]:
    """Calls in ``source`` of :data:`SLOW_TO_COMPILE`, as NumPy functions
    (``np.name``, ``numpy.name``) or as array methods (``a.name()``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SLOW_TO_COMPILE:
            owner = node.func.value
            found.append(
                f"np.{node.func.attr}"
                if isinstance(owner, ast.Name) and owner.id in ("np", "numpy")
                else f".{node.func.attr}()"
            )
    return found


def test_cpu_kernels_avoid_numpy_calls_slow_to_compile():
    kernels = ROOT / "_kernels" / "cpu"
    found = {str(f.relative_to(ROOT)): slow_calls(f.read_text()) for f in kernels.rglob("*.py")}
    assert {f: calls for f, calls in found.items() if calls} == {}
    source = "b = np.argsort(a, kind='mergesort')\nm = x.min()\nn = numpy.min(x)\nc = a.cumsum()\nk = min(a, b)\n"
    assert slow_calls(source) == ["np.argsort", ".min()", "np.min", ".cumsum()"]
