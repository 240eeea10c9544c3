"""Which kernels compile on a first run, for which argument types, and how long each
takes: runs a command line of ``hkmeans`` in this process with an empty kernel cache
and records Numba's compile events.

    python bench/compile_times.py                      # the first `hkmeans demo`
    python bench/compile_times.py -- fit pool.npy ...  # any other command line

Times are CPU seconds of the compiling thread, so that a machine shared with other
work gives about the figures of an idle one. "total" includes the kernels a kernel
calls (they compile inside it), "self" does not; Numba's own helpers compiled on the
way count in the self time of the kernel that needed them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager


def _type_names(args) -> str:
    return ", ".join(str(a) for a in args)


@contextmanager
def record():
    """Collects ``(kernel, argument types, total s, self s)`` of every hkmeans kernel
    compiled inside the block into the list it yields."""
    from numba.core import event

    records = []
    stack = []  # per open hkmeans compile: [start, time spent in nested hkmeans compiles]

    def ours(ev):
        return ev.data["dispatcher"].py_func.__module__.startswith("hkmeans")

    class Recorder(event.Listener):
        def on_start(self, ev):
            if ours(ev):
                stack.append([time.thread_time(), 0.0])

        def on_end(self, ev):
            if not ours(ev):
                return
            start, nested = stack.pop()
            total = time.thread_time() - start
            if stack:
                stack[-1][1] += total
            func = ev.data["dispatcher"].py_func
            name = f"{func.__module__.removeprefix('hkmeans.')}.{func.__name__}"
            records.append((name, _type_names(ev.data["args"]), total, total - nested))

    with event.install_listener("numba:compile", Recorder()):
        yield records


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("argv", nargs="*", help="hkmeans command line (default: demo)")
    parser.add_argument("--signatures", action="store_true", help="one line per signature")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="hkmeans-compile-")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(work, "cache")  # before numba is imported
    argv = args.argv or ["demo", "--out", os.path.join(work, "demo")]

    from hkmeans.cli import main as cli_main

    start, cpu = time.perf_counter(), time.process_time()
    with record() as records:
        cli_main(argv)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu

    if args.signatures:
        rows = sorted(records, key=lambda r: -r[3])
        print(f"{'self s':>7} {'total s':>7}  kernel (argument types)")
        for name, types, total, own in rows:
            print(f"{own:7.2f} {total:7.2f}  {name}({types})")
    else:
        by_kernel = defaultdict(lambda: [0, 0.0, 0.0])
        for name, _, total, own in records:
            by_kernel[name][0] += 1
            by_kernel[name][2] += own
            by_kernel[name][1] = max(by_kernel[name][1], total)
        print("| kernel | signatures | self s | largest total s |\n|---|---:|---:|---:|")
        for name, (count, total, own) in sorted(by_kernel.items(), key=lambda kv: -kv[1][2]):
            print(f"| `{name}` | {count} | {own:.2f} | {total:.2f} |")
    compile_s = sum(r[3] for r in records)
    print(
        f"\n{len(records)} compiles: {compile_s:.1f} CPU s; the command: {cpu:.1f} CPU s, {wall:.1f} s", file=sys.stderr
    )


if __name__ == "__main__":
    main()
