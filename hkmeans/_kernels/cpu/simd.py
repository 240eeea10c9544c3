"""Explicit SIMD building blocks, written as LLVM IR, for k-means++ seeding on wide rows.

Numba's loop vectoriser turns a dot product into a vector sum that ends in a horizontal
reduction, which for a row against a few candidates costs as much as the products
themselves. Here the candidates are the vector lanes instead: eight candidates, stored
feature-major, against a tile of rows, one fused multiply-add per row and feature, so
no reduction is left. Each pair is summed the same way whatever its tile: runs of
:data:`FEATURE_BLOCK` features in the data's precision, added up in float64.
"""

import platform

import llvmlite.binding as ll
import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: Candidates per vector.
LANES = 8

#: Features summed in the data's precision before the sum is added up in float64:
#: short sums keep the rounding below that of a vectorised dot product.
FEATURE_BLOCK = 8

#: Rows per tile of :func:`dots_tile` (eight accumulators keep two FMA pipes busy).
TILE_ROWS = 8

# the tile this many tiles ahead is prefetched while one is computed: rows are read a
# feature at a time across the tile, which the hardware prefetcher does not follow
_PREFETCH_TILES = 2

_i32 = ir.IntType(32)
_i64 = ir.IntType(64)


def _target_features():
    """The features the kernels are compiled for, as Numba takes them: those of
    ``NUMBA_CPU_FEATURES``, else the host's (every ``avx*`` one off under
    ``NUMBA_ENABLE_AVX=0``), whatever ``NUMBA_CPU_NAME`` names (e.g.
    ``+avx2,+fma,...``; empty: the named CPU's own); None for a generic x86-64
    (``NUMBA_CPU_NAME=generic``, for portable caches) or where they are unknown."""
    if numba.config.CPU_NAME in ("generic", "x86-64"):
        return None
    if numba.config.CPU_FEATURES is not None:
        return numba.config.CPU_FEATURES
    try:
        features = ll.get_host_cpu_features()
    except RuntimeError:  # features unknown on this host
        return None
    if not numba.config.ENABLE_AVX:  # as Numba's codegen takes the host's features
        for name in features:
            if name.startswith("avx"):
                features[name] = False
    return features.flatten()


def _lanes_pay():
    """Whether the kernels are compiled for an x86-64 CPU with AVX2 and FMA: there the
    lanes beat a row against four candidates (measured with AVX-512 and with AVX2 code);
    compiled for a generic x86-64 they were 1.5 times slower, and other architectures
    are not measured."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    features = _target_features()
    return features is not None and (not features or ("+avx2" in features and "+fma" in features))


#: Whether :func:`dots_tile` is used (see :func:`_lanes_pay`).
LANES_PAY = _lanes_pay()


def _has_vnni():
    """Whether the kernels are compiled for 8-bit dot products in one instruction
    (``vpdpbusd`` on 256-bit vectors: AVX-512 VNNI with VL, or AVX-VNNI); False where
    the features are a named CPU's own or unknown."""
    features = set((_target_features() or "").split(","))
    return _lanes_pay() and ({"+avx512vnni", "+avx512vl"} <= features or "+avxvnni" in features)


#: Whether the seeding's screen takes its 8-bit products with ``vpdpbusd``.
VNNI = _has_vnni()


def _screen_features():
    """Features from which the seeding's 8-bit screen beats its full pass: with
    ``vpdpbusd`` (:data:`VNNI`) from any width the screen is used at (a Rocket Lake
    Xeon: 0.87 of the full pass's time at 32 features, 0.78-0.95 at 64, 0.65 at 128);
    on a CPU with AVX-512 but AVX2's integer products, the full pass's float products
    are wide enough that the screen paid only from about 128 features (the same Xeon:
    1.13 times slower at 32, 0.92 to 1.33 at 64, 0.77 at 128); with AVX2 alone from 32
    (an AMD EPYC, Zen 3: 0.82)."""
    return 128 if "+avx512f" in (_target_features() or "") and not _has_vnni() else 0


#: Rows narrower than this are seeded without the screen (see :func:`_screen_features`).
SCREEN_FEATURES = _screen_features()


def _data(context, builder, arrty, arr):
    """Data pointer and row stride (in items) of a C-contiguous 2-D array."""
    ary = context.make_array(arrty)(context, builder, arr)
    stride = cgutils.unpack_tuple(builder, ary.strides, 2)[0]
    itemsize = context.get_abi_sizeof(context.get_data_type(arrty.dtype))
    return ary.data, builder.sdiv(stride, ir.Constant(_i64, itemsize))


def _vector_intrinsic(builder, name, vty, n_args):
    suffix = "v%df%d" % (vty.count, 32 if isinstance(vty.element, ir.FloatType) else 64)
    fnty = ir.FunctionType(vty, [vty] * n_args)
    return cgutils.get_or_insert_function(builder.module, fnty, "llvm.%s.%s" % (name, suffix))


def _splat(builder, value, vty):
    undef = ir.Constant(vty, ir.Undefined)
    one = builder.insert_element(undef, value, ir.Constant(_i32, 0))
    return builder.shuffle_vector(one, undef, ir.Constant(ir.VectorType(_i32, vty.count), [0] * vty.count))


def _vector_at(builder, base, offset, vty):
    return builder.bitcast(builder.gep(base, [offset]), vty.as_pointer())


def _dots(n_rows):
    """Intrinsic ``f(X, row, Yt, col, G, g_row)``:
    ``G[g_row + r, col:col + LANES] = X[row + r] @ Yt[:, col:col + LANES]`` for
    ``r < n_rows``; ``X``, ``Yt`` (of ``X``'s dtype) and ``G`` (float64) C-contiguous.
    No bounds are checked."""

    @intrinsic
    def dots(typingctx, X, row, Yt, col, G, g_row):
        arrays = (X, Yt, G)
        if (
            not all(isinstance(a, types.Array) and a.ndim == 2 and a.layout == "C" for a in arrays)
            or Yt.dtype != X.dtype
            or G.dtype != types.float64
        ):
            return None
        if not all(isinstance(v, types.Integer) for v in (row, col, g_row)):
            return None

        def codegen(context, builder, signature, args):
            x_arr, row_v, yt_arr, col_v, g_arr, g_row_v = args
            row_v, col_v, g_row_v = (
                context.cast(builder, v, signature.args[j], types.int64)
                for v, j in ((row_v, 1), (col_v, 3), (g_row_v, 5))
            )
            xp, xs = _data(context, builder, X, x_arr)
            yp, ys = _data(context, builder, Yt, yt_arr)
            gp, gs = _data(context, builder, G, g_arr)
            xty = context.get_data_type(X.dtype)
            vty = ir.VectorType(xty, LANES)
            dty = ir.VectorType(ir.DoubleType(), LANES)
            fmuladd = _vector_intrinsic(builder, "fmuladd", vty, 3)
            i8p = ir.IntType(8).as_pointer()
            prefetch = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, _i32, _i32, _i32]), "llvm.prefetch.p0i8"
            )
            d = builder.extract_value(context.make_array(X)(context, builder, x_arr).shape, 1)
            first = builder.gep(xp, [builder.mul(row_v, xs)])
            ahead = builder.bitcast(
                builder.gep(first, [builder.mul(xs, ir.Constant(_i64, n_rows * _PREFETCH_TILES))]), i8p
            )
            # one slice of the tile ahead per feature: the whole tile over d features
            slice_bytes = ir.Constant(_i64, n_rows * context.get_abi_sizeof(xty))
            totals = [cgutils.alloca_once_value(builder, ir.Constant(dty, None)) for _ in range(n_rows)]
            accs = [cgutils.alloca_once(builder, vty) for _ in range(n_rows)]

            def feature(f):
                builder.call(
                    prefetch,
                    [
                        builder.gep(ahead, [builder.mul(f, slice_bytes)]),
                        ir.Constant(_i32, 0),
                        ir.Constant(_i32, 3),
                        ir.Constant(_i32, 1),
                    ],
                )
                y = builder.load(_vector_at(builder, yp, builder.add(builder.mul(f, ys), col_v), vty), align=1)
                for r in range(n_rows):
                    x = builder.load(builder.gep(first, [builder.add(builder.mul(ir.Constant(_i64, r), xs), f)]))
                    builder.store(builder.call(fmuladd, [_splat(builder, x, vty), y, builder.load(accs[r])]), accs[r])

            def add_up():
                for acc, total in zip(accs, totals):
                    part = builder.load(acc)
                    if vty != dty:
                        part = builder.fpext(part, dty)
                    builder.store(builder.fadd(builder.load(total), part), total)
                    builder.store(ir.Constant(vty, None), acc)

            for acc in accs:
                builder.store(ir.Constant(vty, None), acc)
            block = ir.Constant(_i64, FEATURE_BLOCK)
            n_full = builder.sdiv(d, block)
            with cgutils.for_range(builder, n_full) as loop:  # whole runs, unrolled
                start = builder.mul(loop.index, block)
                for j in range(FEATURE_BLOCK):
                    feature(builder.add(start, ir.Constant(_i64, j)))
                add_up()
            with cgutils.for_range_slice(builder, builder.mul(n_full, block), d, ir.Constant(_i64, 1), intp=_i64) as (
                f,
                _,
            ):
                feature(f)
            add_up()
            for r in range(n_rows):
                offset = builder.add(builder.mul(builder.add(g_row_v, ir.Constant(_i64, r)), gs), col_v)
                builder.store(builder.load(totals[r]), _vector_at(builder, gp, offset, dty), align=1)
            return context.get_dummy_value()

        return types.void(X, row, Yt, col, G, g_row), codegen

    return dots


#: A tile of :data:`TILE_ROWS` rows, and a single row (:func:`_dots`).
dots_tile = _dots(TILE_ROWS)
dots_row = _dots(1)


@intrinsic
def potentials_block(typingctx, G, col, rows, x_sq, closest, w, start, y_sq, n_valid, acc, moved):
    """The trial potentials of a block of rows, from their dot products ``G`` with the
    candidates ``col:col + LANES``: for ``i < rows``, in order,
    ``d2 = max(x_sq[start + i] + y_sq[col:] - 2 G[i, col:], 0)``,
    ``acc[col:] += w[start + i] * min(d2, closest[start + i])``, and ``moved[i]`` is set
    where ``d2 < closest[start + i]`` for one of the first ``n_valid`` lanes. The same
    operations, in the same order, as that loop on scalars (no contraction). ``G``,
    ``x_sq``, ``closest``, ``w``, ``y_sq`` and ``acc`` are float64, ``moved`` bool, all
    C-contiguous. No bounds are checked."""
    floats = (G, x_sq, closest, w, y_sq, acc)
    if not all(
        isinstance(a, types.Array) and a.ndim == (2 if a is G else 1) and a.layout == "C" and a.dtype == types.float64
        for a in floats
    ):
        return None
    if not (
        isinstance(moved, types.Array) and moved.ndim == 1 and moved.dtype == types.boolean and moved.layout == "C"
    ):
        return None
    if not all(isinstance(v, types.Integer) for v in (col, rows, start, n_valid)):
        return None
    sig = types.void(G, col, rows, x_sq, closest, w, start, y_sq, n_valid, acc, moved)

    def codegen(context, builder, signature, args):
        g_arr, col_v, rows_v, xsq_arr, cl_arr, w_arr, start_v, ysq_arr, valid_v, acc_arr, moved_arr = args
        col_v, rows_v, start_v, valid_v = (
            context.cast(builder, v, signature.args[j], types.int64)
            for v, j in ((col_v, 1), (rows_v, 2), (start_v, 6), (valid_v, 8))
        )
        gp, gs = _data(context, builder, signature.args[0], g_arr)
        ptrs = [
            context.make_array(signature.args[j])(context, builder, a).data
            for j, a in ((3, xsq_arr), (4, cl_arr), (5, w_arr), (7, ysq_arr), (9, acc_arr), (10, moved_arr))
        ]
        xsq_p, cl_p, w_p, ysq_p, acc_p, moved_p = ptrs
        dty = ir.VectorType(ir.DoubleType(), LANES)
        y_sq = builder.load(_vector_at(builder, ysq_p, col_v, dty), align=1)
        lanes = ir.Constant(ir.VectorType(_i64, LANES), list(range(LANES)))
        valid = builder.icmp_signed(
            "<", lanes, _splat(builder, builder.sub(valid_v, col_v), ir.VectorType(_i64, LANES))
        )
        two = ir.Constant(dty, [2.0] * LANES)
        zero = ir.Constant(dty, [0.0] * LANES)
        acc = cgutils.alloca_once_value(builder, builder.load(_vector_at(builder, acc_p, col_v, dty), align=1))
        with cgutils.for_range(builder, rows_v) as loop:
            i = loop.index
            g = builder.load(_vector_at(builder, gp, builder.add(builder.mul(i, gs), col_v), dty), align=1)
            row = builder.add(start_v, i)
            xi = _splat(builder, builder.load(builder.gep(xsq_p, [row])), dty)
            ci = _splat(builder, builder.load(builder.gep(cl_p, [row])), dty)
            wi = _splat(builder, builder.load(builder.gep(w_p, [row])), dty)
            diff = builder.fsub(builder.fadd(xi, y_sq), builder.fmul(two, g))
            d2 = builder.select(builder.fcmp_ordered(">", diff, zero), diff, zero)
            nearer = builder.fcmp_ordered("<", d2, ci)
            builder.store(builder.fadd(builder.load(acc), builder.fmul(wi, builder.select(nearer, d2, ci))), acc)
            any_moved = builder.icmp_unsigned(
                "!=", builder.bitcast(builder.and_(nearer, valid), ir.IntType(LANES)), ir.Constant(ir.IntType(LANES), 0)
            )
            flag = builder.gep(moved_p, [i])
            builder.store(builder.or_(builder.load(flag), builder.zext(any_moved, ir.IntType(8))), flag)
        builder.store(builder.load(acc), _vector_at(builder, acc_p, col_v, dty), align=1)
        return context.get_dummy_value()

    return sig, codegen
