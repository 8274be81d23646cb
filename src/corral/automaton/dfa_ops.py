"""DFA algebra.

Two layers:

* a generic engine on *class tables*: ``trans`` int32 ``[n, k]`` (``-1`` dead)
  over ``k`` symbol classes, ``accepting`` bool ``[n]``, start state 0. It
  provides lazy products (only reachable pairs), an epsilon-NFA builder with
  subset construction (vectorised over classes), trimming, Hopcroft
  minimisation and canonical BFS numbering. The char-level ``CharDFA`` (atoms
  = code-point intervals) and the byte-level operations share it.
* byte-level operations on :class:`ByteDFA`: ``union``, ``intersection``,
  ``difference``, ``concat``, ``star``, ``plus``, ``repeat``, ``optional``.
  They work on byte equivalence classes (bytes no operand distinguishes share
  one column), so the Python loops run over classes, not 256 bytes.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.typed import Dict

from ..errors import CompileLimitError
from .dfa import DEAD, ByteDFA, _make

DEFAULT_MAX_STATES = 100_000

Table = tuple  # (trans int32 [n, k], accepting bool [n])


def _limit(n: int, max_states: int | None, what: str = "automaton") -> None:
    if max_states is not None and n > max_states:
        raise CompileLimitError(f"{what} exceeds max_states={max_states} ({n} states)")


def empty_table(k: int) -> Table:
    return np.zeros((0, k), dtype=np.int32), np.zeros(0, dtype=bool)


# ---------------------------------------------------------------------------
# trim / minimise / canonical


def trim(trans: np.ndarray, acc: np.ndarray, start: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Keep states reachable from ``start`` and co-reachable to acceptance."""
    n, k = trans.shape
    if n == 0 or start < 0:
        return np.zeros((0, k), dtype=np.int32), np.zeros(0, dtype=bool), -1
    rows = trans.tolist()
    seen = bytearray(n)
    seen[start] = 1
    stack = [start]
    while stack:
        q = stack.pop()
        for r in set(rows[q]):
            if r >= 0 and not seen[r]:
                seen[r] = 1
                stack.append(r)
    # reverse edges (CSR)
    src = np.repeat(np.arange(n, dtype=np.int64), k)
    dst = trans.reshape(-1).astype(np.int64)
    ok = dst >= 0
    src, dst = src[ok], dst[ok]
    order = np.argsort(dst, kind="stable")
    src_sorted = src[order].tolist()
    starts = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=n))]).tolist()
    live = bytearray(n)
    stack = [int(q) for q in np.flatnonzero(acc) if seen[q]]
    for q in stack:
        live[q] = 1
    while stack:
        q = stack.pop()
        for p in src_sorted[starts[q]:starts[q + 1]]:
            if not live[p] and seen[p]:
                live[p] = 1
                stack.append(p)
    if not live[start]:
        return np.zeros((0, k), dtype=np.int32), np.zeros(0, dtype=bool), -1
    keep_mask = np.frombuffer(bytes(live), dtype=np.uint8).astype(bool)
    if keep_mask.all():
        return trans, acc, start
    keep = np.flatnonzero(keep_mask)
    remap = np.full(n + 1, DEAD, dtype=np.int32)
    remap[keep] = np.arange(len(keep), dtype=np.int32)
    t = trans[keep]
    t = remap[np.where(t >= 0, t, n)]
    return t.astype(np.int32), acc[keep], int(remap[start])


def _hopcroft(trans: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Block id per state of a trimmed DFA (dead transitions allowed)."""
    n, k = trans.shape
    full = np.full((n + 1, k), n, dtype=np.int32)  # an explicit sink, state n
    full[:n] = np.where(trans >= 0, trans, n)
    return _hopcroft_kernel(full, np.append(np.asarray(acc, dtype=np.bool_), False))[:n]


@njit(cache=True, nogil=True)
def _hopcroft_kernel(full, acc):
    """Hopcroft's partition refinement on a complete DFA, in arrays.

    Blocks are ranges of ``elems``; splitting a block moves the states that have a
    transition into the splitter to the front of their block's range.
    """
    N, k = full.shape
    # predecessors per (class, target), CSR
    offs = np.zeros((k, N + 1), dtype=np.int64)
    for q in range(N):
        for c in range(k):
            offs[c, full[q, c] + 1] += 1
    for c in range(k):
        for t in range(N):
            offs[c, t + 1] += offs[c, t]
    preds = np.empty((k, N), dtype=np.int32)
    fill = offs[:, :N].copy()
    for q in range(N):
        for c in range(k):
            t = full[q, c]
            preds[c, fill[c, t]] = q
            fill[c, t] += 1
    elems = np.empty(N, dtype=np.int32)
    pos = np.empty(N, dtype=np.int32)
    block_of = np.empty(N, dtype=np.int32)
    bstart = np.empty(N + 1, dtype=np.int32)
    bend = np.empty(N + 1, dtype=np.int32)
    n_acc = 0
    for q in range(N):
        if acc[q]:
            n_acc += 1
    ia, ir = 0, n_acc
    for q in range(N):
        if acc[q]:
            elems[ia] = q
            pos[q] = ia
            ia += 1
        else:
            elems[ir] = q
            pos[q] = ir
            ir += 1
    nb = 0
    if n_acc > 0:
        bstart[nb] = 0
        bend[nb] = n_acc
        nb += 1
    if n_acc < N:
        bstart[nb] = n_acc
        bend[nb] = N
        nb += 1
    for b in range(nb):
        for p in range(bstart[b], bend[b]):
            block_of[elems[p]] = b
    work_b = np.empty(4 * k + 64, dtype=np.int32)  # (block, class) splitters to process; grows
    work_c = np.empty(4 * k + 64, dtype=np.int32)
    sp = 0
    first = 0
    if nb == 2 and bend[1] - bstart[1] < bend[0] - bstart[0]:
        first = 1
    for c in range(k):
        work_b[sp] = first
        work_c[sp] = c
        sp += 1
    marked = np.zeros(N + 1, dtype=np.int32)
    touched = np.empty(N + 1, dtype=np.int32)
    splitter = np.empty(N, dtype=np.int32)
    while sp > 0:
        sp -= 1
        B = work_b[sp]
        c = work_c[sp]
        m = 0
        for p in range(bstart[B], bend[B]):
            splitter[m] = elems[p]
            m += 1
        nt = 0
        for i in range(m):
            t = splitter[i]
            for j in range(offs[c, t], offs[c, t + 1]):
                s = preds[c, j]
                Y = block_of[s]
                front = bstart[Y] + marked[Y]
                if pos[s] < front:
                    continue
                if marked[Y] == 0:
                    touched[nt] = Y
                    nt += 1
                other = elems[front]
                ps = pos[s]
                elems[front] = s
                pos[s] = front
                elems[ps] = other
                pos[other] = ps
                marked[Y] += 1
        for i in range(nt):
            Y = touched[i]
            mk = marked[Y]
            marked[Y] = 0
            size = bend[Y] - bstart[Y]
            if mk == size:
                continue
            new = nb
            nb += 1
            if mk <= size - mk:
                bstart[new] = bstart[Y]
                bend[new] = bstart[Y] + mk
                bstart[Y] = bstart[Y] + mk
            else:
                bstart[new] = bstart[Y] + mk
                bend[new] = bend[Y]
                bend[Y] = bstart[Y] + mk
            for p in range(bstart[new], bend[new]):
                block_of[elems[p]] = new
            if sp + k > work_b.shape[0]:
                grown_b = np.empty(2 * work_b.shape[0] + k, dtype=np.int32)
                grown_c = np.empty(2 * work_b.shape[0] + k, dtype=np.int32)
                grown_b[:sp] = work_b[:sp]
                grown_c[:sp] = work_c[:sp]
                work_b, work_c = grown_b, grown_c
            for cc in range(k):
                work_b[sp] = new
                work_c[sp] = cc
                sp += 1
    return block_of


def minimize(trans: np.ndarray, acc: np.ndarray, start: int = 0, *, assume_trim: bool = False) -> Table:
    """Trim, minimise and renumber canonically (BFS over columns in order). Start becomes 0."""
    trans = np.asarray(trans, dtype=np.int32)
    acc = np.asarray(acc, dtype=bool)
    if not assume_trim:
        trans, acc, start = trim(trans, acc, start)
    n, k = trans.shape
    if n == 0:
        return empty_table(k)
    block = _hopcroft(trans, acc).astype(np.int64)
    nb = int(block.max()) + 1
    rep = np.zeros(nb, dtype=np.int64)
    rep[block] = np.arange(n)
    t = trans[rep]
    t = np.where(t >= 0, block[np.where(t >= 0, t, 0)], DEAD).astype(np.int32)
    return canonical(t, acc[rep], int(block[start]))


def canonical(trans: np.ndarray, acc: np.ndarray, start: int) -> Table:
    """Renumber reachable states in BFS order from ``start`` (columns in order)."""
    n, k = trans.shape
    if k > 4 and n > 0:
        # per row, the distinct targets in order of first column (vectorised)
        if k <= 48:
            mark = trans >= 0
            for j in range(1, k):
                mark[:, j] &= (trans[:, :j] != trans[:, j:j + 1]).all(axis=1)
        else:
            srt = np.argsort(trans, axis=1, kind="stable")
            vals = np.take_along_axis(trans, srt, axis=1)
            first = np.ones_like(vals, dtype=bool)
            first[:, 1:] = vals[:, 1:] != vals[:, :-1]
            first &= vals >= 0
            mark = np.zeros_like(first)
            np.put_along_axis(mark, srt, first, axis=1)
        ri, ci = np.nonzero(mark)
        tg = trans[ri, ci].tolist()
        cuts = np.searchsorted(ri, np.arange(n + 1)).tolist()
        rows = [tg[cuts[q]:cuts[q + 1]] for q in range(n)]
    else:
        rows = trans.tolist()
    index = {start: 0}
    order = [start]
    i = 0
    while i < len(order):
        for r in rows[order[i]]:
            if r >= 0 and r not in index:
                index[r] = len(order)
                order.append(r)
        i += 1
    remap = np.full(n + 1, DEAD, dtype=np.int32)
    for q, j in index.items():
        remap[q] = j
    t = trans[order]
    t = remap[np.where(t >= 0, t, n)].astype(np.int32)
    return np.ascontiguousarray(t), acc[order].copy()


# ---------------------------------------------------------------------------
# products


def product(ta: Table, tb: Table, op: str, max_states: int | None = DEFAULT_MAX_STATES) -> Table:
    """Lazy product of two tables over the same classes; op in {'and', 'or', 'diff', 'xor'}."""
    Ta, Aa = ta
    Tb, Ab = tb
    k = Ta.shape[1] if Ta.shape[0] else Tb.shape[1]
    na, nb = Ta.shape[0], Tb.shape[0]
    # pad a dead row at index -1 (row na / nb) so that dead components keep going
    Ta2 = np.vstack([Ta, np.full((1, k), DEAD, dtype=np.int32)])
    Tb2 = np.vstack([Tb, np.full((1, k), DEAD, dtype=np.int32)])
    Aa2 = np.append(Aa, False)
    Ab2 = np.append(Ab, False)
    sa = 0 if na else -1
    sb = 0 if nb else -1
    if op == "and" and (sa < 0 or sb < 0):
        return empty_table(k)
    if op == "diff" and sa < 0:
        return empty_table(k)
    if op in ("or", "xor") and sa < 0 and sb < 0:
        return empty_table(k)
    start_code = (sa if sa >= 0 else na) * (nb + 1) + (sb if sb >= 0 else nb)
    limit = -1 if max_states is None else max_states
    rows, codes = _product_kernel(Ta2, Tb2, na, nb, _PRODUCT_OPS[op], start_code, limit)
    _limit(codes.shape[0], max_states, "product automaton")
    P, Q = codes // (nb + 1), codes % (nb + 1)
    fa, fb = Aa2[P], Ab2[Q]
    if op == "and":
        acc = fa & fb
    elif op == "or":
        acc = fa | fb
    elif op == "diff":
        acc = fa & ~fb
    else:
        acc = fa ^ fb
    return rows, acc


_PRODUCT_OPS = {"and": 0, "diff": 1, "or": 2, "xor": 3}


@njit(cache=True, nogil=True)
def _product_kernel(Ta2, Tb2, na, nb, op, start_code, limit):
    """Reachable pairs of a product, breadth first: (rows [m, k], pair codes [m]).

    A pair (p, q) is coded p * (nb + 1) + q, with na / nb the dead row of each side.
    Stops early (returning as many codes as states so far, limit + 1) past ``limit`` states.
    """
    k = Ta2.shape[1]
    nb1 = nb + 1
    index = Dict.empty(key_type=types.int64, value_type=types.int32)
    rows = np.empty((64, k), dtype=np.int32)
    pairs = np.empty(64, dtype=np.int64)
    pairs[0] = start_code
    index[start_code] = np.int32(0)
    n = 1
    i = 0
    while i < n:
        p = pairs[i] // nb1
        q = pairs[i] % nb1
        if i >= rows.shape[0]:
            grown = np.empty((2 * rows.shape[0], k), dtype=np.int32)
            grown[: rows.shape[0]] = rows
            rows = grown
        for c in range(k):
            a = Ta2[p, c]
            b = Tb2[q, c]
            if op == 0:
                ok = a >= 0 and b >= 0
            elif op == 1:
                ok = a >= 0
            else:
                ok = a >= 0 or b >= 0
            if not ok:
                rows[i, c] = -1
                continue
            code = (a if a >= 0 else na) * nb1 + (b if b >= 0 else nb)
            sid = index.get(code, np.int32(-1))
            if sid < 0:
                sid = np.int32(n)
                index[code] = sid
                if n >= pairs.shape[0]:
                    grown_p = np.empty(2 * pairs.shape[0], dtype=np.int64)
                    grown_p[:n] = pairs[:n]
                    pairs = grown_p
                pairs[n] = code
                n += 1
                if limit >= 0 and n > limit:
                    return rows[:0], pairs[:n]
            rows[i, c] = sid
        i += 1
    return rows[:n], pairs[:n]


def complete_complement(t: Table, valid_cols: np.ndarray) -> Table:
    """Complement w.r.t. all strings over the ``valid_cols`` classes (others stay dead)."""
    T, A = t
    n, k = T.shape
    sink = n
    full = np.where(T >= 0, T, sink).astype(np.int32)
    full = np.vstack([full, np.full((1, k), sink, dtype=np.int32)]) if n else np.full((1, k), 0, dtype=np.int32)
    if n == 0:
        acc = np.array([True])
        full[:, ~valid_cols] = DEAD
        return full, acc
    full[:, ~valid_cols] = DEAD
    acc = ~np.append(A, False)
    return full, acc


# ---------------------------------------------------------------------------
# epsilon-NFA and subset construction


class Nfa:
    """Epsilon-NFA over ``k`` classes; edges carry a class mask (bool [k])."""

    def __init__(self, k: int, max_states: int | None = None):
        self.k = k
        self.eps: list[list[int]] = []
        self.edges: list[list[tuple[int, int]]] = []
        self.masks: list[np.ndarray] = []
        self._mask_ids: dict[bytes, int] = {}
        self.max_states = max_states
        # zero-width assertions: state -> [(True for start-of-input / False for end-of-input, target)]
        self.anchors: dict[int, list[tuple[bool, int]]] = {}

    def state(self) -> int:
        self.eps.append([])
        self.edges.append([])
        if self.max_states is not None and len(self.eps) > self.max_states:
            raise CompileLimitError(f"NFA exceeds {self.max_states} states")
        return len(self.eps) - 1

    def mask_id(self, mask: np.ndarray) -> int:
        key = np.packbits(mask).tobytes()
        mid = self._mask_ids.get(key)
        if mid is None:
            mid = len(self.masks)
            self.masks.append(np.asarray(mask, dtype=bool))
            self._mask_ids[key] = mid
        return mid

    def add_eps(self, a: int, b: int) -> None:
        self.eps[a].append(b)

    def add_edge(self, a: int, mid: int, b: int) -> None:
        self.edges[a].append((mid, b))

    def add_anchor(self, a: int, at_start: bool, b: int) -> None:
        """An epsilon from ``a`` to ``b`` taken only at the start (or only at the end) of the input."""
        self.anchors.setdefault(a, []).append((at_start, b))

    def embed(self, t: Table) -> tuple[int, int]:
        """Copy a DFA table in; returns (entry, exit) states (exit reached by eps from accepting)."""
        T, A = t
        entry = self.state()
        exit_ = self.state()
        n = T.shape[0]
        if n == 0:
            return entry, exit_
        ids = [self.state() for _ in range(n)]
        self.add_eps(entry, ids[0])
        for q in range(n):
            row = T[q]
            if A[q]:
                self.add_eps(ids[q], exit_)
            targets = np.unique(row[row >= 0])
            for t_ in targets.tolist():
                self.add_edge(ids[q], self.mask_id(row == t_), ids[t_])
        return entry, exit_

    def determinize(self, start: int, final: int, max_states: int | None = DEFAULT_MAX_STATES) -> Table:
        k = self.k
        eps = self.eps
        closure_memo: dict[int, frozenset] = {}

        def closure1(s: int) -> frozenset:
            c = closure_memo.get(s)
            if c is None:
                seen = {s}
                stack = [s]
                while stack:
                    x = stack.pop()
                    for y in eps[x]:
                        if y not in seen:
                            seen.add(y)
                            stack.append(y)
                c = frozenset(seen)
                closure_memo[s] = c
            return c

        anchors = self.anchors

        def closure(states, at_start: bool = False, at_end: bool = False) -> frozenset:
            it = iter(states)
            first = closure1(next(it))
            rest = [closure1(s) for s in it]
            out = first.union(*rest) if rest else first
            if anchors:  # follow the assertions that hold here, to a fixpoint
                grown = set(out)
                stack = list(out)
                while stack:
                    for at_s, t in anchors.get(stack.pop(), ()):
                        if (at_start if at_s else at_end) and t not in grown:
                            new = closure1(t) - grown
                            grown |= new
                            stack.extend(new)
                out = frozenset(grown)
            return out

        masks = np.vstack(self.masks) if self.masks else np.zeros((0, k), dtype=bool)
        start_set = closure([start], at_start=True)
        # with anchors, the first state (where start-of-input holds) differs from any later
        # state with the same NFA states, so it gets a key of its own
        index = {("start", start_set) if anchors else start_set: 0}
        sets = [start_set]
        rows = []
        edges = self.edges
        i = 0
        while i < len(sets):
            D = sets[i]
            i += 1
            row = np.full(k, DEAD, dtype=np.int32)
            out: dict[int, list[int]] = {}
            for s in D:
                for mid, dst in edges[s]:
                    lst = out.get(mid)
                    if lst is None:
                        out[mid] = [dst]
                    else:
                        lst.append(dst)
            if out:
                mids = list(out)
                if len(mids) == 1:
                    m = masks[mids[0]]
                    tgt = closure(out[mids[0]])
                    sid = index.get(tgt)
                    if sid is None:
                        sid = len(sets)
                        index[tgt] = sid
                        sets.append(tgt)
                    row[m] = sid
                else:
                    M = masks[mids]  # [e, k]
                    packed = np.packbits(M, axis=0).T  # [k, bytes]
                    packed = np.ascontiguousarray(packed)
                    keys = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
                    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
                    inv = inv.reshape(-1)
                    ids = np.full(len(uniq), DEAD, dtype=np.int32)
                    for j, col in enumerate(first.tolist()):
                        active = np.flatnonzero(M[:, col])
                        if len(active) == 0:
                            continue
                        dsts = [d for a in active.tolist() for d in out[mids[a]]]
                        tgt = closure(dsts)
                        sid = index.get(tgt)
                        if sid is None:
                            sid = len(sets)
                            index[tgt] = sid
                            sets.append(tgt)
                        ids[j] = sid
                    row = ids[inv]
            rows.append(row)
            _limit(len(sets), max_states, "DFA")
        if anchors:  # accepting: the final state is reachable once end-of-input holds
            acc = np.array([final in closure(D, at_start=(i == 0), at_end=True) for i, D in enumerate(sets)], dtype=bool)
        else:
            acc = np.array([final in D for D in sets], dtype=bool)
        return np.vstack(rows).astype(np.int32), acc


def nfa_concat(nfa: Nfa, parts: list[tuple[int, int]]) -> tuple[int, int]:
    """Chain fragments (entry, exit) with epsilons."""
    if not parts:
        s = nfa.state()
        return s, s
    for (a, b), (c, d) in zip(parts, parts[1:]):
        nfa.add_eps(b, c)
    return parts[0][0], parts[-1][1]


def nfa_repeat(nfa: Nfa, make, lo: int, hi: int | None) -> tuple[int, int]:
    """``make()`` returns a fresh fragment; build ``lo`` to ``hi`` (None = unbounded) copies."""
    entry = nfa.state()
    cur = entry
    for _ in range(lo):
        a, b = make()
        nfa.add_eps(cur, a)
        cur = b
    if hi is None:
        a, b = make()
        loop = nfa.state()
        nfa.add_eps(cur, loop)
        nfa.add_eps(loop, a)
        nfa.add_eps(b, loop)
        return entry, loop
    exit_ = nfa.state()
    nfa.add_eps(cur, exit_)
    for _ in range(hi - lo):
        a, b = make()
        nfa.add_eps(cur, a)
        nfa.add_eps(b, exit_)
        cur = b
    return entry, exit_


# ---------------------------------------------------------------------------
# generic table operations (used by CharDFA and the byte operations)


def t_concat(tables: list[Table], k: int, max_states: int | None = DEFAULT_MAX_STATES) -> Table:
    if any(t[0].shape[0] == 0 for t in tables):
        return empty_table(k)
    cur = tables[0]
    for t in tables[1:]:
        glued = _glue(cur, t)
        if glued is None:
            nfa = Nfa(k)
            a, b = nfa_concat(nfa, [nfa.embed(cur), nfa.embed(t)])
            glued = nfa.determinize(a, b, max_states)
        _limit(glued[0].shape[0], max_states, "concatenation")
        cur = glued
    return minimize(*cur)


def _glue(ta: Table, tb: Table) -> Table | None:
    """``A B`` as a DFA without subset construction, when no accepting state of A reads a first
    symbol of B (then every split of a string is forced). None when they overlap.

    This is the common case in practice (a quote then string content, a key then ``:``).
    """
    Ta, Aa = ta
    Tb, Ab = tb
    first_b = Tb[0] >= 0
    if ((Ta[Aa] >= 0) & first_b).any():
        return None
    na = Ta.shape[0]
    T = np.vstack([Ta, np.where(Tb >= 0, Tb + na, DEAD)]).astype(np.int32)
    rows = np.flatnonzero(Aa)
    T[np.ix_(rows, np.flatnonzero(first_b))] = Tb[0][first_b] + na
    A = np.concatenate([Aa & bool(Ab[0]), Ab])
    return T, A


def t_repeat(t: Table, lo: int, hi: int | None, k: int, max_states: int | None = DEFAULT_MAX_STATES) -> Table:
    if hi is not None and hi < lo:
        return empty_table(k)
    nfa = Nfa(k)
    a, b = nfa_repeat(nfa, lambda: nfa.embed(t), lo, hi)
    return minimize(*nfa.determinize(a, b, max_states))


def t_union(tables: list[Table], max_states: int | None = DEFAULT_MAX_STATES) -> Table:
    acc = tables[0]
    for t in tables[1:]:
        acc = minimize(*product(acc, t, "or", max_states))
    return minimize(*acc) if len(tables) == 1 else acc


# ---------------------------------------------------------------------------
# byte level


def byte_classes(*dfas: ByteDFA) -> tuple[np.ndarray, np.ndarray]:
    """(class_of_byte int64 [256], representative byte per class), classes ordered by first byte."""
    mats = [d.trans for d in dfas if d.n_states]
    if not mats:
        return np.zeros(256, dtype=np.int64), np.zeros(1, dtype=np.int64)
    cols = np.ascontiguousarray(np.concatenate(mats, axis=0).T)  # [256, N]
    keys = cols.view(np.dtype((np.void, cols.shape[1] * cols.itemsize))).reshape(-1)
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    # relabel by first occurrence
    order = np.argsort(first)
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    cls = relabel[inv]
    reps = first[order]
    return cls.astype(np.int64), reps.astype(np.int64)


def to_table(d: ByteDFA, reps: np.ndarray) -> Table:
    return np.ascontiguousarray(d.trans[:, reps]), d.accepting


def from_table(t: Table, cls: np.ndarray, *, minimal: bool = False, start: int = 0) -> ByteDFA:
    """Expand a class table to a :class:`ByteDFA` (minimising unless ``minimal``)."""
    T, A = t
    if not minimal:
        T, A = minimize(T, A, start)
    if T.shape[0] == 0:
        return ByteDFA.empty()
    full = np.ascontiguousarray(T[:, cls]).astype(np.int32)
    return _make(full, np.asarray(A, dtype=bool).copy())


def _all_bytes_classes():
    return np.arange(256, dtype=np.int64), np.arange(256, dtype=np.int64)


def union(*dfas: ByteDFA, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    dfas = [d for d in dfas if not d.is_empty]
    if not dfas:
        return ByteDFA.empty()
    if len(dfas) == 1:
        return dfas[0]
    cls, reps = byte_classes(*dfas)
    acc = to_table(dfas[0], reps)
    for d in dfas[1:]:
        acc = minimize(*product(acc, to_table(d, reps), "or", max_states))
    return from_table(acc, cls, minimal=True)


def intersection(a: ByteDFA, b: ByteDFA, *, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    if a.is_empty or b.is_empty:
        return ByteDFA.empty()
    cls, reps = byte_classes(a, b)
    return from_table(product(to_table(a, reps), to_table(b, reps), "and", max_states), cls)


def difference(a: ByteDFA, b: ByteDFA, *, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    if a.is_empty or b.is_empty:
        return a
    cls, reps = byte_classes(a, b)
    return from_table(product(to_table(a, reps), to_table(b, reps), "diff", max_states), cls)


def concat(*dfas: ByteDFA, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    if not dfas:
        return ByteDFA.literal(b"")
    if any(d.is_empty for d in dfas):
        return ByteDFA.empty()
    if len(dfas) == 1:
        return dfas[0]
    cls, reps = byte_classes(*dfas)
    return from_table(t_concat([to_table(d, reps) for d in dfas], len(reps), max_states), cls, minimal=True)


def repeat(d: ByteDFA, lo: int, hi: int | None = None, *, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    """``d{lo,hi}``; ``hi=None`` means unbounded."""
    if lo < 0 or (hi is not None and hi < lo):
        raise ValueError(f"bad repeat bounds {lo}, {hi}")
    if d.is_empty:
        return ByteDFA.literal(b"") if lo == 0 else ByteDFA.empty()
    cls, reps = byte_classes(d)
    return from_table(t_repeat(to_table(d, reps), lo, hi, len(reps), max_states), cls, minimal=True)


def star(d: ByteDFA, *, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    return repeat(d, 0, None, max_states=max_states)


def plus(d: ByteDFA, *, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    return repeat(d, 1, None, max_states=max_states)


def optional(d: ByteDFA, *, max_states: int | None = DEFAULT_MAX_STATES) -> ByteDFA:
    return repeat(d, 0, 1, max_states=max_states)


def normalize_fast(trans: np.ndarray, accepting: np.ndarray, start: int = 0) -> ByteDFA:
    """Same result as :meth:`ByteDFA.from_arrays`, computed over byte classes with Hopcroft."""
    trans = np.asarray(trans, dtype=np.int32)
    if trans.shape[0] == 0 or start < 0:
        return ByteDFA.empty()
    cls, reps = _classes_of(trans)
    return from_table((np.ascontiguousarray(trans[:, reps]), np.asarray(accepting, dtype=bool)), cls, start=start)


def _classes_of(trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cols = np.ascontiguousarray(trans.T)
    keys = cols.view(np.dtype((np.void, cols.shape[1] * cols.itemsize))).reshape(-1)
    _, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    relabel = np.empty_like(order)
    relabel[order] = np.arange(len(order))
    return relabel[inv.reshape(-1)], first[order]


def canonical_bytes(trans: np.ndarray, accepting: np.ndarray, start: int = 0) -> ByteDFA:
    """Canonical numbering of an already trimmed and minimal byte DFA (no minimisation)."""
    trans = np.asarray(trans, dtype=np.int32)
    if trans.shape[0] == 0:
        return ByteDFA.empty()
    cls, reps = _classes_of(trans)
    T, A = canonical(np.ascontiguousarray(trans[:, reps]), np.asarray(accepting, dtype=bool), start)
    return _make(np.ascontiguousarray(T[:, cls]).astype(np.int32), A)
