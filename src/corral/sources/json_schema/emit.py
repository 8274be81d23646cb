"""Shapes -> GrammarIR: coarse literal terminals for fixed text, recursion in rules.

Output form: properties in the shape's order (schema order), optional ones may be
skipped, other keys after the listed ones; ``any_order`` lets listed keys come in any
order (each at most once). Whitespace: compact, pretty (json.dumps(indent=n)
layout) or flexible (0..max_whitespace whitespace characters at each place JSON allows
whitespace, next to structural characters).
"""

from __future__ import annotations

import json

from ...automaton import dfa_ops as ops
from ...automaton.dfa import ByteDFA
from ...automaton.ir import IRBuilder
from ...automaton.regex import CharDFA, compile_regex, json_string_dfa
from ...errors import CompileLimitError, UnsupportedSchemaError
from . import numbers as nm
from .shapes import EXP_ALL, NEVER_NODE, ArrShape, ObjShape, Shape
from .strings import DFA_LENGTH_LIMIT, StrLang

BLOCK = 64
MAX_ANY_ORDER = 12
MAX_NEEDS = 4
MAX_COUNT_STATES = 20_000


_CANONICAL_LIMIT = 256  # finite string languages up to this many values are spelled canonically


class Fmt:
    def __init__(self, whitespace: str, indent: int, max_ws: int) -> None:
        if whitespace not in ("compact", "pretty", "flexible"):
            raise ValueError(f"whitespace must be compact, pretty or flexible, not {whitespace!r}")
        self.mode = whitespace
        self.indent = indent
        self.ws = compile_regex(f"[ \\t\\n\\r]{{0,{max_ws}}}") if whitespace == "flexible" else None
        self._cache: dict = {}

    def depth(self, d: int) -> int:
        return d if self.mode == "pretty" else 0

    def _inner_outer(self, d: int) -> tuple[str, str]:
        return "\n" + " " * (self.indent * (d + 1)), "\n" + " " * (self.indent * d)

    def parts(self, kind: str, d: int):
        """(before, after) pieces as ByteDFAs for a structural position."""
        key = (kind, d)
        if key in self._cache:
            return self._cache[key]
        L = ByteDFA.literal
        if self.mode == "compact":
            r = {"key_first": (L(b"{"), L(b":")), "key_next": (L(b","), L(b":")), "obj_close": L(b"}"),
                 "obj_empty": L(b"{}"), "arr_first": L(b"["), "arr_sep": L(b","), "arr_close": L(b"]"),
                 "arr_empty": L(b"[]")}[kind]
        elif self.mode == "pretty":
            inner, outer = (s.encode() for s in self._inner_outer(d))
            r = {"key_first": (L(b"{" + inner), L(b": ")), "key_next": (L(b"," + inner), L(b": ")),
                 "obj_close": L(outer + b"}"), "obj_empty": L(b"{}"), "arr_first": L(b"[" + inner),
                 "arr_sep": L(b"," + inner), "arr_close": L(outer + b"]"), "arr_empty": L(b"[]")}[kind]
        else:
            w = self.ws
            c = ops.concat
            r = {"key_first": (c(L(b"{"), w), c(w, L(b":"), w)),
                 "key_next": (c(w, L(b","), w), c(w, L(b":"), w)),
                 "obj_close": c(w, L(b"}")), "obj_empty": c(L(b"{"), w, L(b"}")),
                 "arr_first": c(L(b"["), w), "arr_sep": c(w, L(b","), w), "arr_close": c(w, L(b"]")),
                 "arr_empty": c(L(b"["), w, L(b"]"))}[kind]
        self._cache[key] = r
        return r


class Emitter:
    def __init__(self, comp, *, whitespace: str = "compact", indent: int = 2, max_whitespace: int = 4,
                 any_order: bool = False, max_depth: int = 32) -> None:
        self.c = comp
        self.b = IRBuilder()
        self.fmt = Fmt(whitespace, indent, max_whitespace)
        self.any_order = any_order
        self.max_depth = max_depth
        self.memo: dict = {}
        self._str_cache: dict = {}
        self._key_cache: dict = {}
        self._lit_cache: dict = {}
        self._pending: list = []

    # ------------------------------------------------------------- terminals
    def term(self, dfa: ByteDFA, name: str | None = None) -> int:
        return self.b.terminal(dfa, name)

    def string_dfa(self, st: StrLang) -> ByteDFA:
        k = st.key()
        d = self._str_cache.get(k)
        if d is None:
            values = st.finite_values(_CANONICAL_LIMIT) if st.dfa is not None else None
            d = canonical_strings(values) if values else json_string_dfa(st.to_dfa())
            self._str_cache[k] = d
        return d

    def key_term(self, kind: str, d: int, key: ByteDFA, label: str) -> int:
        pre, post = self.fmt.parts(kind, d)
        ck = (kind, d, key.key())
        t = self._key_cache.get(ck)
        if t is None:
            t = self.term(ops.concat(pre, key, post), label)
            self._key_cache[ck] = t
        return t

    def lit_key(self, kind: str, d: int, name: str) -> int:
        ck = (kind, d, name)
        t = self._lit_cache.get(ck)
        if t is None:
            js = json.dumps(name, ensure_ascii=False).encode()
            if self.fmt.mode == "flexible":
                # any JSON spelling of the key is fine, but the canonical one is what we emit
                t = self.key_term(kind, d, ByteDFA.literal(js), repr(js.decode()))
            else:
                pre, post = self.fmt.parts(kind, d)
                t = self.term(ops.concat(pre, ByteDFA.literal(js), post), repr(js.decode()))
            self._lit_cache[ck] = t
        return t

    def struct(self, kind: str, d: int) -> int:
        ck = ("s", kind, d)
        t = self._lit_cache.get(ck)
        if t is None:
            t = self.term(self.fmt.parts(kind, d), kind)
            self._lit_cache[ck] = t
        return t

    # ------------------------------------------------------------- values
    def value(self, node: int, depth: int) -> int:
        d = self.fmt.depth(depth)
        key = ("v", node, d)
        nt = self.memo.get(key)
        if nt is not None:
            return nt
        nt = self.b.nonterminal(f"v{node}" + (f"@{d}" if d else ""))
        self.memo[key] = nt
        if node == NEVER_NODE or d > self.max_depth:
            return nt
        sh = self.c.shape(node)
        self._shape_rules(nt, sh, d)
        return nt

    def _shape_rules(self, nt: int, sh: Shape, d: int) -> None:
        b = self.b
        scal = []
        if sh.null:
            scal.append(ByteDFA.literal(b"null"))
        for v in sorted(sh.bools):
            scal.append(ByteDFA.literal(b"true" if v else b"false"))
        if sh.num is not None:
            scal.append(sh.num)
        if sh.exp == EXP_ALL:
            scal.append(nm.EXP_NUMBERS)
        big_str = None
        if sh.str is not None:
            if sh.str.ranges is not None and sh.str.max_bound() > DFA_LENGTH_LIMIT:
                big_str = sh.str
            else:
                scal.append(self.string_dfa(sh.str))
        if scal:
            key = tuple(x.key() for x in scal)
            u = self._lit_cache.get(key)
            if u is None:
                u = self.term(ops.union(*scal), _scalar_name(sh))
                self._lit_cache[key] = u
            b.rule(nt, [u])
        if big_str is not None:
            b.rule(nt, [self.long_string(big_str)])
        for a in sh.arrs:
            b.rule(nt, [self.array(a, d)])
        for o in sh.objs:
            b.rule(nt, [self.object(o, d)])

    def long_string(self, st: StrLang) -> int:
        key = ("long", st.ranges)
        if key in self.memo:
            return self.memo[key]
        b = self.b
        nt = b.nonterminal("long_string")
        self.memo[key] = nt
        q = b.literal(b'"')
        block = self.term(CharDFA.length_range_dfa(BLOCK, BLOCK).to_byte_dfa("json"), f"chars{{{BLOCK}}}")

        def tail(r1, r2):
            return self.term(ops.concat(CharDFA.length_range_dfa(r1, r2).to_byte_dfa("json"),
                                        ByteDFA.literal(b'"')), f'chars{{{r1},{r2}}}"')

        for lo, hi in st.ranges:
            qmin = lo // BLOCK
            qmax = None if hi is None else hi // BLOCK
            # q = qmin: r in [lo - 64 qmin, min(63, hi - 64 qmin)]
            r1 = lo - BLOCK * qmin
            r2 = BLOCK - 1 if qmax is None or qmax > qmin else hi - BLOCK * qmin
            b.rule(nt, [q, b.repeat(block, qmin, qmin), tail(r1, r2)])
            if qmax is None:
                b.rule(nt, [q, b.repeat(block, qmin + 1, None), tail(0, BLOCK - 1)])
            elif qmax > qmin:
                if qmax - 1 >= qmin + 1:
                    b.rule(nt, [q, b.repeat(block, qmin + 1, qmax - 1), tail(0, BLOCK - 1)])
                b.rule(nt, [q, b.repeat(block, qmax, qmax), tail(0, hi - BLOCK * qmax)])
        return nt

    # ------------------------------------------------------------- arrays
    def array(self, a: ArrShape, d: int) -> int:
        key = ("a", a, d)
        if key in self.memo:
            return self.memo[key]
        b = self.b
        nt = b.nonterminal("array")
        self.memo[key] = nt
        if a.unique:
            return self._unique_array(nt, a, d)
        n = len(a.prefix)
        cap = max(n, a.minI) if a.maxI is None else a.maxI
        if cap > MAX_COUNT_STATES:
            raise CompileLimitError(f"array bounds too large ({cap})")
        cons = list(a.contains)
        if len(cons) > 3:
            raise UnsupportedSchemaError("more than three contains constraints on one array", "#", "contains")
        ccaps = [cmax if cmax is not None else cmin for _, cmin, cmax, _ in cons]
        states: dict = {}
        todo = []

        def st(i, counts, first):
            k = (i, counts, first)
            if k not in states:
                states[k] = b.nonterminal("arr_st")
                todo.append(k)
            return states[k]

        b.rule(nt, [st(0, tuple(0 for _ in cons), True)])
        while todo:
            i, counts, first = todo.pop()
            me = states[(i, counts, first)]
            if i >= a.minI and all(c >= cons[j][1] for j, c in enumerate(counts)):
                b.rule(me, [self.struct("arr_empty" if first else "arr_close", d)])
            if a.maxI is not None and i >= a.maxI:
                continue
            it = a.item_at(i)
            if it == NEVER_NODE:
                continue
            ni = i + 1 if (a.maxI is not None or i + 1 <= cap) else cap
            sep = self.struct("arr_first" if first else "arr_sep", d)
            active = [j for j, c in enumerate(cons) if i >= c[3]]
            for mask in range(1 << len(active)):
                parts = [it]
                newc = list(counts)
                ok = True
                for bit, j in enumerate(active):
                    cnode = cons[j][0]
                    if mask >> bit & 1:
                        parts.append(cnode)
                        newc[j] = min(newc[j] + 1, ccaps[j] + (1 if cons[j][2] is not None else 0))
                        if cons[j][2] is not None and newc[j] > cons[j][2]:
                            ok = False
                    else:
                        parts.append(self.c.not_node(cnode))
                if not ok:
                    continue
                node = self.c.and_node(*parts)
                if node == NEVER_NODE:
                    continue
                b.rule(me, [sep, self.value(node, d + 1), st(ni, tuple(newc), False)])
        return nt

    def _unique_array(self, nt: int, a: ArrShape, d: int) -> int:
        b = self.b
        if a.prefix or a.contains:
            raise UnsupportedSchemaError("uniqueItems with prefixItems/contains is not supported", "#",
                                         "uniqueItems")
        vals = self._finite_values(a.items)
        if vals is None or len(vals) > 10:
            raise UnsupportedSchemaError("uniqueItems needs a small finite item language (enum of scalars)", "#",
                                         "uniqueItems")
        terms = [self.term(v, "item") for v in vals]
        hi = len(vals) if a.maxI is None else min(a.maxI, len(vals))
        states: dict = {}
        todo = []

        def st(used, first):
            k = (used, first)
            if k not in states:
                states[k] = b.nonterminal("uniq_st")
                todo.append(k)
            return states[k]

        b.rule(nt, [st(0, True)])
        while todo:
            used, first = todo.pop()
            me = states[(used, first)]
            cnt = bin(used).count("1")
            if cnt >= a.minI:
                b.rule(me, [self.struct("arr_empty" if first else "arr_close", d)])
            if cnt >= hi:
                continue
            sep = self.struct("arr_first" if first else "arr_sep", d)
            for j, t in enumerate(terms):
                if not used >> j & 1:
                    b.rule(me, [sep, t, st(used | 1 << j, False)])
        return nt

    def _finite_values(self, node: int) -> list[ByteDFA] | None:
        sh = self.c.shape(node)
        if sh.arrs or sh.objs or sh.num is not None or sh.exp == EXP_ALL:
            return None
        out = []
        if sh.null:
            out.append(ByteDFA.literal(b"null"))
        for v in sorted(sh.bools):
            out.append(ByteDFA.literal(b"true" if v else b"false"))
        if sh.str is not None:
            vs = sh.str.finite_values(16)
            if vs is None:
                return None
            out.extend(canonical_strings([s]) for s in vs)
        return out

    # ------------------------------------------------------------- objects
    def object(self, o: ObjShape, d: int) -> int:
        key = ("o", o, d)
        if key in self.memo:
            return self.memo[key]
        b = self.b
        nt = b.nonterminal("object")
        self.memo[key] = nt
        props = [(n, v) for n, v in o.props if v != NEVER_NODE]
        listed = [n for n, _ in o.props]
        rest = []
        needs = list(o.needs)
        if len(needs) > MAX_NEEDS:
            raise UnsupportedSchemaError(f"more than {MAX_NEEDS} 'some key in a class' constraints on one object",
                                         "#", "additionalProperties")
        full = (1 << len(needs)) - 1
        if o.rest:
            excl = CharDFA.empty()
            for n in listed:
                excl = excl.union(CharDFA.literal(n))
            for k, v in o.rest:
                kd = k.to_dfa() if k.ranges is None or k.max_bound() <= DFA_LENGTH_LIMIT else None
                if kd is None:
                    raise CompileLimitError("property-name length bound too large")
                kd = kd.difference(excl) if listed else kd
                if not kd.is_empty():
                    rest.append((kd, v))
        need_dfas = []
        for k, _ in needs:
            if k.ranges is not None and k.max_bound() > DFA_LENGTH_LIMIT:
                raise CompileLimitError("property-name length bound too large")
            need_dfas.append(k.to_dfa())

        def subsets(sat, accepts):
            """(mask, [need nodes]) for each subset of the unsatisfied needs `accepts(j)` allows."""
            open_ = [j for j in range(len(needs)) if not sat >> j & 1 and accepts(j)]
            for m in range(1 << len(open_)):
                js = [open_[t] for t in range(len(open_)) if m >> t & 1]
                yield sum(1 << j for j in js), [needs[j][1] for j in js]

        def pair_rules(me, kind, n, v, nxt):
            """Rules for listed key n with value v, marking the needs its value satisfies."""
            for mask, extra in subsets(sat_of(me), lambda j: needs[j][0].accepts(n)):
                node = self.c.and_node(v, *extra)
                if node != NEVER_NODE:
                    b.rule(me, [self.lit_key(kind, d, n), self.value(node, d + 1), nxt(mask)])
        deps = {a: req for a, req in o.deps}
        relevant = set(deps) | {x for r in deps.values() for x in r}
        minp, maxp = o.minp, o.maxp
        counting = minp > 0 or maxp is not None
        cap = (maxp if maxp is not None else minp) if counting else 0
        if cap > MAX_COUNT_STATES:
            raise CompileLimitError("property count bounds too large")

        def rkv(first, mask=0):
            """One additional key-value pair that satisfies exactly the needs in `mask` (among others)."""
            k = ("rkv", o, d, first, mask)
            if k in self.memo:
                return self.memo[k]
            r = b.nonterminal("more_keys")
            self.memo[k] = r
            kind = "key_first" if first else "key_next"
            js = [j for j in range(len(needs)) if mask >> j & 1]
            for kd, v in rest:
                for j in js:
                    kd = kd.intersection(need_dfas[j])
                if kd.is_empty():
                    continue
                node = self.c.and_node(v, *[needs[j][1] for j in js])
                if node == NEVER_NODE:
                    continue
                b.rule(r, [self.key_term(kind, d, json_string_dfa(kd), "key"), self.value(node, d + 1)])
            return r

        def rest_masks(sat):
            return [m for m, _ in subsets(sat, lambda j: True)] if rest else []

        def bump(c):
            return min(c + 1, cap) if counting else 0

        def can_close(c):
            return not counting or c >= minp

        def can_add(c):
            return not counting or maxp is None or c < maxp

        close = {True: self.struct("obj_empty", d), False: self.struct("obj_close", d)}
        state_sat: dict = {}

        def sat_of(me):
            return state_sat[me]

        states: dict = {}
        todo = []

        if self.any_order and props:
            if len(props) > MAX_ANY_ORDER:
                raise UnsupportedSchemaError(f"any_order with more than {MAX_ANY_ORDER} listed properties",
                                             "#", "properties")

            def st(present, first, c, sat=0):
                k = (present, first, c, sat)
                if k not in states:
                    states[k] = b.nonterminal("obj_st")
                    state_sat[states[k]] = sat
                    todo.append(k)
                return states[k]

            b.rule(nt, [st(frozenset(), True, 0)])
            while todo:
                present, first, c, sat = todo.pop()
                me = states[(present, first, c, sat)]
                done = (o.required <= present and can_close(c) and sat == full
                        and all(req <= present for a, req in deps.items() if a in present))
                if done:
                    b.rule(me, [close[first]])
                if not can_add(c):
                    continue
                kind = "key_first" if first else "key_next"
                for n, v in props:
                    if n not in present:
                        pair_rules(me, kind, n, v, lambda m, n=n: st(present | {n}, False, bump(c), sat | m))
                for m in rest_masks(sat):
                    b.rule(me, [rkv(first, m), st(present, False, bump(c), sat | m)])
            return nt

        # schema order
        def st(i, first, c, dset, sat=0):
            k = (i, first, c, dset, sat)
            if k not in states:
                states[k] = b.nonterminal("obj_st")
                state_sat[states[k]] = sat
                todo.append(k)
            return states[k]

        b.rule(nt, [st(0, True, 0, frozenset())])
        allnames = [n for n, _ in props]
        pos = {n: i for i, n in enumerate(allnames)}
        while todo:
            i, first, c, dset, sat = todo.pop()
            me = states[(i, first, c, dset, sat)]
            if i < len(props):
                n, v = props[i]
                # forced present: required, or required by an earlier present trigger
                forced = n in o.required or any(n in deps.get(a, ()) for a in dset)
                # forbidden: a trigger whose earlier dependency is absent
                blocked = n in deps and any(pos.get(r, len(props)) < i and r not in dset for r in deps[n]) or any(
                    r not in pos for r in deps.get(n, ()))
                nd = dset | {n} if n in relevant else dset
                if not blocked and can_add(c):
                    kind = "key_first" if first else "key_next"
                    pair_rules(me, kind, n, v, lambda m: st(i + 1, False, bump(c), nd, sat | m))
                if not forced:
                    b.rule(me, [st(i + 1, first, c, dset, sat)])
                continue
            # a forbidden-but-required name never gets here; check pending requirements of forbidden names
            if any(r not in pos for n in dset for r in deps.get(n, ())):
                continue
            if o.required - set(allnames):
                continue
            if can_close(c) and sat == full:
                b.rule(me, [close[first]])
            if can_add(c):
                for m in rest_masks(sat):
                    b.rule(me, [rkv(first, m), st(i, False, bump(c), dset, sat | m)])
        return nt


def canonical_strings(values: list[str]) -> ByteDFA:
    """The JSON strings of a few known values, each in its one canonical spelling (``json.dumps``).

    Enum and const strings are not spelled with optional escapes (``"\\u0069"`` for ``"i"``):
    the language is smaller but every value is still reachable, and a model cannot wander
    into escape sequences that only look like progress.
    """
    lits = [ByteDFA.literal(json.dumps(v, ensure_ascii=False).encode()) for v in values]
    return lits[0] if len(lits) == 1 else ops.union(*lits)


def _scalar_name(sh: Shape) -> str:
    parts = []
    if sh.null:
        parts.append("null")
    if sh.bools:
        parts.append("bool")
    if sh.num is not None or sh.exp == EXP_ALL:
        parts.append("number")
    if sh.str is not None:
        parts.append("string")
    return "|".join(parts) or "scalar"
