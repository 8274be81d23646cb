"""Number languages as byte DFAs over JSON number texts.

The number universe is the JSON numbers without exponent,
``-?(0|[1-9][0-9]*)(\\.[0-9]+)?`` (``NUM_UNIVERSE``). Every DFA built here is exact
on it (a text is in the language iff the number it denotes satisfies the
constraint), so union, intersection and complement relative to the universe are
exact too. Texts with an exponent are tracked separately by the compiler.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache

import numpy as np

from ...automaton import dfa_ops as ops
from ...automaton.dfa import DEAD, ByteDFA
from ...automaton.regex import compile_regex
from ...errors import CompileLimitError

DIGITS = b"0123456789"
ALPHABET = b"0123456789.-"

NUM_UNIVERSE = compile_regex(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
EXP_NUMBERS = compile_regex(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?[eE][+-]?[0-9]+")
INTEGERS = compile_regex(r"-?(0|[1-9][0-9]*)(\.0+)?")
INTEGERS_DRAFT4 = compile_regex(r"-?(0|[1-9][0-9]*)")  # draft 4: 1.0 is not an integer
MAX_STATES = 20_000


def build(start, step, accept, alphabet: bytes = ALPHABET) -> ByteDFA:
    """A ByteDFA from a transition function over hashable states (BFS, then minimised)."""
    index = {start: 0}
    order = [start]
    rows: list[list[tuple[int, int]]] = []
    i = 0
    while i < len(order):
        s = order[i]
        i += 1
        row = []
        for b in alphabet:
            t = step(s, b)
            if t is None:
                continue
            if t not in index:
                index[t] = len(order)
                order.append(t)
                if len(order) > MAX_STATES:
                    raise CompileLimitError("number automaton too large")
            row.append((b, index[t]))
        rows.append(row)
    trans = np.full((len(order), 256), DEAD, dtype=np.int32)
    for q, row in enumerate(rows):
        for b, t in row:
            trans[q, b] = t
    acc = np.array([bool(accept(s)) for s in order], dtype=bool)
    return ops.normalize_fast(trans, acc, 0)


def inter(a: ByteDFA, b: ByteDFA) -> ByteDFA:
    return ops.intersection(a, b)


def _split(m: Decimal) -> tuple[str, str]:
    """Integer digits and fraction digits (no trailing zeros) of a non-negative decimal."""
    s = format(m, "f")
    if "." in s:
        ip, fp = s.split(".")
        fp = fp.rstrip("0")
    else:
        ip, fp = s, ""
    ip = ip.lstrip("0") or "0"
    return ip, fp


def _magnitude_cmp(m: Decimal, ok) -> ByteDFA:
    """Non-negative texts (no sign) whose value v gives ``ok(sign(v - m))``; m >= 0."""
    ip, fp = _split(m)
    L = len(ip)

    # states: ("int", k, c) k digits read, c in -1/0/1 lexicographic vs ip[:k] (k<=L); ("big",) k>L
    #         ("dot", r) after '.', r = decided result or None for pending-eq-with-fraction
    #         ("frac", j, c) j fraction digits read, c = result so far (0 = equal so far)
    def step(s, b):
        tag = s[0]
        if tag == "start":
            if b in DIGITS:
                d = chr(b)
                return _int_state(1, _cmpch(d, ip[0]) if L >= 1 else 1)
            return None
        if tag == "int":
            k, c = s[1], s[2]
            if b in DIGITS:
                return _int_state(k + 1, c if c != 0 else (_cmpch(chr(b), ip[k]) if k < L else 1))
            if b == ord("."):
                return ("dot", _int_result(k, c))
            return None
        if tag == "big":
            if b in DIGITS:
                return s
            if b == ord("."):
                return ("dot", 1)
            return None
        if tag in ("dot", "frac"):
            if b not in DIGITS:
                return None
            r = s[1] if tag == "dot" else s[2]
            j = 0 if tag == "dot" else s[1]
            if r != 0:
                return ("frac", 0, r)
            want = fp[j] if j < len(fp) else "0"
            c = _cmpch(chr(b), want)
            return ("frac", min(j + 1, len(fp)), c)
        return None

    def _int_state(k, c):
        if k > L:
            return ("big",)
        return ("int", k, c)

    def _int_result(k, c):
        if k < L:
            return -1
        if c != 0:
            return c
        return 0

    def accept(s):
        tag = s[0]
        if tag == "int":
            r = _int_result(s[1], s[2])
            if r == 0 and fp:
                r = -1
            return ok(r)
        if tag == "big":
            return ok(1)
        if tag == "frac":
            r = s[2]
            if r == 0 and s[1] < len(fp):
                r = -1  # fraction of x is a shorter prefix: x < m
            return ok(r)
        return False

    # a leading zero integer part cannot continue with digits; enforced by the universe intersection
    return build(("start",), step, accept, DIGITS + b".")


def _cmpch(a: str, b: str) -> int:
    return (a > b) - (a < b)


_CMP = {
    "<": lambda r: r < 0,
    "<=": lambda r: r <= 0,
    ">": lambda r: r > 0,
    ">=": lambda r: r >= 0,
}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


@lru_cache(maxsize=1024)
def compare_dfa(op: str, c: Decimal) -> ByteDFA:
    """Texts of the universe with ``value op c``."""
    minus = ByteDFA.literal(b"-")
    if c.is_nan() or c.is_infinite():
        raise ValueError("non-finite bound")
    nonneg_any = compile_regex(r"[0-9]+(\.[0-9]+)?")
    if op in (">", ">="):
        if c > 0 or (c == 0 and op == ">"):
            lang = _magnitude_cmp(c, _CMP[op])  # only positives can exceed a non-negative bound
        else:
            # c <= 0 (or c == 0 with >=): all non-negatives, and negatives -m with m op' |c|
            neg = ops.concat(minus, _magnitude_cmp(-c, _CMP[_FLIP[op]]))
            lang = ops.union(nonneg_any, neg)
    else:
        if c > 0 or (c == 0 and op == "<="):
            neg_all = ops.concat(minus, nonneg_any)
            lang = ops.union(neg_all, _magnitude_cmp(c, _CMP[op]))
        else:
            lang = ops.concat(minus, _magnitude_cmp(-c, _CMP[_FLIP[op]]))
    return inter(lang, NUM_UNIVERSE)


@lru_cache(maxsize=1024)
def multiple_of_dfa(k: Decimal) -> ByteDFA:
    """Texts of the universe whose value is an exact multiple of the decimal ``k`` > 0."""
    sign, digits, exp = k.normalize().as_tuple()
    p = int("".join(map(str, digits)))
    s = max(0, -exp)
    if exp > 0:
        p *= 10**exp
    if p > 5000:
        raise CompileLimitError(f"multipleOf {k} needs {p} remainder states")
    # state: (phase, r, fd): phase 0 int part, 1 just after '.', 2 fraction
    def step(st, b):
        ph, r, fd = st
        if b == ord("-"):
            return (0, 0, 0) if st == ("s", 0, 0) else None
        if b == ord("."):
            return (1, r, 0) if ph in ("s0", 0) and st != ("s", 0, 0) else None
        d = b - 48
        if ph in ("s", 0, "s0"):
            return (0, (r * 10 + d) % p, 0)
        # fraction digit
        if fd < s:
            return (2, (r * 10 + d) % p, fd + 1)
        return (2, r, fd) if d == 0 else None

    def accept(st):
        ph, r, fd = st
        if ph in ("s", 1):
            return False
        return (r * 10 ** (s - fd)) % p == 0

    # first state ("s",0,0) distinguishes the optional sign; after '-' we use (0,0,0) which must
    # not accept the empty digit string: use a marker phase "s0"
    def step2(st, b):
        if st == ("s", 0, 0) and b == ord("-"):
            return ("s0", 0, 0)
        if st[0] == "s0":
            if b in DIGITS:
                return (0, (b - 48) % p, 0)
            return None
        if st == ("s", 0, 0) and b == ord("."):
            return None
        return step(st, b)

    def accept2(st):
        return st[0] not in ("s", "s0", 1) and accept(st)

    return inter(build(("s", 0, 0), step2, accept2), NUM_UNIVERSE)


def const_number_dfa(v: Decimal) -> ByteDFA:
    """Every universe text denoting exactly ``v`` (e.g. 1, 1.0, 1.00 for 1)."""
    return inter(compare_dfa(">=", v), compare_dfa("<=", v))


def to_decimal(x) -> Decimal:
    if isinstance(x, bool):
        raise TypeError("bool is not a number")
    if isinstance(x, int):
        return Decimal(x)
    if isinstance(x, float):
        return Decimal(repr(x))
    if isinstance(x, Decimal):
        return x
    raise TypeError(f"not a number: {x!r}")
