"""Checkpoints: a fit stopped after any step, or inside a k-means run, and resumed
gives the same result as one run straight through."""

import numpy as np
import pytest

from hkmeans import hierarchical_kmeans
from hkmeans import hierarchy as hierarchy_module
from hkmeans import seeding as seeding_module
from hkmeans.backends import cpu as cpu_backend
from hkmeans.checkpoint import Checkpoints, run_step
from hkmeans.kmeans import assign, kmeans, lloyd

from .test_hierarchy import mixture


class Stop(Exception):
    pass


class MemoryCheckpoints(Checkpoints):
    """Keeps copies in a dict; raises :class:`Stop` on the ``stop_at``-th save, after
    keeping it (as a process killed right after writing would)."""

    def __init__(self, stop_at=None, partial_every_iteration=True):
        self.kept, self.saves, self.stop_at = {}, 0, stop_at
        self.partial_every_iteration = partial_every_iteration

    def load(self, key):
        return None if key not in self.kept else {k: np.copy(v) for k, v in self.kept[key].items()}

    def save(self, key, arrays):
        self.kept[key] = {k: np.copy(v) for k, v in arrays.items()}
        self.saves += 1
        if self.saves == self.stop_at:
            raise Stop

    def discard(self, key):
        self.kept.pop(key, None)

    def partial_due(self):
        return self.partial_every_iteration


def same_levels(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.centroids, y.centroids)
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.sqdist, y.sqdist)
        assert x.n_iter == y.n_iter
        for name in ("parents", "child_offsets"):
            u, v = getattr(x, name), getattr(y, name)
            assert (u is None) == (v is None)
            if u is not None:
                np.testing.assert_array_equal(u, v)


PARAMS = [
    dict(n_clusters=(40, 8), n_resamples=3, sample_size=(10, 2)),
    dict(n_clusters=(40, 8), n_resamples=2, resample_strategy="random", n_init=2),
    dict(n_clusters=(40, 8), n_resamples=(0, 2), n_splits=(4, 1)),
]


@pytest.mark.slow
@pytest.mark.parametrize("params", PARAMS)
def test_resume_after_any_save_gives_the_same_levels(params):
    X = mixture(n=1500, d=3)
    straight = hierarchical_kmeans(X, random_state=0, **params)
    counting = MemoryCheckpoints()
    same_levels(hierarchical_kmeans(X, random_state=0, checkpoints=counting, **params), straight)
    assert counting.saves > 6
    for stop_at in range(1, counting.saves + 1, 3):
        store = MemoryCheckpoints(stop_at=stop_at)
        with pytest.raises(Stop):
            hierarchical_kmeans(X, random_state=0, checkpoints=store, **params)
        store.stop_at = None
        same_levels(hierarchical_kmeans(X, random_state=0, checkpoints=store, **params), straight)
        assert not any(key.endswith("/partial") for key in store.kept)  # finished runs drop theirs


@pytest.mark.parametrize("n_init", [1, 3])
def test_kmeans_resumes_inside_lloyd(n_init):
    X = mixture(n=2000, d=4, dtype=np.float32)
    args = dict(n_init=n_init, max_iter=30, tol=0.0, random_state=1)
    straight = kmeans(X, 30, **args)
    for stop_at in (1, 4, 9):
        store = MemoryCheckpoints(stop_at=stop_at)
        with pytest.raises(Stop):
            kmeans(X, 30, checkpoints=store, key="k", **args)
        assert "k/partial" in store.kept
        store.stop_at = None
        res = kmeans(X, 30, checkpoints=store, key="k", **args)
        np.testing.assert_array_equal(res.centers, straight.centers)
        np.testing.assert_array_equal(res.labels, straight.labels)
        assert res.n_iter == straight.n_iter and "k/partial" not in store.kept


def test_run_step_restores_the_generator():
    store = MemoryCheckpoints()
    rng = np.random.default_rng(5)
    first = run_step(store, "a", rng, lambda: {"x": rng.random(3)})
    after = rng.random()
    rng2 = np.random.default_rng(123)  # another state: the kept one must win
    again = run_step(store, "a", rng2, lambda: pytest.fail("a kept step is not run again"))
    np.testing.assert_array_equal(again["x"], first["x"])
    assert rng2.random() == after
    assert run_step(store, "b", rng, lambda: None) is None and "b" not in store.kept


def test_run_dir_checkpoints_with_file_backed_subsets_give_the_same_levels(tmp_path, monkeypatch):
    from hkmeans.cli import rundir
    from hkmeans.cli.config import effective

    monkeypatch.setattr(rundir, "SCRATCH_BYTES", 0)  # every subset in a file
    X = mixture(n=1500, d=3)
    params = PARAMS[0]
    config = effective(None, {"n_clusters": list(params["n_clusters"]), "checkpoint_interval": 0.0})
    source = {"path": "x", "shape": list(X.shape), "dtype": X.dtype.str, "fingerprint": "f", "stat": {}}
    run = rundir.RunDir.open(tmp_path / "run", config, source)
    subsets = []
    original = run.empty
    run.empty = lambda *a: subsets.append(original(*a)) or subsets[-1]
    levels = hierarchical_kmeans(X, random_state=0, checkpoints=run, **params)
    same_levels(levels, hierarchical_kmeans(X, random_state=0, **params))
    assert subsets and all(isinstance(s, np.memmap) for s in subsets)


def test_run_dir_resumes_a_split_level_with_its_parents(tmp_path, monkeypatch):
    from hkmeans import hierarchy
    from hkmeans.cli import rundir
    from hkmeans.cli.config import effective

    X = mixture(n=1500, d=3)
    params = PARAMS[2]
    straight = hierarchical_kmeans(X, random_state=0, **params)
    config = effective(None, {"n_clusters": list(params["n_clusters"]), "checkpoint_interval": 0.0})
    source = {"path": "x", "shape": list(X.shape), "dtype": X.dtype.str, "fingerprint": "f", "stat": {}}
    save = rundir.RunDir.save

    def stop_after_the_split(self, key, arrays):
        save(self, key, arrays)
        if key == "level0/step0001":
            raise Stop

    monkeypatch.setattr(rundir.RunDir, "save", stop_after_the_split)
    with pytest.raises(Stop):
        hierarchical_kmeans(
            X, random_state=0, checkpoints=rundir.RunDir.open(tmp_path / "run", config, source), **params
        )
    monkeypatch.setattr(rundir.RunDir, "save", save)
    monkeypatch.setattr(hierarchy, "map_side_by_side", lambda *a, **kw: pytest.fail("a kept split step ran again"))
    resumed = hierarchical_kmeans(
        X, random_state=0, checkpoints=rundir.RunDir.open(tmp_path / "run", config, source), **params
    )
    assert resumed[0].parents is not None
    same_levels(resumed, straight)


def test_split_level_kept_without_its_top_centroids_is_refused_clearly():
    X = mixture(n=1500, d=3)
    store = MemoryCheckpoints(stop_at=1, partial_every_iteration=False)  # the top k-means, kept
    with pytest.raises(Stop):
        hierarchical_kmeans(X, random_state=0, checkpoints=store, **PARAMS[2])
    del store.kept["level0/step0000"]["centers"]  # as earlier versions kept it
    store.stop_at = None
    with pytest.raises(ValueError, match="earlier version"):
        hierarchical_kmeans(X, random_state=0, checkpoints=store, **PARAMS[2])


def test_split_level_kept_whole_by_an_earlier_version_still_loads():
    X = mixture(n=1500, d=3)
    store = MemoryCheckpoints(partial_every_iteration=False)
    straight = hierarchical_kmeans(X, random_state=0, checkpoints=store, **PARAMS[2])
    for name in ("parents", "child_offsets"):  # as earlier versions kept the split step
        del store.kept["level0/step0001"][name]
    del store.kept["level0/step0000"]["centers"]
    levels = hierarchical_kmeans(X, random_state=0, checkpoints=store, **PARAMS[2])
    assert levels[0].parents is None
    np.testing.assert_array_equal(levels[0].labels, straight[0].labels)
    np.testing.assert_array_equal(levels[0].assign(X)[0], assign(X, levels[0].centroids)[0])


def near_ties(n=4000, d=32, n_modes=16, seed=0):
    """Long-tailed float32 data far from the origin: the rounding of a GEMM search
    (relative to ``|x|^2``) is larger than the gap between many rows' two nearest
    centres, so bounded and plain searches can round such rows differently."""
    rng = np.random.default_rng(seed)
    modes = rng.normal(size=(n_modes, d)) * 3
    X = modes[rng.zipf(1.5, n) % n_modes] + rng.standard_t(3, size=(n, d))
    return (X + 100.0).astype(np.float32)


def test_near_ties_data_has_rows_the_search_rounds_off_their_nearest():
    X = near_ties()
    C = X[np.random.default_rng(0).choice(len(X), 64, replace=False)]
    labels = assign(X, C)[0]
    exact = ((X.astype(np.float64)[:, None, :] - C.astype(np.float64)[None]) ** 2).sum(-1)
    assert np.any(exact[np.arange(len(X)), labels] > exact.min(axis=1))


def test_lloyd_resumed_from_any_iteration_is_exact_on_near_ties():
    X = near_ties()
    centers = X[np.random.default_rng(0).choice(len(X), 64, replace=False)]
    states = []
    straight = lloyd(
        X, centers, max_iter=25, tol=0.0, on_iter=lambda s: states.append({k: np.copy(v) for k, v in s.items()})
    )
    assert len(states) >= 10
    for state in states:
        resumed = lloyd(X, None, max_iter=25, tol=0.0, state=state)
        np.testing.assert_array_equal(resumed.labels, straight.labels)
        np.testing.assert_array_equal(resumed.centers, straight.centers)
        assert resumed.n_iter == straight.n_iter


PHASES = {  # module, function: a call of it is the inside of that phase
    "seeding": (seeding_module, "_seed_greedy"),
    "Lloyd": (cpu_backend.CPULloydRun, "step"),
    "resampling": (cpu_backend.CPUBackend, "select"),
    "reassignment": (hierarchy_module, "reseed_empty"),
}


@pytest.mark.parametrize("phase", PHASES)
def test_stopped_inside_every_phase_then_resumed_gives_the_same_levels(phase, monkeypatch):
    X = near_ties(n=3000)
    params = dict(n_clusters=(48, 8), n_resamples=2, sample_size=(20, 2), max_iter=15)
    straight = hierarchical_kmeans(X, random_state=0, **params)
    module, name = PHASES[phase]
    original = getattr(module, name)
    calls, stop_at = [], None

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) == stop_at:
            raise Stop
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    hierarchical_kmeans(X, random_state=0, checkpoints=MemoryCheckpoints(), **params)
    n_calls = len(calls)
    assert n_calls >= 3
    for stop_at in sorted({1, 2, n_calls // 3, n_calls // 2, n_calls - 1}):
        calls.clear()
        store = MemoryCheckpoints()
        with pytest.raises(Stop):
            hierarchical_kmeans(X, random_state=0, checkpoints=store, **params)
        stop_at = None
        same_levels(hierarchical_kmeans(X, random_state=0, checkpoints=store, **params), straight)
