"""The cost model (:mod:`hkmeans.cost`): its work counts against the searches and
seedings a fit really makes, its memory against a fit's, and the advisor's lines."""

import dataclasses
import json

import numpy as np
import pytest

import hkmeans
from hkmeans import cost

#: Rates that make a level's time its work in flops, plus 1 s per call.
UNIT = cost.Rates(search=1.0, seeding=1.0, iteration_seconds=0.0, seeding_seconds=0.0)


def _rows(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _counted_and_modelled(counted, X, **params):
    hkmeans.hierarchical_kmeans(X, random_state=0, **params)
    levels = cost.estimate(*X.shape, rates=lambda k, dt: UNIT, **params)
    return counted["search"] + counted["seeding"], sum(c.flops for c in levels)


@pytest.mark.parametrize(
    "params",
    [
        dict(n_clusters=[40], n_resamples=[0]),
        dict(n_clusters=[40], n_resamples=[0], max_points_per_centroid=20),
        dict(n_clusters=[40], n_resamples=[0], init="random", n_init=2),
        dict(n_clusters=[40], n_resamples=[0], n_init=3, max_points_per_centroid=10),
        dict(n_clusters=[40], n_resamples=[0], init_points_per_centroid=10),
    ],
    ids=["k-means++", "sampled", "random-init", "runs-then-one-search", "seeding-sample"],
)
def test_work_is_the_fits_when_every_kmeans_runs_to_max_iter(counted, params):
    # random rows in 24 dimensions: labels still change after 3 iterations, so the
    # k-means runs to max_iter, as the model counts
    counted, modelled = _counted_and_modelled(counted, _rows(3000, 24), max_iter=3, **params)
    assert modelled == pytest.approx(counted, rel=1e-12)


@pytest.mark.parametrize(
    "params",
    [
        dict(n_clusters=[40, 8], n_resamples=[2, 1], sample_size=[10, 2]),
        dict(n_clusters=[40], n_resamples=[2], sample_size=[30], max_points_per_centroid=20),
        dict(n_clusters=[40, 8], n_resamples=[0, 0], n_splits=[1, 2]),
        dict(n_clusters=[200], n_resamples=[0], n_splits=[4]),
        dict(n_clusters=[160], n_resamples=[0], n_splits=[16], max_points_per_centroid=5),
        dict(n_clusters=[200], n_resamples=[0], n_splits=[4], init_points_per_centroid=2),
    ],
    ids=[
        "two-levels",
        "sampled-resampling",
        "split-level",
        "split-0",
        "split-sampled",
        "split-seeding-sample",
    ],
)
def test_work_bounds_the_fits_with_resampling_or_splits(counted, params):
    # a k-means on a few rows per cluster (a resampling step's, a split's) may stop
    # before max_iter
    counted, modelled = _counted_and_modelled(counted, _rows(3000, 24), max_iter=3, **params)
    assert 0.8 * modelled <= counted <= modelled


@pytest.mark.parametrize("params", [dict(n_clusters=[40]), dict(n_clusters=[200], n_splits=[50])], ids=["", "split"])
def test_work_of_kmeans_parallel_is_its_expected_candidates(counted, params):
    # its rounds draw about 2k candidates each, at random (a split level: per cluster)
    counted, modelled = _counted_and_modelled(
        counted, _rows(3000, 24), max_iter=3, n_resamples=[0], init="k-means||", **params
    )
    assert counted == pytest.approx(modelled, rel=0.03)


def test_work_is_an_upper_bound_when_lloyd_stops_early(counted):
    # well separated blobs: Lloyd stops long before max_iter
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((2000, 8)) + 50 * rng.standard_normal((20, 8))[rng.integers(20, size=2000)]).astype(
        np.float32
    )
    params = dict(n_clusters=[20, 4], n_resamples=[2, 0], max_iter=50)
    hkmeans.hierarchical_kmeans(X, random_state=0, **params)
    modelled = sum(c.flops for c in cost.estimate(*X.shape, rates=lambda k, dt: UNIT, **params))
    assert counted["search"] + counted["seeding"] < 0.5 * modelled


def test_time_adds_the_fixed_cost_of_each_call():
    # the model's arithmetic on rates given here, nothing timed
    rates = cost.Rates(search=1e9, seeding=1e9, iteration_seconds=1.0, seeding_seconds=10.0)
    (level,) = cost.estimate(1000, 8, rates=lambda k, dt: rates, n_clusters=[10], n_resamples=[0], max_iter=4)
    # 4 iterations and the last search, one seeding
    assert level.seconds == pytest.approx(level.flops / 1e9 + 5 * 1.0 + 10.0)


def test_workers_share_level_zeros_full_searches_and_gpus_every_level():
    # the model's arithmetic on the unit rates (seconds = flops), nothing timed
    params = dict(n_clusters=[100, 10], n_resamples=[2, 0])
    one = cost.estimate(10_000, 16, rates=lambda k, dt: UNIT, **params)
    four = cost.estimate(10_000, 16, rates=lambda k, dt: UNIT, hardware=cost.Hardware(workers=4), **params)
    gpus = cost.estimate(10_000, 16, rates=lambda k, dt: UNIT, hardware=cost.Hardware(gpus=2, gpu_tflops=1), **params)
    # the searches of every row of level 0: the first k-means's Lloyd and the two reassignments
    full = 2.0 * 10_000 * 100 * 16 * (51 + 2)
    assert four[0].seconds == pytest.approx(one[0].seconds - full + full / 4)
    assert four[1].seconds == one[1].seconds and four[0].flops == one[0].flops
    assert [c.seconds for c in gpus] == pytest.approx([c.flops / 2e12 for c in one])
    # level 0's per-row state is in the workers' scratch folders: its peak is a worker's
    assert four[0].peak_bytes == cost.worker_peak_bytes(100, 16, 4, 10_000) != one[0].peak_bytes
    # one worker is a Dask run too when said so; a chunk is never larger than the pool
    (single, _) = cost.estimate(
        10_000, 16, rates=lambda k, dt: UNIT, hardware=cost.Hardware(workers=1, dask=True), **params
    )
    assert (
        single.peak_bytes
        == four[0].peak_bytes
        == cost.WORKER_RUNTIME_BYTES + 3 * 10_000 * 16 * 4 + 100 * 16 * (4 + 8 * 8)
    )
    assert four[1].peak_bytes == one[1].peak_bytes
    with pytest.raises(ValueError, match="n_splits > 1 at level 0 is not supported on the dask backend"):
        cost.estimate(
            10_000,
            16,
            rates=lambda k, dt: UNIT,
            hardware=cost.Hardware(workers=4),
            n_clusters=[100, 10],
            n_splits=[2, 1],
            n_resamples=0,
        )


def test_each_part_of_a_split_level_is_timed_at_its_own_centres():
    seen = []
    rates = lambda k, dt: seen.append(k) or UNIT
    cost.estimate(10_000, 16, rates=rates, n_clusters=[200], n_splits=[4], n_resamples=[0])
    assert seen == [50, 4]


@pytest.mark.parametrize(
    "bad", [dict(workers=0), dict(gpus=-1), dict(gpu_tflops=0), dict(gpu_tflops=float("nan")), dict(workers=True)]
)
def test_hardware_refuses_bad_values(bad):
    with pytest.raises(ValueError, match="must be a positive"):
        cost.Hardware(**bad)
    with pytest.raises(ValueError, match="give Dask workers or GPUs, not both"):
        cost.Hardware(workers=2, gpus=2)


def test_an_estimators_parameters_are_taken():
    from hkmeans import HierarchicalKMeans

    params = HierarchicalKMeans(n_clusters=[100, 10], n_resamples=[2, 0], random_state=3, verbose=True).get_params()
    got = cost.estimate(10_000, 16, rates=lambda k, dt: UNIT, **params)
    assert got == cost.estimate(10_000, 16, rates=lambda k, dt: UNIT, n_clusters=[100, 10], n_resamples=[2, 0])


@pytest.mark.parametrize(
    "shape, dtype, match",
    [
        ((0, 4), np.float32, "n_samples must be a positive integer, got 0"),
        ((100, 2.5), np.float32, "n_features must be a positive integer, got 2.5"),
        ((100, 4), np.float16, "dtype must be float32 or float64"),
    ],
)
def test_bad_shape_or_dtype_is_one_line(shape, dtype, match):
    with pytest.raises(ValueError, match=match):
        cost.estimate(*shape, dtype, rates=lambda k, dt: UNIT, n_clusters=[2])


def test_calibration_of_wide_rows_fits_its_rows(monkeypatch):
    monkeypatch.setattr(cost, "_measured", {})
    rates = cost.calibrate(70_000, np.float32, 100, cache=False)  # 59 rows of 70,000 features
    assert rates.search > 0 and rates.seeding > 0


def test_calibrate_and_estimate_check_their_arguments():
    for args, match in [
        ((0, np.float32, 8), "n_features and n_clusters must be positive integers"),
        ((8, np.float32, 0), "n_features and n_clusters must be positive integers"),
        ((8, np.float16, 8), "dtype must be float32 or float64"),
    ]:
        with pytest.raises(ValueError, match=match):
            cost.calibrate(*args)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        cost.estimate(100, 4, rates=lambda k, dt: UNIT, threads=-4, n_clusters=[2])
    with pytest.raises(ValueError, match="hardware must be a Hardware"):
        cost.estimate(100, 4, rates=lambda k, dt: UNIT, hardware=2, n_clusters=[2])


def test_parameters_are_checked_as_a_fit_checks_them():
    with pytest.raises(ValueError, match="n_clusters"):
        cost.estimate(100, 4, rates=lambda k, dt: UNIT, n_clusters=[200])
    with pytest.raises(TypeError, match="unknown fit parameters: n_cluster"):
        cost.estimate(100, 4, rates=lambda k, dt: UNIT, n_cluster=[2])


def test_calibration_is_measured_once_and_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HKMEANS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cost, "_measured", {})
    monkeypatch.setattr(cost, "BUSY_CORES", float("inf"))  # whatever else runs beside the test
    calls = []
    measure = cost._measure

    def counted_measure(*args):  # the kernels timed once, then a stand-in: only the cache is tested
        calls.append(args)
        return measure(*args) if len(calls) == 1 else cost.Rates(1e9 + len(calls), 1e9, 0.0, 0.0)

    monkeypatch.setattr(cost, "_measure", counted_measure)
    first = cost.calibrate(8, np.float32, 40)
    assert first.search > 0 and first.seeding > 0 and first.iteration_seconds >= 0
    assert calls == [(8, np.float32, 32)]  # 40 centres are timed at 32, the power of 2 at or below
    # so are 60; another width or dtype is measured anew
    assert cost.calibrate(8, np.float32, 60) == first and len(calls) == 1
    cost.calibrate(8, np.float64, 40)
    assert len(calls) == 2 and len(list(tmp_path.glob("rates-*.json"))) == 2
    (path,) = [p for p in tmp_path.glob("rates-*.json") if json.loads(p.read_text()) == dataclasses.asdict(first)]
    # a damaged cache, or one whose values cannot be rates, is measured again
    kept = json.loads(path.read_text())
    for bad in [
        "{not json",
        json.dumps({"search": 1.0}),
        *(
            json.dumps(dict(kept, **{field: value}))
            for field, value in [
                ("search", "1e9"),
                ("search", 0),
                ("seeding", -1.0),
                ("iteration_seconds", -5),
                ("seeding_seconds", float("nan")),
                ("search", True),
            ]
        ),
    ]:
        path.write_text(bad)
        monkeypatch.setattr(cost, "_measured", {})
        assert cost.calibrate(8, np.float32, 40).search > 0
    assert len(calls) == 3 + 7


def test_rates_timed_on_a_busy_machine_are_not_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("HKMEANS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cost, "_measured", {})
    monkeypatch.setattr(cost, "busy_elsewhere", lambda before, after: 1.0)
    first = cost.calibrate(8, np.float32, 40)
    assert not list(tmp_path.iterdir())
    assert cost.calibrate(8, np.float32, 40) is first  # measured once in this process all the same


def test_advise_prints_each_levels_cost_as_comments(tmp_path):
    import tomllib

    from .test_cli import assert_error
    from .test_cli import hkmeans as run

    np.save(tmp_path / "x.npy", _rows(3000, 8))
    out = run("advise", tmp_path / "x.npy", "--target-size", 300).stdout
    params = tomllib.loads(out)  # the cost lines are comments: still a config file
    levels = cost.estimate(3000, 8, np.float32, **{k: params[k] for k in ("n_clusters", "sample_size", "n_resamples")})
    lines = [line for line in out.splitlines() if line.startswith("# level ") and "TFLOP" in line]
    assert len(lines) == len(levels) == len(params["n_clusters"])
    for line, c in zip(lines, levels):
        assert line.startswith(f"# level {c.level}, {c.rows} rows -> {c.clusters} clusters: {c.flops / 1e12:.3g} TFLOP")
        assert line.endswith(f" {c.peak_bytes / 2**20:.0f} MiB")
    gpus = run("advise", tmp_path / "x.npy", "--target-size", 300, "--cost-gpus", 8).stdout
    assert "cost on 8 GPUs at 15 TFLOP/s each" in gpus
    workers = run("advise", tmp_path / "x.npy", "--target-size", 300, "--cost-workers", 4).stdout
    assert "cost on 4 Dask workers" in workers
    assert f"{cost.worker_peak_bytes(params['n_clusters'][0], 8, 4, 3000) / 2**20:.0f} MiB per worker" in workers
    one_worker = run("advise", tmp_path / "x.npy", "--target-size", 300, "--cost-workers", 1).stdout
    assert "cost on 1 Dask workers" in one_worker and "MiB per worker" in one_worker
    assert "TFLOP" not in run("advise", tmp_path / "x.npy", "--target-size", 300, "--no-cost").stdout
    for flags, message in [
        (("--cost-gpus", 0), "--cost-gpus must be a positive integer, got 0."),
        (("--cost-workers", -1), "--cost-workers must be a positive integer, got -1."),
        (("--cost-workers", 2, "--cost-gpus", 2), "give --cost-workers or --cost-gpus, not both."),
    ]:
        assert_error(run("advise", tmp_path / "x.npy", "--target-size", 300, *flags, check=False), message)


def test_advise_verbose_says_when_it_times_the_kernels(tmp_path, monkeypatch):
    from .test_cli import hkmeans as run

    monkeypatch.setenv("HKMEANS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(cost, "_measured", {})
    np.save(tmp_path / "x.npy", _rows(3000, 8))
    first = run("advise", tmp_path / "x.npy", "--target-size", 300, "-v")
    assert "timing this machine's kernels: 8 features, float32" in first.stderr
    quiet = run("advise", tmp_path / "x.npy", "--target-size", 300, "-q")
    assert quiet.stderr == ""

    def config(out):  # the cost comments may differ: rates timed on a busy machine are not kept
        return [line for line in out.splitlines() if not line.startswith("# level")]

    assert config(quiet.stdout) == config(first.stdout)


def test_a_sample_of_one_point_is_no_resampling_and_cosine_rows_cost_a_copy():
    unit = dict(rates=lambda k, dt: UNIT, n_clusters=[10], max_iter=4)
    (none,) = cost.estimate(1000, 8, **unit, n_resamples=[0])
    (one,) = cost.estimate(1000, 8, **unit, n_resamples=[5], sample_size=[1])
    assert one.flops == none.flops  # nothing to resample from one point per cluster
    (euclidean,) = cost.estimate(1000, 8, **unit, n_resamples=[0])
    (cosine,) = cost.estimate(1000, 8, **unit, n_resamples=[0], metric="cosine")
    assert cosine.peak_bytes - euclidean.peak_bytes == 1000 * 8 * 4  # the unit rows' copy
