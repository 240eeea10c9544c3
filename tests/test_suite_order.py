"""The order the suite's tests run in (``heavy_first`` in ``conftest.py``)."""

from types import SimpleNamespace

from .conftest import heavy_first


class Item:
    """What ``heavy_first`` reads of a pytest item: its ``slow`` marker and the scopes
    of its fixtures."""

    def __init__(self, name, seconds=None, scope="function"):
        self.name = name
        self.slow = None if seconds is None else SimpleNamespace(kwargs={"seconds": seconds})
        self._fixtureinfo = SimpleNamespace(name2fixturedefs={"fixture": [SimpleNamespace(scope=scope)]})

    def get_closest_marker(self, name):
        return self.slow if name == "slow" else None


def test_slow_tests_start_both_halves_longest_first_and_the_rest_keep_their_order():
    quick = [Item(f"t{i}") for i in range(10)]
    shared = Item("m", 90, scope="module")
    items = quick[:4] + [Item("a", 10), Item("b", 60)] + quick[4:7] + [shared] + quick[7:] + [Item("c", 30)]
    names = [item.name for item in heavy_first(items)]
    assert sorted(names) == sorted(item.name for item in items)
    # worksteal gives each of two workers one half: each starts on its longest
    half = len(items) // 2
    assert names[:2] == ["b", "a"] and names[half] == "c"
    # the others, a test sharing a module-scoped fixture among them, in their order
    rest = [n for n in names if n not in ("a", "b", "c")]
    assert rest == [item.name for item in items if item.name not in ("a", "b", "c")]
