"""Greedy k-means++ on wide rows, screened: 8-bit copies of the rows and of the
candidates rule out, with a proven margin, the rows a candidate cannot move; only the
rows left get the exact pass's dot products.

A candidate ``y`` moves row ``x`` only where the squared distance the exact pass
computes (:func:`.wide.block_potentials`) is below the row's ``closest``. Distances do
not change when the rows' mean ``mu`` is taken off, and the 8-bit rounding shrinks with
the norms, so the copies are of ``x - mu``: each row is stored once as
``x - mu = s q + e_x`` (``q`` in [-L, L], one scale ``s`` per row) and each step's
candidates as ``y - mu = t p + e_y`` (``p`` in [-L, L]; ``L`` is :data:`LEVELS`); the
integer products ``q . p`` take three AVX2 multiplies (two ``pmaddubsw``, one
``pmaddwd``), or two ``vpdpbusd`` where the CPU has VNNI, per eight features and eight
candidates, against eight fused multiply-adds in the exact pass, and the copy is a
quarter of the float32 data. With ``|e_x|`` and ``|e_y|``,
Cauchy-Schwarz bounds the rest of the dot product (``x`` and ``y`` centred here):
``x . y <= s t (q . p) + (|x| + |e_x|) |e_y| + |e_x| |y|``; the exact pass's rounding
(sums of ``d`` products in the data's dtype or finer, then ``|x|^2 + |y|^2 - 2 x . y`` in
float64) stays below ``(d + 8) u (|x|^2 + |y|^2)``, ``u`` the unit roundoff of the
data's dtype (``|x|``, ``|y|`` not centred), plus ``(d + 8) eta`` where products
fall below the dtype's normal numbers (``eta`` its smallest subnormal), and the margin
is twice that; the float64 arithmetic of the bound itself gets a relative ``1e-9``. A
row whose lower bound is not below its ``closest`` for a candidate provably keeps its
distance: its term in that candidate's potential is ``w closest``, as the exact pass
adds it.

The potentials are the exact pass's, bit for bit: per block of rows, each candidate's
sum is taken row by row from 0, in order. Up to the first row a candidate moves, that
is the block's running sum of ``w closest`` (kept per row, made anew for a block whose
rows moved); from there on it is taken as the exact pass takes it.

The screen is written as LLVM IR (:mod:`..simd`'s helpers) with x86 AVX2 intrinsics: it
compiles only where the lanes pay (:data:`..simd.LANES_PAY`); the kernel that calls it
is picked in Python.
"""

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import simd
from .._common import _row_sq, _task_range, njit
from ..simd import LANES, _data, _splat, _vector_at
from .draws import best_trial, column_sums, draw, first_centre, update_draw_sums
from .wide import _trial_potentials_wide, block_potentials, candidate_dots, candidate_rows

#: Largest magnitude of the rows' and of the candidates' integers. ``pmaddubsw`` adds
#: two products of an unsigned byte (the row's ``q + LEVELS`` <= 126) and a signed one
#: into 16 bits, and two such sums are added before they are widened:
#: ``4 * 126 * 63 < 2**15``. ``vpdpbusd`` widens to 32 bits at once: the row's
#: ``q + LEVELS`` <= 254 fits its unsigned byte and ``p`` its signed one.
LEVELS = 127 if simd.VNNI else 63

#: Widest rows the screen takes: its int32 sums of one product of at most
#: ``2 LEVELS * LEVELS`` per feature must not wrap (66,572 features with ``vpdpbusd``'s
#: codes, 270,532 with AVX2's).
MAX_FEATURES = (2**31 - 1) // (2 * LEVELS * LEVELS)

#: Rows x steps x features below which a seeding is not screened: there the screen
#: saves about a tenth of a second or less (0.2-0.6 of the unscreened pass's 1.4e-10 s
#: per unit on a 2-core Xeon), while it compiles about 10 s more on a first run.
MIN_WORK = 2e9

#: Features per group: two ``pmaddubsw`` of four features each, added in 16 bits.
GROUP = 8

#: Rows per tile of the screen.
TILE_ROWS = 8

#: The screen is left out of a step when more than this share of the blocks of the
#: last screened step had too many rows left (the first steps, where most rows move),
#: and tried again every :data:`RETRY` steps.
GIVE_UP = 0.75
RETRY = 16

_i8, _i16, _i32, _i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)


def _screen(n_rows, vnni):
    """Intrinsic ``f(Xq, row, Pq, col, gam, thr, trow, coef, mask, mrow)``: for the
    ``n_rows`` rows from ``row`` of ``Xq`` (uint8, ``q + LEVELS``) and the candidates
    ``col:col + LANES`` of ``Pq`` (int8, ``Pq[g, 4 l + j]`` is feature ``4 g + j`` of
    candidate ``l``), the integer sums ``J = q . p`` (``Xq . Pq`` less ``coef[2]``,
    which holds ``LEVELS sum(p)``); then bit ``l`` of ``mask[mrow + r, col // LANES]``
    is set where ``gam[row + r] * (coef[0, l] * J) - coef[1, l] > thr[trow + r]`` (or
    either side is NaN). ``Xq``'s width is a multiple of :data:`GROUP`. No bounds are
    checked. With ``vnni``, the products of four features take one ``vpdpbusd``
    (AVX-512 VNNI or AVX-VNNI) instead of the AVX2 sequence: the same integers."""

    @intrinsic
    def screen(typingctx, Xq, row, Pq, col, gam, thr, trow, coef, mask, mrow):
        def is_array(a, ndim, dtype):
            return isinstance(a, types.Array) and a.ndim == ndim and a.layout == "C" and a.dtype == dtype

        if not (
            is_array(Xq, 2, types.uint8)
            and is_array(Pq, 2, types.int8)
            and is_array(gam, 1, types.float64)
            and is_array(thr, 1, types.float64)
            and is_array(coef, 2, types.float64)
            and is_array(mask, 2, types.uint8)
        ):
            return None
        if not all(isinstance(v, types.Integer) for v in (row, col, trow, mrow)):
            return None
        sig = types.void(Xq, row, Pq, col, gam, thr, trow, coef, mask, mrow)

        def codegen(context, builder, signature, args):
            xq_arr, row_v, pq_arr, col_v, gam_arr, thr_arr, trow_v, coef_arr, mask_arr, mrow_v = args
            row_v, col_v, trow_v, mrow_v = (
                context.cast(builder, v, signature.args[j], types.int64)
                for v, j in ((row_v, 1), (col_v, 3), (trow_v, 6), (mrow_v, 9))
            )
            xp, xs = _data(context, builder, signature.args[0], xq_arr)
            pp, ps = _data(context, builder, signature.args[2], pq_arr)
            cp, cs = _data(context, builder, signature.args[7], coef_arr)
            mp, ms = _data(context, builder, signature.args[8], mask_arr)
            gam_p = context.make_array(signature.args[4])(context, builder, gam_arr).data
            thr_p = context.make_array(signature.args[5])(context, builder, thr_arr).data
            dq = builder.extract_value(context.make_array(signature.args[0])(context, builder, xq_arr).shape, 1)
            bytes_ty = ir.VectorType(_i8, 4 * LANES)
            words_ty = ir.VectorType(_i16, 2 * LANES)
            ints_ty = ir.VectorType(_i32, LANES)
            dty = ir.VectorType(ir.DoubleType(), LANES)
            maddubs = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(words_ty, [bytes_ty, bytes_ty]), "llvm.x86.avx2.pmadd.ub.sw"
            )
            maddwd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ints_ty, [words_ty, words_ty]), "llvm.x86.avx2.pmadd.wd"
            )
            dpbusd = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ints_ty, [ints_ty] * 3), "llvm.x86.avx512.vpdpbusd.256"
            )
            ones = ir.Constant(words_ty, [1] * (2 * LANES))
            accs = [cgutils.alloca_once_value(builder, ir.Constant(ints_ty, None)) for _ in range(n_rows)]
            # a second sum per row for the odd groups of four: two chains of vpdpbusd per row
            odds = [cgutils.alloca_once_value(builder, ir.Constant(ints_ty, None)) for _ in range(n_rows)]
            firsts = [
                builder.gep(xp, [builder.mul(builder.add(row_v, ir.Constant(_i64, r)), xs)]) for r in range(n_rows)
            ]
            y_at = builder.gep(pp, [builder.mul(col_v, ir.Constant(_i64, 4))])

            def y_vector(g):
                return builder.load(
                    builder.bitcast(builder.gep(y_at, [builder.mul(g, ps)]), bytes_ty.as_pointer()), align=1
                )

            def x_splat(r, g):
                at = builder.gep(firsts[r], [builder.mul(g, ir.Constant(_i64, 4))])
                word = builder.load(builder.bitcast(at, _i32.as_pointer()), align=1)
                return builder.bitcast(_splat(builder, word, ints_ty), bytes_ty)

            with cgutils.for_range(builder, builder.sdiv(dq, ir.Constant(_i64, GROUP))) as loop:
                g0 = builder.mul(loop.index, ir.Constant(_i64, 2))
                g1 = builder.add(g0, ir.Constant(_i64, 1))
                y0, y1 = y_vector(g0), y_vector(g1)
                for r in range(n_rows):
                    if vnni:
                        for acc, g, y in ((accs[r], g0, y0), (odds[r], g1, y1)):
                            x = builder.bitcast(x_splat(r, g), ints_ty)
                            builder.store(
                                builder.call(dpbusd, [builder.load(acc), x, builder.bitcast(y, ints_ty)]), acc
                            )
                        continue
                    pairs = builder.add(
                        builder.call(maddubs, [x_splat(r, g0), y0]), builder.call(maddubs, [x_splat(r, g1), y1])
                    )
                    wide_ = builder.call(maddwd, [pairs, ones])
                    builder.store(builder.add(builder.load(accs[r]), wide_), accs[r])
            for acc, odd in zip(accs, odds):
                builder.store(builder.add(builder.load(acc), builder.load(odd)), acc)
            scale = builder.load(_vector_at(builder, cp, col_v, dty), align=1)
            shift = builder.load(_vector_at(builder, cp, builder.add(cs, col_v), dty), align=1)
            offset = builder.load(_vector_at(builder, cp, builder.add(builder.add(cs, cs), col_v), dty), align=1)
            out_col = builder.sdiv(col_v, ir.Constant(_i64, LANES))
            for r in range(n_rows):
                j = builder.fsub(builder.sitofp(builder.load(accs[r]), dty), offset)
                gam_r = builder.load(builder.gep(gam_p, [builder.add(row_v, ir.Constant(_i64, r))]))
                thr_r = builder.load(builder.gep(thr_p, [builder.add(trow_v, ir.Constant(_i64, r))]))
                h = builder.fsub(builder.fmul(_splat(builder, gam_r, dty), builder.fmul(scale, j)), shift)
                near = builder.fcmp_unordered(">", h, _splat(builder, thr_r, dty))
                at = builder.gep(mp, [builder.add(builder.mul(builder.add(mrow_v, ir.Constant(_i64, r)), ms), out_col)])
                builder.store(builder.bitcast(near, ir.IntType(LANES)), at)
            return context.get_dummy_value()

        return sig, codegen

    return screen


@intrinsic
def prefetch_row(typingctx, X, row):
    """Asks for the cache lines of row ``row`` of the C-contiguous 2-D ``X`` ahead of
    its use (rows read out of order defeat the hardware's prefetcher)."""
    if not (isinstance(X, types.Array) and X.ndim == 2 and X.layout == "C" and isinstance(row, types.Integer)):
        return None
    sig = types.void(X, row)

    def codegen(context, builder, signature, args):
        x_arr, row_v = args
        row_v = context.cast(builder, row_v, signature.args[1], types.int64)
        xp, xs = _data(context, builder, signature.args[0], x_arr)
        i8p = _i8.as_pointer()
        start = builder.bitcast(builder.gep(xp, [builder.mul(row_v, xs)]), i8p)
        itemsize = context.get_abi_sizeof(context.get_data_type(signature.args[0].dtype))
        d = builder.extract_value(context.make_array(signature.args[0])(context, builder, x_arr).shape, 1)
        n_lines = builder.sdiv(
            builder.add(builder.mul(d, ir.Constant(_i64, itemsize)), ir.Constant(_i64, 63)), ir.Constant(_i64, 64)
        )
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, _i32, _i32, _i32]), "llvm.prefetch.p0i8"
        )
        with cgutils.for_range(builder, n_lines) as loop:
            at = builder.gep(start, [builder.mul(loop.index, ir.Constant(_i64, 64))])
            builder.call(prefetch, [at, ir.Constant(_i32, 0), ir.Constant(_i32, 3), ir.Constant(_i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


#: A tile of :data:`TILE_ROWS` rows, and a single row (:func:`_screen`).
screen_tile = _screen(TILE_ROWS, simd.VNNI)
screen_row = _screen(1, simd.VNNI)


@njit(cache=True)
def _code(v, levels, out):
    """``v = s q + e`` (``q = out``, integers in [-levels, levels], as float64; ``s``
    from ``v``'s largest magnitude): returns ``s`` and ``|e|``, summed in units of
    ``s`` (the squares of a tiny row's residuals would underflow)."""
    top = 0.0
    for f in range(v.shape[0]):
        top = max(top, abs(v[f]))
    s = top / levels if top > 0 else 1.0
    e2 = 0.0
    for f in range(v.shape[0]):
        q = min(max(np.rint(v[f] / s), -levels), levels)
        out[f] = q
        r = (v[f] - s * q) / s
        e2 += r * r
    return s, s * np.sqrt(e2)


@njit(parallel=True, cache=True)
def _row_codes(X, mu, x_sq, kappa):
    """The rows' 8-bit copies ``Xq`` (``q + LEVELS`` of ``x - mu``, features padded to a
    multiple of :data:`GROUP` with ``q = 0``), ``gam = 2 s``, the centred squared norms
    ``|x - mu|^2`` and what the screen's threshold needs per row (``bounds``:
    ``(1 - 1e-9) |x - mu|^2 - kappa |x|^2`` less half the :func:`underflow_margin`,
    and the factors of the largest ``|e_y|`` and ``|y - mu|`` in the Cauchy-Schwarz
    bound: ``2 (|x - mu| + |e_x|)`` and ``2 |e_x|``). Distances do not change with ``mu``; the copies' rounding, which grows
    with the rows' norms, does."""
    n, d = X.shape
    dq = (d + GROUP - 1) // GROUP * GROUP
    floor = underflow_margin(X)
    Xq = np.full((n, dq), LEVELS, dtype=np.uint8)
    gam = np.empty(n, dtype=np.float64)
    csq = np.empty(n, dtype=np.float64)
    bounds = np.empty((n, 3), dtype=np.float64)
    for i in prange(n):
        v = np.empty(d, dtype=np.float64)
        q = np.empty(d, dtype=np.float64)
        c2 = 0.0
        for f in range(d):
            v[f] = np.float64(X[i, f]) - mu[f]
            c2 += v[f] * v[f]
        s, err = _code(v, LEVELS, q)
        for f in range(d):
            Xq[i, f] = np.uint8(q[f] + LEVELS)
        gam[i] = 2.0 * s
        csq[i] = c2
        bounds[i, 0] = (1.0 - 1e-9) * c2 - kappa * x_sq[i] - floor / 2
        bounds[i, 1] = 2.0 * (np.sqrt(c2) + err)
        bounds[i, 2] = 2.0 * err
    return Xq, gam, csq, bounds


@njit(cache=True)
def _candidate_codes(X, mu, x_sq, csq, cand, dq, kappa):
    """Per step: the candidates' 8-bit copies ``Pq`` (of ``y - mu``; lanes padded to
    whole vectors, laid out for :func:`_screen`), ``coef`` (their scales ``t``,
    ``(1 - 1e-9) |y - mu|^2 - kappa |y|^2`` less half the :func:`underflow_margin` and
    ``LEVELS sum(p)``; padded lanes never pass), and the largest ``|e_y|`` and
    ``|y - mu|``, rounded up."""
    t, d = cand.shape[0], X.shape[1]
    floor = underflow_margin(X)
    width = (t + LANES - 1) // LANES * LANES
    Pq = np.zeros((dq // 4, 4 * width), dtype=np.int8)
    coef = np.zeros((3, width), dtype=np.float64)
    coef[1, :] = np.inf
    v = np.empty(d, dtype=np.float64)
    p = np.empty(d, dtype=np.float64)
    err_top = 0.0
    norm_top = 0.0
    for q in range(t):
        for f in range(d):
            v[f] = np.float64(X[cand[q], f]) - mu[f]
        s, err = _code(v, LEVELS, p)
        total = 0.0
        for f in range(d):
            Pq[f // 4, 4 * q + f % 4] = np.int8(p[f])
            total += p[f]
        coef[0, q] = s
        coef[1, q] = (1.0 - 1e-9) * csq[cand[q]] - kappa * x_sq[cand[q]] - floor / 2
        coef[2, q] = LEVELS * total
        err_top = max(err_top, err)
        norm_top = max(norm_top, np.sqrt(csq[cand[q]]))
    return Pq, coef, err_top * (1.0 + 1e-9), norm_top * (1.0 + 1e-9)


@njit(cache=True)
def screen_margin(X):
    """``kappa``: the exact pass's squared distances are within ``kappa (|x|^2 + |y|^2)``
    of the true ones (twice the bound in the module's notes), where no product falls
    below the dtype's normal numbers (else see :func:`underflow_margin`)."""
    return 2.0 * (X.shape[1] + 8) * (np.finfo(X.dtype).eps / 2)


@njit(cache=True)
def underflow_margin(X):
    """What the exact pass's squared distances may lose besides ``kappa``'s share:
    twice ``(d + 8)`` times the dtype's smallest subnormal, for products and sums that
    fall below its normal numbers (rows of float32 values near 1e-23 and below)."""
    return 2.0 * (X.shape[1] + 8) * (np.finfo(X.dtype).tiny * np.finfo(X.dtype).eps)


@njit(cache=True)
def _running_sums(w, closest, a, e, run):
    """``run[i]``: ``w * closest`` of rows ``a..i`` added in order from 0, as
    :func:`block_potentials` adds them for a candidate that moves none of them."""
    s = 0.0
    for i in range(a, e):
        s += w[i] * closest[i]
        run[i] = s


@njit(parallel=True, cache=True)
def _all_running_sums(w, closest, chunk, run):
    n = closest.shape[0]
    for b in prange((n + chunk - 1) // chunk):
        _running_sums(w, closest, b * chunk, min((b + 1) * chunk, n), run)


@njit(cache=True)
def _screen_block(Xq, gam, bounds, closest, Pq, coef, top_e, top_y, a, e, thr, mask, left):
    """Rows ``a:e`` screened against every candidate: the rows some candidate may move
    (in block order, into ``left``); returns how many."""
    m = e - a
    for i in range(m):
        r = a + i
        thr[i] = bounds[r, 0] - bounds[r, 1] * top_e - bounds[r, 2] * top_y - closest[r]
    full = m - m % TILE_ROWS
    for col in range(0, coef.shape[1], LANES):
        for i in range(0, full, TILE_ROWS):
            screen_tile(Xq, a + i, Pq, col, gam, thr, i, coef, mask, i)
        for i in range(full, m):
            screen_row(Xq, a + i, Pq, col, gam, thr, i, coef, mask, i)
    n_left = 0
    for i in range(m):
        hit = False
        for v in range(mask.shape[1]):
            hit |= mask[i, v] != 0
        if hit:
            left[n_left] = i
            n_left += 1
    return n_left


@njit(parallel=True, cache=True)
def _screened_potentials(
    X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks,
    Xq, gam, mu, csq, bounds, run, kappa, full_rows
):  # fmt: skip
    """:func:`.wide._trial_potentials_wide`, the same sums and moves, the rows screened
    first: a block with more than ``full_rows`` rows left is computed whole
    (:func:`block_potentials`); otherwise only the rows left get their dot products,
    row by row in place (:func:`simd.dots_row` for the lanes, :func:`candidate_dots`
    otherwise: each pair summed as over the whole block).
    A candidate that moves none of a block's rows gets the block's running sum
    ``run``; one that does, that sum up to its first move and the rest row by row.
    Returns the potentials and how many blocks were computed whole."""
    n = X.shape[0]
    t = cand.shape[0]
    Y, Yt, y_sq = candidate_rows(X, x_sq, cand)
    width = y_sq.shape[0]
    Pq, coef, top_e, top_y = _candidate_codes(X, mu, x_sq, csq, cand, Xq.shape[1], kappa)
    n_blocks = partial.shape[0]
    n_tasks = max(1, min(n_tasks, n_blocks))
    whole = np.zeros(n_tasks, dtype=np.int64)
    for task in prange(n_tasks):
        G = np.zeros((chunk, width), dtype=np.float64)
        acc = np.empty(width, dtype=np.float64)
        moved = np.empty(chunk, dtype=np.bool_)
        thr = np.empty(chunk, dtype=np.float64)
        mask = np.empty((chunk, width // LANES), dtype=np.uint8)
        lefts = np.empty((2, chunk), dtype=np.int64)
        counts = np.zeros(2, dtype=np.int64)
        lo, hi = _task_range(task, n_tasks, n_blocks)
        # a block is screened one ahead, and its rows left asked for: reading scattered
        # rows waits on memory otherwise
        for b in range(lo - 1, hi):
            if b + 1 < hi:
                a1 = (b + 1) * chunk
                e1 = min(a1 + chunk, n)
                ahead = lefts[(b + 1) % 2]
                counts[(b + 1) % 2] = _screen_block(
                    Xq, gam, bounds, closest, Pq, coef, top_e, top_y, a1, e1, thr, mask, ahead
                )
                if counts[(b + 1) % 2] <= full_rows:
                    for j in range(counts[(b + 1) % 2]):
                        prefetch_row(X, a1 + ahead[j])
            if b < lo:  # the first block only screened
                continue
            a = b * chunk
            e = min(a + chunk, n)
            left = lefts[b % 2]
            n_left = counts[b % 2]
            mv = a * t
            if n_left > full_rows:
                mv = block_potentials(X, w, x_sq, closest, Yt, Y, y_sq, a, e, G, acc, moved, move_code, move_dist, mv)
                for q in range(t):  # not partial[b] = acc[:t]: an array assignment compiles for seconds
                    partial[b, q] = acc[q]
                n_moves[b] = mv - a * t
                whole[task] += 1
                continue
            # the rows left: their dot products, distances (in G) and moves, as the
            # exact pass computes them
            for j in range(n_left):  # row by row, in place: each pair summed as in a tile
                if Yt.shape[1] > 0:
                    for col in range(0, Yt.shape[1], LANES):
                        simd.dots_row(X, a + left[j], Yt, col, G, j)
                else:
                    candidate_dots(X, a + left[j], a + left[j] + 1, Yt, Y, G[j:])
            start = n_left  # the first row left that some candidate moves
            for j in range(n_left):
                i = left[j]
                ci = closest[a + i]
                xi = x_sq[a + i]
                for q in range(t):  # as potentials_block computes it
                    diff = (xi + y_sq[q]) - 2.0 * G[j, q]
                    d2 = diff if diff > 0.0 else 0.0
                    G[j, q] = d2
                    if d2 < ci:
                        move_code[mv] = i * t + q
                        move_dist[mv] = d2
                        mv += 1
                        start = min(start, j)
            n_moves[b] = mv - a * t
            if start == n_left:  # no move: every candidate gets the running sum
                partial[b, :] = run[e - 1]
                continue
            # up to the first move the running sum; then row by row, every candidate
            # (one that moves no row there adds what the running sum adds)
            i0 = left[start]
            acc[:] = run[a + i0 - 1] if i0 > 0 else 0.0
            j = start
            for i in range(i0, e - a):
                r = a + i
                ci = closest[r]
                wi = w[r]
                if j < n_left and left[j] == i:
                    for q in range(t):
                        acc[q] += wi * (G[j, q] if G[j, q] < ci else ci)
                    j += 1
                else:
                    v = wi * ci
                    for q in range(t):
                        acc[q] += v
            for q in range(t):
                partial[b, q] = acc[q]
    return column_sums(partial), whole.sum()


@njit(parallel=True, cache=True)
def _take_trial(closest, w, move_code, move_dist, n_moves, q, t, chunk, vals, pos, touched, run):
    """:func:`.wide._take_trial`, and the running sums of the blocks whose rows moved
    made anew."""
    n = closest.shape[0]
    for b in prange(n_moves.shape[0]):
        m = b * chunk * t
        hit = False
        for j in range(m, m + n_moves[b]):
            code = move_code[j]
            if code % t == q:
                r = b * chunk + code // t
                closest[r] = move_dist[j]
                vals[pos[r]] = w[r] * move_dist[j]
                touched[pos[r] // chunk] = True  # only ever set: the threads' writes agree
                hit = True
        if hit:
            _running_sums(w, closest, b * chunk, min((b + 1) * chunk, n), run)


@njit(cache=True)
def kmeans_plusplus_screened(X, w, order, first, rand, chunk, n_tasks, full_rows):
    """:func:`.wide.kmeans_plusplus_wide` with the rows screened (see the module's
    notes): the same chosen rows. A step whose blocks mostly need the whole pass (the
    first steps) leaves the screen out for the next :data:`RETRY` steps."""
    n, d = X.shape
    k = rand.shape[0] + 1
    idx, pos, closest, vals, draw_sums, touched = first_centre(X, w, order, first, k, chunk)
    n_blocks = draw_sums.shape[0]
    x_sq = np.empty(n, dtype=np.float64)
    for i in range(n):
        x_sq[i] = _row_sq(X[i])
    kappa = screen_margin(X)
    mu = np.zeros(d, dtype=np.float64)
    for i in range(n):
        for f in range(d):
            mu[f] += X[i, f]
    mu /= max(n, 1)
    Xq, gam, csq, bounds = _row_codes(X, mu, x_sq, kappa)
    run = np.empty(n, dtype=np.float64)
    _all_running_sums(w, closest, chunk, run)
    t = rand.shape[1]
    partial = np.empty((n_blocks, t), dtype=np.float64)
    move_code = np.empty(n_blocks * chunk * t, dtype=np.int32)
    move_dist = np.empty(n_blocks * chunk * t, dtype=np.float64)
    n_moves = np.empty(n_blocks, dtype=np.int64)
    wait = 0
    for c in range(1, k):
        cand = draw(order, vals, w, draw_sums, chunk, rand[c - 1])
        if wait > 0:
            wait -= 1
            pots = _trial_potentials_wide(
                X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks
            )
        else:
            pots, whole = _screened_potentials(
                X, w, x_sq, closest, cand, chunk, partial, move_code, move_dist, n_moves, n_tasks,
                Xq, gam, mu, csq, bounds, run, kappa, full_rows,
            )  # fmt: skip
            if whole > GIVE_UP * n_blocks:
                wait = RETRY
        best = best_trial(pots)
        idx[c] = cand[best]
        _take_trial(closest, w, move_code, move_dist, n_moves, best, t, chunk, vals, pos, touched, run)
        update_draw_sums(vals, draw_sums, touched, chunk)
    return idx
