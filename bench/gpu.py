"""The CUDA backend on one GPU, in one run (about 5 minutes on an H100/H200):

1. assignment throughput (n x d rows against k centres) against a cuBLAS SGEMM of
   the same shapes (CuPy, else torch);
2. the throughput of the other kernels, in rows/s (and GB/s of the rows read for the
   sums) beside that SGEMM's rows/s: the counting sort of the rows by label and the
   segmented cluster sums (a Lloyd pass), the sort by (cluster, score, row) of a
   resampling step's selection, and a k-means++ draw (block sums, scan, draw);
3. one Lloyd iteration against faiss-gpu (if importable) and against the paper's
   PyTorch k-means code path (distances by matmul, argmin, index_add; torch on the GPU);
4. the paper's large example end to end: 100k x 256, n_clusters (5000, 1000),
   10 resamples;
5. peak device memory of each part.

    python bench/gpu.py [--n 1000000] [--d 256] [--k 5000]

Exits with a one-line message where numba-cuda or a GPU is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import threading
import time

import numpy as np


def fail(message):
    print(f"bench/gpu.py: {message}", file=sys.stderr)
    sys.exit(1)


class PeakMemory:
    """Device memory in use at most while the block runs (sampled every 20 ms, above
    what was in use on entry; an allocation shorter than that can be missed)."""

    def __init__(self, cuda):
        import numba

        self.cuda, self.peak, self._stop = cuda, 0, threading.Event()
        self.simulated = numba.config.ENABLE_CUDASIM  # no device memory to read

    def _used(self):
        info = self.cuda.current_context().get_memory_info()
        return info.total - info.free

    def __enter__(self):
        if self.simulated:
            return self
        self.base = self._used()
        device = self.cuda.get_current_device().id

        def sample():
            with self.cuda.gpus[device]:  # the sampler thread needs the device's context
                while not self._stop.wait(0.02):
                    self.peak = max(self.peak, self._used() - self.base)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.simulated:
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._used() - self.base)

    def __str__(self):
        if self.simulated:
            return "peak device memory not read in the simulator"
        return f"peak device memory {self.peak / 2**20:.0f} MiB"


def timed(fn, sync, repeat=3):
    """Best wall time of ``repeat`` calls, after one warm-up call."""
    fn()
    sync()
    best = np.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def sgemm(X, C):
    """``(name, f)``: ``f()`` multiplies the device copies of ``X`` and ``C.T`` by cuBLAS."""
    if importlib.util.find_spec("cupy"):
        import cupy

        a, b = cupy.asarray(X), cupy.asarray(C)
        return "CuPy", lambda: a @ b.T
    if _torch_on_gpu():
        import torch

        a, b = torch.from_numpy(X).cuda(), torch.from_numpy(C).cuda()
        return "torch", lambda: a @ b.T
    return None, None


def _torch_on_gpu():
    """Whether torch is installed and sees a GPU (not a CPU-only build)."""
    if not importlib.util.find_spec("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def torch_lloyd_iteration():
    """One iteration of the paper's PyTorch k-means (matmul distances, argmin,
    index_add of the sums), or None without torch on a GPU."""
    if not _torch_on_gpu():
        return None
    import torch

    def iteration(X, C):
        dist = (X * X).sum(1, keepdim=True) - 2 * X @ C.T + (C * C).sum(1)
        labels = dist.argmin(1)
        sums = torch.zeros_like(C, dtype=torch.float64).index_add_(0, labels, X.double())
        counts = torch.bincount(labels, minlength=C.shape[0]).clamp_(min=1)
        return (sums / counts[:, None]).float()

    return iteration


def kernel_throughput(data, k, sync, gemm_rate):
    """Section 2: the CUDA backend's grouping, sums, selection sort and seeding draw
    on its resident rows, labels of ``k`` uneven clusters (one of half the rows)."""
    from hkmeans.backends import cuda as backend

    n, d = data.X.shape
    cuda, seeding = data.k.cuda, data.k.seeding
    rng = np.random.default_rng(1)
    labels = cuda.to_device(np.where(rng.random(n) < 0.5, 0, rng.integers(1, k, n)))
    scores = cuda.to_device(rng.random(n))
    offsets, order, _ = data._group(labels, k)
    sums = data._empty((k, d), np.float64, 0.0)
    gemm = f"  ({gemm_rate / 1e6:8.1f} M rows/s for the SGEMM)" if gemm_rate else ""

    def line(name, t, extra=""):
        print(f"   {name:<44} {t * 1e3:8.1f} ms  {n / t / 1e6:8.1f} M rows/s{extra}")

    line("counting sort of the rows by label", timed(lambda: data._group(labels, k), sync))
    t = timed(lambda: data._segment_sums(data._dX, labels, offsets, order, sums), sync)
    line("segmented cluster sums (float64)", t, f"  {data.X.nbytes / t / 1e9:6.1f} GB/s")
    line("sort by (cluster, score, row), bitonic", timed(lambda: data._rank(labels, scores), sync, repeat=1))
    chunk = data.threads
    nb = -(-n // chunk)
    closest, w = cuda.to_device(rng.random(n)), cuda.to_device(np.ones(n))
    perm = cuda.to_device(rng.permutation(n))
    bsums, bcum = data._empty((nb, 1), np.float64), data._empty((nb, 1), np.float64)
    u, out = cuda.to_device(rng.random(8)), data._empty(8, np.int64)

    def draw():
        seeding.draw_sums[data._grid(nb)](perm, closest, w, chunk, bsums)
        data._scan(bsums, bcum, True)
        seeding.draw[data._grid(8)](bsums, bcum, perm, closest, w, chunk, u, backend.DRAW_SLACK, out)

    line("k-means++ draw (block sums, scan, 8 draws)", timed(draw, sync))
    if gemm:
        print(f"   beside: cuBLAS SGEMM of the rows against {k} centres{gemm}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--k", type=int, default=5000)
    parser.add_argument("--sections", default="1234", help="which sections to run (default: all)")
    args = parser.parse_args()

    from hkmeans.backends.cuda import check_available

    try:
        check_available()
    except RuntimeError as err:
        fail(f"no GPU run: {err}")
    from hkmeans._kernels.cuda._common import cuda

    print(f"device: {getattr(cuda.get_current_device(), 'name', 'the Numba CUDA simulator')}")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.d)).astype(np.float32)
    C = X[rng.choice(args.n, args.k, replace=False)]

    t_gemm = section_assignment(X, C, args, cuda) if "1" in args.sections else None
    if "2" in args.sections:
        section_kernels(X, args, cuda, t_gemm)
    if "3" in args.sections:
        section_lloyd(X, C, args, cuda)
    if "4" in args.sections:
        section_paper(rng, cuda)


def section_assignment(X, C, args, cuda):
    """Section 1; returns the SGEMM's time (None without CuPy or torch)."""
    from hkmeans.backends.cuda import CUDABackend

    sync, flops = cuda.synchronize, 2.0 * args.n * args.k * args.d
    print(f"\n1. assignment, {args.n} x {args.d} against {args.k} centres")
    name, gemm = sgemm(X, C)
    t_gemm = timed(gemm, sync) if gemm else None
    if t_gemm:
        print(f"   cuBLAS SGEMM ({name}): {t_gemm * 1e3:8.1f} ms  {flops / t_gemm / 1e12:6.1f} TFLOP/s")
    for label, option in (("GEMM + fused argmin", "auto"), ("tiled Numba kernel", None)):
        if option == "auto" and not importlib.util.find_spec("cupy"):
            continue
        with PeakMemory(cuda) as mem:  # the resident rows and the per-row outputs included
            data = CUDABackend(X, gemm=option)
            labels, sqdist = data._empty(args.n, np.int64), data._empty(args.n, np.float64)
            t = timed(lambda: data._search(C, labels, sqdist), sync)
        share = f", {t_gemm / t:5.0%} of the SGEMM" if t_gemm else ""
        print(f"   hkmeans {label}: {t * 1e3:8.1f} ms  {flops / t / 1e12:6.1f} TFLOP/s{share}; {mem}")
        del data, labels, sqdist
    del gemm  # its device copies; CuPy's pool then hands back what the SGEMMs took
    if importlib.util.find_spec("cupy"):
        import cupy

        cupy.get_default_memory_pool().free_all_blocks()
    return t_gemm


def section_kernels(X, args, cuda, t_gemm):
    """Section 2."""
    from hkmeans.backends.cuda import CUDABackend

    print(f"\n2. the other kernels, {args.n} x {args.d}, {args.k} clusters")
    data = CUDABackend(X)
    if data.resident:
        with PeakMemory(cuda) as mem:
            kernel_throughput(data, args.k, cuda.synchronize, args.n / t_gemm if t_gemm else None)
        print(f"   {mem}")
    else:
        print("   skipped: the rows do not fit on the device")


def section_lloyd(X, C, args, cuda):
    """Section 3."""
    from hkmeans.backends.cuda import CUDABackend

    print(f"\n3. one Lloyd iteration, {args.n} x {args.d}, k = {args.k}")
    with PeakMemory(cuda) as mem:  # the resident rows and the run's per-row state included
        data = CUDABackend(X)
        run = data.lloyd_run(np.array([0, args.k]), bounds=False)
        t = timed(lambda: run.step(C), cuda.synchronize)
    print(f"   hkmeans (sums, counts, inertia back to the host): {t * 1e3:8.1f} ms; {mem}")
    del data, run
    iteration = torch_lloyd_iteration()
    if iteration is not None:
        import torch

        torch.cuda.reset_peak_memory_stats()  # not section 1's SGEMM output
        Xt, Ct = torch.from_numpy(X).cuda(), torch.from_numpy(C).cuda()
        t = timed(lambda: iteration(Xt, Ct), torch.cuda.synchronize)
        peak = torch.cuda.max_memory_allocated() / 2**20
        print(f"   paper's PyTorch loop (matmul, argmin, index_add): {t * 1e3:8.1f} ms; torch peak {peak:.0f} MiB")
        del Xt, Ct
    else:
        print("   paper's PyTorch loop: torch is not installed, or sees no GPU")
    try:
        import faiss

        if faiss.get_num_gpus() == 0:  # a CPU build would quietly run on the CPU
            raise RuntimeError("faiss sees no GPU (a CPU build?)")
        km = faiss.Kmeans(args.d, args.k, niter=5, gpu=True, seed=0, max_points_per_centroid=args.n)
        start = time.perf_counter()
        km.train(X, init_centroids=C)
        per = (time.perf_counter() - start) / 5 * 1e3
        print(f"   faiss-gpu: {per:8.1f} ms per iteration (5 iterations, set-up included)")
    except Exception as err:  # faiss missing, or built without GPU support
        print(f"   faiss-gpu: not available ({type(err).__name__}: {err})")


def section_paper(rng, cuda):
    """Section 4."""
    from hkmeans import HierarchicalKMeans

    print("\n4. the paper's large example: 100k x 256, n_clusters (5000, 1000), 10 resamples")
    Y = rng.normal(size=(100_000, 256)).astype(np.float32)
    with PeakMemory(cuda) as mem:
        start = time.perf_counter()
        model = HierarchicalKMeans((5000, 1000), n_resamples=10, random_state=0, device="cuda").fit(Y)
        cuda.synchronize()
    print(f"   fit: {time.perf_counter() - start:.1f} s, {model.n_iter_} Lloyd iterations; {mem}")


if __name__ == "__main__":
    main()
