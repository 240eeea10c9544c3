"""What a hierarchical k-means will cost before it runs: each level's distance work,
its time on this machine and its peak memory.

The work is counted for the plain algorithm at its limits: every k-means seeds, then
runs ``max_iter`` Lloyd iterations, each searching every row over every centre, and
each resampling step reassigns every row. A real fit does less where Lloyd stops
early (labels unchanged) and where its bounds prove a row's label without a search,
so the time is an upper bound for the given parameters; how far below it a fit ends
depends on the data (``docs/scaling.md`` gives measured runs beside it).

The time is that work at the rates of this machine's kernels, measured in a few
seconds on random rows of the pool's width and dtype (:func:`calibrate`, cached per
machine, threads and package version), where the bounds skip little. Dask workers
and GPUs are stated assumptions (:class:`Hardware`), not measurements.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from types import SimpleNamespace

import numba
import numpy as np

from . import _config
from ._params import is_finite_non_negative, is_int
from ._progress import log
from ._threads import busy_elsewhere, cpu_sample, every_usable_cpu, usable_cpus
from ._validation import check_hierarchy, shown
from ._version import __version__
from .hierarchy import DASK_SPLIT_REFUSED, default_sample_size
from .io import save_text
from .kmeans import bound_groups, lloyd
from .seeding import kmeans_plusplus, local_trials

#: The calibration's random rows: about this many values, at most this many rows; each
#: kernel is timed over them at least CALIBRATION_CALLS times and CALIBRATION_SECONDS.
CALIBRATION_VALUES = 1 << 22
CALIBRATION_ROWS = 1 << 16
CALIBRATION_CALLS = 3
CALIBRATION_SECONDS = 0.3
#: Lloyd iterations of each timed call.
CALIBRATION_ITERATIONS = 3
#: Rates timed while other processes kept this many cores busy or more are used once,
#: not kept.
BUSY_CORES = 0.5
#: Centres chosen by the calibration's seeding (its rate per candidate and row
#: changes little with more).
CALIBRATION_SEEDS = 64
#: Centres of the calibration's searches at most (the power of 2 at or below a
#: level's): a level's GEMMs run at about the same rate beyond.
CALIBRATION_CENTRES = 1024


@dataclass(frozen=True)
class Rates:
    """Measured speeds of the kernels for one width, dtype and number of centres.

    Attributes
    ----------
    search : float
        Flops per second of Lloyd iterations searching every row (2 x rows x
        centres x features a search), their centres' sums and updates included.
    seeding : float
        Flops per second of greedy k-means++ (2 x rows x features per row and
        candidate).
    iteration_seconds, seeding_seconds : float
        Fixed cost of one Lloyd iteration and of one seeding, whatever their size.
    """

    search: float
    seeding: float
    iteration_seconds: float
    seeding_seconds: float


@dataclass(frozen=True)
class Hardware:
    """Where a fit is projected to run.

    Attributes
    ----------
    workers : int, default=1
        Dask workers, each as fast as this machine: level 0's searches of every row
        are assumed to split evenly among them, with no time for moving data; the
        rest (seedings, fits of samples and subsets, the levels above) is counted
        on this machine, as the client runs some of it (:mod:`hkmeans.backends.dask`).
        Level 0's peak memory is then a worker's.
    gpus : int, default=0
        GPUs instead (``device="cuda"``): every level's distance work at
        ``gpu_tflops`` each, split evenly, plus this machine's fixed cost of each
        call (the Python around the kernels); the peak memory is still the host's.
    gpu_tflops : float, default=15.0
        Sustained float32 GEMM rate assumed per GPU (an A100's peak is 19.5).
    dask : bool, default=False
        Level 0 on Dask workers even with ``workers=1`` (more than one implies it).
    """

    workers: int = 1
    gpus: int = 0
    gpu_tflops: float = 15.0
    dask: bool = False

    @property
    def on_dask(self) -> bool:
        return self.dask or self.workers > 1

    def __post_init__(self):
        if not is_int(self.workers, 1) or not is_int(self.gpus, 0):
            raise ValueError(f"workers must be a positive and gpus a non-negative integer, got {self}.")
        if not (is_finite_non_negative(self.gpu_tflops) and self.gpu_tflops > 0):
            raise ValueError(f"gpu_tflops must be a positive number, got {shown(self.gpu_tflops)}.")
        if self.on_dask and self.gpus:
            raise ValueError("give Dask workers or GPUs, not both.")


@dataclass(frozen=True)
class LevelCost:
    """One level's input rows and clusters, its distance work (flops), its time (an
    upper bound, seconds) and its peak memory (bytes): beside the input in process,
    or of each Dask worker for level 0 on workers (:class:`Hardware`)."""

    level: int
    rows: int
    clusters: int
    flops: float
    seconds: float
    peak_bytes: int


@dataclass
class _Work:
    """Work of k-means over ``k`` centres: flops of the searches (``full``: those over
    every row of the level, which Dask workers share) and of the seeding, and the
    calls whose fixed cost adds to them."""

    k: int
    search: float = 0.0
    full: float = 0.0
    seeding: float = 0.0
    iterations: int = 0
    seedings: int = 0

    def add(self, other: _Work, times: int = 1) -> None:
        self.search += times * other.search
        self.full += times * other.full
        self.seeding += times * other.seeding
        self.iterations += times * other.iterations
        self.seedings += times * other.seedings

    @property
    def flops(self) -> float:
        return self.search + self.seeding


def _runs_work(fit, seed, d, k, p, parts=1, full=False) -> _Work:
    """One run of a k-means of ``k`` clusters (or of ``parts`` of them, one per cluster
    of the level above, their rows adding up): seeded from ``seed`` rows, then Lloyd
    on ``fit`` rows (``max_iter`` iterations and the last search); ``full`` when
    ``fit`` is every row of the level."""
    lloyd = 2.0 * fit * k * d * (p.max_iter + 1)
    w = _Work(k, search=lloyd, full=lloyd if full else 0.0, iterations=parts * (p.max_iter + 1))
    groups = bound_groups(k)  # the centres grouped for the bounds: 6 short searches
    if groups >= 2:
        w.search += parts * 6 * 2.0 * k * groups * d
    if p.init == "k-means++":
        w.seeding, w.seedings = 2.0 * seed * d * (k - 1) * local_trials(k), parts
    elif p.init == "k-means||":
        # 2k candidates a round expected (fewer where a row's chance is capped at 1)
        rounds, candidates = _config.KMEANS_PARALLEL_ROUNDS, 1 + 2 * k * _config.KMEANS_PARALLEL_ROUNDS
        w.search += 2.0 * seed * d * candidates
        w.iterations += parts * (rounds + 1)
        w.seeding, w.seedings = 2.0 * min(seed, parts * candidates) * d * (k - 1) * local_trials(k), parts
    return w


def _sampled_rows(m, k, p) -> tuple[int, int]:
    """Rows a k-means of ``k`` clusters on ``m`` rows fits and seeds from (see
    :func:`hkmeans.kmeans.training_sample` and :func:`~hkmeans.kmeans.seeding_rows`)."""
    fit = m if p.max_points_per_centroid is None else min(m, k * p.max_points_per_centroid)
    return fit, fit if p.init_points_per_centroid is None else min(fit, k * p.init_points_per_centroid)


def _kmeans_work(m, d, k, p, level_rows, centers_only=False) -> _Work:
    """The work of one k-means of ``k`` clusters on ``m`` rows (of the level's
    ``level_rows``): ``n_init`` runs, then after a sampled fit one search of every
    row (not with ``centers_only``)."""
    fit, seed = _sampled_rows(m, k, p)
    total = _Work(k)
    total.add(_runs_work(fit, seed, d, k, p, full=fit == level_rows), p.n_init)
    if fit < m and not centers_only:
        total.search += 2.0 * m * k * d
        total.full += 2.0 * m * k * d if m == level_rows else 0.0
        total.iterations += 1
    return total


def level_work(m, d, k, n_resamples, sample_size, n_splits, p) -> list[_Work]:
    """The work of a level of ``k`` clusters over ``m`` rows (see
    :mod:`hkmeans.hierarchy`), in parts of one number of centres each: a split
    level's top k-means and its clusters' own."""
    if n_splits > 1:  # a k-means of k / n_splits, one of n_splits per cluster, the routed search
        top = k // n_splits
        first = _kmeans_work(m, d, top, p, m)
        first.search += 2.0 * m * d * top  # the routed search: the parents, then (below) the children
        first.full += 2.0 * m * d * top
        first.iterations += 1
        # the clusters' rows add up to m; each cluster samples its own rows
        fit, seed = _sampled_rows(m, k, p)
        split = _Work(n_splits)
        split.add(_runs_work(fit, seed, d, n_splits, p, parts=top), p.n_init)
        if p.max_points_per_centroid is not None:  # a cluster fitted on a sample searches its rows
            split.search += 2.0 * m * n_splits * d
        split.search += 2.0 * m * d * n_splits
        split.iterations += 1
        return [first, split]
    w = _kmeans_work(m, d, k, p, m)
    if n_resamples:
        step = _kmeans_work(min(m, k * sample_size), d, k, p, m, centers_only=True)
        step.search += 2.0 * m * k * d  # every row reassigned
        step.full += 2.0 * m * k * d
        step.iterations += 1
        w.add(step, n_resamples)
    return [w]


def peak_bytes(m, d, k, itemsize, sample_size, n_resamples, p, threads) -> int:
    """Peak memory of a level beside its input rows: per row, the labels and distances
    of the last step and of the running one, the labels of the pass before, the Lloyd
    bounds, the seeding's distances, weights and draw order and its 8-bit copy of the
    row; the resampling subset or the training sample; the centres and their copies;
    each thread's block of distances."""
    fit, _ = _sampled_rows(m, k, p)
    per_row = 2 * 16 + 8 + 4 * _config.BOUND_GROUPS + 24 + d
    copies = fit * d * itemsize if fit < m else 0
    if n_resamples:
        copies = max(copies, min(m, k * sample_size) * d * itemsize)
    if p.metric == "cosine":
        copies += m * d * itemsize
    blocks = threads * max(_config.CHUNK_BYTES, _config.CHUNK_ROWS * k * itemsize)
    return int(m * per_row + copies + 4 * k * d * 8 + blocks)


#: Parameters of the estimators that do not change a fit's work.
NOT_WORK = ("random_state", "verbose", "client")

#: A Dask worker's memory before any chunk: Python, NumPy, Numba's kernels, Dask
#: (measured, ``docs/scaling.md``).
WORKER_RUNTIME_BYTES = 260 << 20


def worker_peak_bytes(k, d, itemsize, n) -> int:
    """Peak memory of a Dask worker in a pass of level 0 over ``n`` rows
    (``docs/scaling.md``): its runtime, 3 chunks (the one read, its cast, the
    kernels' temporaries; a chunk no larger than the pool), the centres, and the
    float64 sums a reduction task combines."""
    chunk = min(_config.DASK_CHUNK_BYTES, n * d * itemsize)
    return int(WORKER_RUNTIME_BYTES + 3 * chunk + k * d * itemsize + _config.DASK_SPLIT_EVERY * k * d * 8)


def estimate(n_samples, n_features, dtype=np.float32, *, rates=None, hardware=None, threads=None, **params):
    """Each level's work, time and peak memory for a fit of ``n_samples`` rows of
    ``n_features`` features with the parameters of
    :class:`~hkmeans.HierarchicalKMeans` (checked as a fit checks them).

    Parameters
    ----------
    n_samples, n_features : int
        Shape of the pool (of the rows the fit sees: after a dedup, its kept rows).
    dtype : dtype, default=float32
        dtype the fit computes in.
    rates : callable or None
        ``rates(k, dtype)`` returns the :class:`Rates` for searches over ``k``
        centres; default: :func:`calibrate` for ``n_features``, measured once per
        machine and cached.
    hardware : Hardware or None
        Dask workers for level 0, or GPUs (default: this machine alone).
    threads : int or None
        Threads of this machine, for the blocks' memory (default: Numba's).
    **params
        ``n_clusters``, ``n_resamples``, ``sample_size``, ``max_iter`` and the rest of
        the fit parameters (``HierarchicalKMeans(...).get_params()`` too: those that
        do not change the work, ``random_state``, ``verbose``, ``client``, are left
        out; ``device`` and ``backend`` change nothing either: ``hardware`` says where
        it runs).

    Returns
    -------
    list of LevelCost
    """
    for name, value in (("n_samples", n_samples), ("n_features", n_features)):
        if not is_int(value, 1):
            raise ValueError(f"{name} must be a positive integer, got {shown(value)}.")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64 (what a fit computes in), got {dtype}.")
    params = {name: value for name, value in params.items() if name not in NOT_WORK}
    p = check_hierarchy(SimpleNamespace(shape=(n_samples, n_features), dtype=dtype), **params)
    hardware = Hardware() if hardware is None else hardware
    if threads is None:
        threads = numba.get_num_threads()
    if not is_int(threads, 1):
        raise ValueError(f"threads must be a positive integer, got {shown(threads)}.")
    if not isinstance(hardware, Hardware):
        raise ValueError(f"hardware must be a Hardware, got {shown(hardware)}.")
    if rates is None:
        rates = lambda k, dt: calibrate(n_features, dt, k)
    if hardware.on_dask and p.n_splits[0] > 1:
        raise ValueError(DASK_SPLIT_REFUSED)
    out, m, itemsize = [], n_samples, dtype.itemsize
    for t, k in enumerate(p.n_clusters):
        s = p.sample_size[t] if p.sample_size[t] is not None else default_sample_size(m, k)
        r = p.n_resamples[t] if s > 1 else 0
        parts = level_work(m, n_features, k, r, s, p.n_splits[t], p)
        seconds = 0.0
        for w in parts:  # each at the rate of its number of centres; the rows keep their dtype
            rate = rates(w.k, dtype)
            fixed = w.iterations * rate.iteration_seconds + w.seedings * rate.seeding_seconds
            if hardware.gpus:
                compute = w.flops / (hardware.gpus * hardware.gpu_tflops * 1e12)
            else:  # on Dask workers, level 0's searches of every row are shared; the rest is the client's
                workers = hardware.workers if t == 0 and hardware.on_dask else 1
                compute = (w.search - w.full + w.full / workers) / rate.search + w.seeding / rate.seeding
            seconds += compute + fixed
        if t == 0 and hardware.on_dask:  # the per-row state is in the workers' scratch folders
            mem = worker_peak_bytes(k, n_features, itemsize, m)
        else:
            mem = peak_bytes(m, n_features, k, itemsize, s, r, p, threads)
        out.append(LevelCost(t, m, k, sum(w.flops for w in parts), seconds, mem))
        m = k
    return out


#: Rates measured in this process, by key (those not kept on disk too).
_measured: dict[str, Rates] = {}


def _cache_path(key) -> str:
    root = os.environ.get("HKMEANS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hkmeans"
    )
    return os.path.join(root, f"rates-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json")


def calibrate(n_features, dtype, n_clusters, cache=True) -> Rates:
    """The :class:`Rates` of this machine's kernels for rows of ``n_features`` of
    ``dtype`` and ``n_clusters`` centres, timed on random rows with every usable CPU:
    about a second per combination, kept in ``~/.cache/hkmeans``
    (``$HKMEANS_CACHE_DIR``) for the next call on this machine (its CPU model and
    usable CPUs) with the same threads and version, unless other processes kept cores
    busy meanwhile (:data:`BUSY_CORES`). The centres are timed at the power of 2 at
    or below ``n_clusters`` (at most :data:`CALIBRATION_CENTRES`): with fewer the
    rate is no higher."""
    if not is_int(n_features, 1) or not is_int(n_clusters, 1):
        raise ValueError(
            f"n_features and n_clusters must be positive integers, got {shown(n_features)}, {shown(n_clusters)}."
        )
    dtype, d = np.dtype(dtype), int(n_features)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}.")
    k = 2
    while 2 * k <= min(n_clusters, CALIBRATION_CENTRES):
        k *= 2
    key = json.dumps(
        [__version__, platform.machine(), _cpu_model(), usable_cpus(), numba.get_num_threads(), d, dtype.str, k]
    )
    if cache and key in _measured:
        return _measured[key]
    path = _cache_path(key)
    if cache:
        kept = _read_rates(path)
        if kept is not None:
            return kept
    log.info(f"timing this machine's kernels: {d} features, {dtype}, {k} centres (once; then cached)")
    before = _load_sample()
    with every_usable_cpu():
        rates = _measure(d, dtype, k)
    after = _load_sample()
    busy = busy_elsewhere(before, after) if before and after else 0.0
    if cache:
        _measured[key] = rates
    if busy >= BUSY_CORES:
        log.info(f"other processes kept {busy:.1f} cores busy while the kernels were timed: rates not kept")
    elif cache:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            save_text(path, json.dumps(asdict(rates)))
        except OSError:
            pass  # a read-only home: measured again next time
    return rates


def _read_rates(path) -> Rates | None:
    """The rates kept at ``path``, or None where there are none fit to use."""
    try:
        with open(path) as f:
            rates = Rates(**json.load(f))
    except (OSError, ValueError, TypeError):
        return None
    values = [rates.search, rates.seeding, rates.iteration_seconds, rates.seeding_seconds]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    if rates.search <= 0 or rates.seeding <= 0 or rates.iteration_seconds < 0 or rates.seeding_seconds < 0:
        return None
    return rates


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what Python knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _load_sample():
    try:
        return cpu_sample()
    except (OSError, ValueError):
        return None


def _measure(d, dtype, k) -> Rates:
    trials = local_trials(k)
    # wide rows: fewer centres, so that the rows stay within CALIBRATION_VALUES
    k = int(min(k, max(2, CALIBRATION_VALUES // (4 * d))))
    rows = int(np.clip(CALIBRATION_VALUES // d, 4 * k, CALIBRATION_ROWS))
    ks = max(2, min(k, CALIBRATION_SEEDS, rows // 2))
    X = np.random.default_rng(0).standard_normal((rows, d), dtype=np.float32).astype(dtype, copy=False)
    C = X[:k].astype(np.float64)

    def iterations(m):
        # Lloyd as a fit runs it: searches, the centres' sums and update; the last
        # search after the iterations, unless the labels stopped changing first
        res = lloyd(X[:m], C, max_iter=CALIBRATION_ITERATIONS, tol=0.0)
        searches = res.n_iter if res.n_iter < CALIBRATION_ITERATIONS else res.n_iter + 1
        return 2.0 * m * k * d * searches, searches

    def seeding(m):
        kmeans_plusplus(X[:m], ks, random_state=0, n_local_trials=trials)
        return 2.0 * m * d * (ks - 1) * trials, 1

    (search_rate, per_iteration), (seeding_rate, per_seeding) = (
        _rate(iterations, rows, 2 * k),
        _rate(seeding, rows, 2 * ks),
    )
    return Rates(search_rate, seeding_rate, per_iteration, per_seeding)


def _rate(call, rows, few) -> tuple[float, float]:
    """``(flops per second, fixed seconds per unit)`` of ``call(m) -> (flops, units)``
    on ``m`` rows: the best rate of its calls on ``rows`` rows (at least
    :data:`CALIBRATION_CALLS`, and :data:`CALIBRATION_SECONDS` in all), and the
    fastest of as many calls on ``few`` rows beyond that rate, per unit (an
    iteration, a seeding). The best, as timeit takes: a machine shared with other
    work only ever slows a call down."""
    call(few)  # compiled or loaded
    small = []
    for _ in range(CALIBRATION_CALLS):
        start = time.perf_counter()
        flops, units = call(few)
        small.append((time.perf_counter() - start, flops, units))
    rate, calls, begin = 0.0, 0, time.perf_counter()
    while calls < CALIBRATION_CALLS or time.perf_counter() - begin < CALIBRATION_SECONDS:
        start = time.perf_counter()
        flops = call(rows)[0]
        rate, calls = max(rate, flops / max(time.perf_counter() - start, 1e-9)), calls + 1
    return rate, min(max(0.0, t - f / rate) / u for t, f, u in small)
