"""Per-cluster selection: from each cluster, whole copies of its members and then those
with the smallest scores."""

from ._common import cuda


@cuda.jit
def pick_members(offsets, order, labels, scores, n_take, out_off, out):
    """What the CPU's ``pick_members`` gives, one thread per member: cluster ``c`` (of
    ``m`` members, positions ``offsets[c] : offsets[c + 1]`` of ``order``) fills
    ``out[out_off[c] : out_off[c + 1]]`` with ``n_take[c] // m`` copies of its members
    in order, then the ``n_take[c] % m`` members of smallest ``scores`` (ties: lower
    position first), smallest first. A member finds its place by counting the members
    that come before it, so no sort is needed: the cost is ``m`` per member, small for
    the clusters resampling draws from."""
    for p in range(cuda.grid(1), order.shape[0], cuda.gridsize(1)):
        i = order[p]
        c = labels[i]
        a, e = offsets[c], offsets[c + 1]
        m = e - a
        need = n_take[c]
        copies = need // m
        base = out_off[c]
        for r in range(copies):
            out[base + r * m + p - a] = i
        rest = need - copies * m
        if rest == 0:
            continue
        s = scores[i]
        rank = 0
        for p2 in range(a, e):
            s2 = scores[order[p2]]
            if s2 < s or (s2 == s and p2 < p):
                rank += 1
        if rank < rest:
            out[base + copies * m + rank] = i
