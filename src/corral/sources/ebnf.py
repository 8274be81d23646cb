"""GBNF / llama.cpp-style EBNF front end: ``ebnf_to_ir(text) -> GrammarIR``.

The dialect is the one of llama.cpp's ``.gbnf`` files and transformers-CFG's ``.ebnf``
files::

    root      ::= object            # comments run to the end of the line
    object    ::= "{" ws ( pair ( "," ws pair )* )? "}"
    pair-list ::= [a-z_]+ | "\\x41" | [^"\\\\\\x00-\\x1F] | . | item{2,5}

* ``name ::= alternatives``; alternatives are separated by ``|``; a rule runs until the
  next ``name ::=`` (newlines inside a rule are ordinary white space).
* grouping ``( )``, postfix ``*``, ``+``, ``?``, ``{m}``, ``{m,}``, ``{m,n}``.
* string literals ``"..."`` and character classes ``[a-z]`` / ``[^...]`` with the escapes
  ``\\n \\r \\t \\\\ \\" \\[ \\] \\- \\xHH \\uHHHH \\UHHHHHHHH`` (any other escaped character
  stands for itself).
* ``.`` is any one character; characters are Unicode scalar values encoded in UTF-8, so
  ``.`` and negated classes match any valid UTF-8 encoding of a character outside the set.
* a rule defined twice gets the union of its definitions.

The GBNF text itself is read with a Lark (LALR) grammar; every literal and character class
becomes one IR terminal (shared when equal).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np

from ..automaton.dfa import DEAD, ByteDFA
from ..automaton.ir import GrammarIR, IRBuilder
from ..errors import GrammarError

__all__ = ["ebnf_to_ir", "utf8_class_dfa", "parse_gbnf"]

MAX_CODEPOINT = 0x10FFFF
_SURROGATES = (0xD800, 0xDFFF)

# --------------------------------------------------------------------------------------
# The GBNF reader (a Lark grammar)
# --------------------------------------------------------------------------------------

_GBNF_GRAMMAR = r"""
start: rule*
rule: RULE_HEAD alternatives
alternatives: sequence ("|" sequence)*
sequence: item*
item: atom quant?
?atom: STRING              -> literal
     | CHARCLASS           -> charclass
     | DOT                 -> any
     | NAME                -> ref
     | "(" alternatives ")" -> group
quant: STAR | PLUS | QMARK
     | "{" INT "}"               -> rep_exact
     | "{" INT "," "}"           -> rep_min
     | "{" INT "," INT "}"       -> rep_range
STAR: "*"
PLUS: "+"
QMARK: "?"
DOT: "."
RULE_HEAD.3: /[A-Za-z0-9_][A-Za-z0-9_-]*\s*::=/
NAME: /[A-Za-z0-9_][A-Za-z0-9_-]*/
INT: /[0-9]+/
STRING: /"(\\[^\n]|[^"\\\n])*"/
CHARCLASS: /\[(\\[^\n]|[^\]\\\n])*\]/
COMMENT: /#[^\n]*/
%ignore /[ \t\r\n\f]+/
%ignore COMMENT
"""


@functools.lru_cache(maxsize=1)
def _gbnf_parser():
    import lark

    return lark.Lark(_GBNF_GRAMMAR, parser="lalr", lexer="contextual", propagate_positions=False)


def parse_gbnf(text: str):
    """Parse GBNF text into a Lark tree (raises GrammarError on a syntax error)."""
    import lark

    try:
        return _gbnf_parser().parse(text)
    except lark.exceptions.UnexpectedInput as e:
        line, col = getattr(e, "line", None), getattr(e, "column", None)
        where = f"line {line}, column {col}" if line not in (None, -1) else None
        msg = _short_lark_message(e)
        raise GrammarError(f"GBNF syntax error: {msg}", where) from e
    except lark.exceptions.LarkError as e:
        raise GrammarError(f"GBNF syntax error: {e}") from e


def _short_lark_message(e) -> str:
    s = str(e).strip().splitlines()
    return s[0] if s else type(e).__name__


# --------------------------------------------------------------------------------------
# Escapes, literals and character classes
# --------------------------------------------------------------------------------------

_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "f": "\f", "v": "\v", "a": "\a", "b": "\b", "e": "\x1b"}
_HEX_LEN = {"x": 2, "u": 4, "U": 8}


def _read_char(s: str, i: int, where: str) -> tuple[int, int]:
    """Read one (possibly escaped) character of ``s`` at ``i``: (code point, next index)."""
    c = s[i]
    if c != "\\":
        return ord(c), i + 1
    if i + 1 >= len(s):
        raise GrammarError("dangling backslash", where)
    e = s[i + 1]
    if e in _HEX_LEN:
        n = _HEX_LEN[e]
        digits = s[i + 2 : i + 2 + n]
        if len(digits) != n or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise GrammarError(f"bad escape \\{e}{digits}: expected {n} hex digits", where)
        cp = int(digits, 16)
        if cp > MAX_CODEPOINT:
            raise GrammarError(f"escape \\{e}{digits} is beyond U+10FFFF", where)
        return cp, i + 2 + n
    if e in _SIMPLE_ESCAPES:
        return ord(_SIMPLE_ESCAPES[e]), i + 2
    # \\ \" \[ \] \- \/ ... : the character itself
    return ord(e), i + 2


def _decode_literal(tok: str, where: str) -> bytes:
    body = tok[1:-1]
    out = []
    i = 0
    while i < len(body):
        cp, i = _read_char(body, i, where)
        if _SURROGATES[0] <= cp <= _SURROGATES[1]:
            raise GrammarError(f"string literal contains a surrogate code point U+{cp:04X}", where)
        out.append(chr(cp))
    return "".join(out).encode("utf-8")


def _decode_class(tok: str, where: str) -> tuple[bool, tuple[tuple[int, int], ...]]:
    """``[...]`` -> (negated, sorted disjoint inclusive code point ranges)."""
    body = tok[1:-1]
    negated = body.startswith("^")
    i = 1 if negated else 0
    ranges: list[tuple[int, int]] = []
    while i < len(body):
        lo, i = _read_char(body, i, where)
        hi = lo
        if i + 1 < len(body) and body[i] == "-":
            hi, i = _read_char(body, i + 1, where)
            if hi < lo:
                raise GrammarError(f"bad character range {chr(lo)!r}-{chr(hi)!r} in {tok}", where)
        ranges.append((lo, hi))
    return negated, _normalize_ranges(ranges)


def _normalize_ranges(ranges: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


def _complement(ranges: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_CODEPOINT:
        out.append((nxt, MAX_CODEPOINT))
    return tuple(out)


def _utf8_sequences(lo: int, hi: int):
    """Split code points ``lo..hi`` (no surrogates) into lists of per-byte ranges."""
    if lo > hi:
        return
    for bound in (0x7F, 0x7FF, 0xFFFF):
        if lo <= bound < hi:
            yield from _utf8_sequences(lo, bound)
            yield from _utf8_sequences(bound + 1, hi)
            return
    if hi < 0x80:
        yield [(lo, hi)]
        return
    n = len(chr(lo).encode("utf-8"))
    for i in range(1, n):
        m = (1 << (6 * i)) - 1
        if lo & ~m != hi & ~m:
            if lo & m != 0:
                yield from _utf8_sequences(lo, lo | m)
                yield from _utf8_sequences((lo | m) + 1, hi)
                return
            if hi & m != m:
                yield from _utf8_sequences(lo, (hi & ~m) - 1)
                yield from _utf8_sequences(hi & ~m, hi)
                return
    a = chr(lo).encode("utf-8")
    b = chr(hi).encode("utf-8")
    yield list(zip(a, b))


def _without_surrogates(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    s0, s1 = _SURROGATES
    for lo, hi in ranges:
        lo, hi = max(lo, 0), min(hi, MAX_CODEPOINT)
        if hi < s0 or lo > s1:
            if lo <= hi:
                out.append((lo, hi))
            continue
        if lo < s0:
            out.append((lo, s0 - 1))
        if hi > s1:
            out.append((s1 + 1, hi))
    return out


def nfa_to_bytedfa(edges: dict[int, list[tuple[int, int, int]]], start: int, accepting: set[int]) -> ByteDFA:
    """Subset construction for a small epsilon-free byte NFA.

    ``edges[q]`` lists ``(lo_byte, hi_byte, target)``.
    """
    start_set = frozenset([start])
    index = {start_set: 0}
    order = [start_set]
    rows: list[np.ndarray] = []
    acc: list[bool] = []
    i = 0
    while i < len(order):
        cur = order[i]
        i += 1
        acc.append(bool(cur & accepting))
        targets: list[set[int]] = [set() for _ in range(256)]
        for q in cur:
            for lo, hi, t in edges.get(q, ()):
                for b in range(lo, hi + 1):
                    targets[b].add(t)
        row = np.full(256, DEAD, dtype=np.int32)
        for b in range(256):
            if targets[b]:
                fs = frozenset(targets[b])
                j = index.get(fs)
                if j is None:
                    j = len(order)
                    index[fs] = j
                    order.append(fs)
                row[b] = j
        rows.append(row)
    trans = np.stack(rows) if rows else np.zeros((0, 256), dtype=np.int32)
    return ByteDFA.from_arrays(trans, np.array(acc, dtype=bool), 0)


@functools.lru_cache(maxsize=65536)
def literal_dfa(data: bytes) -> ByteDFA:
    """``ByteDFA.literal(data)``, built directly: a chain is already minimal and canonical."""
    try:
        from ..automaton.dfa import _make
    except ImportError:  # pragma: no cover - dfa internals changed
        return ByteDFA.literal(data)
    n = len(data) + 1
    trans = np.full((n, 256), DEAD, dtype=np.int32)
    trans[np.arange(n - 1), np.frombuffer(data, dtype=np.uint8)] = np.arange(1, n, dtype=np.int32)
    acc = np.zeros(n, dtype=bool)
    acc[n - 1] = True
    return _make(trans, acc)


def utf8_class_dfa(ranges: Iterable[tuple[int, int]]) -> ByteDFA:
    """The DFA of the UTF-8 encoding of one character whose code point is in ``ranges``.

    Surrogates (U+D800..U+DFFF) are never matched: only valid UTF-8 is produced.
    """
    return _class_dfa_cached(_normalize_ranges(_without_surrogates(ranges)))


@functools.lru_cache(maxsize=4096)
def _class_dfa_cached(ranges: tuple[tuple[int, int], ...]) -> ByteDFA:
    edges: dict[int, list[tuple[int, int, int]]] = {}
    accept = 1
    nxt = 2
    for lo, hi in ranges:
        for seq in _utf8_sequences(lo, hi):
            q = 0
            for k, (blo, bhi) in enumerate(seq):
                if k == len(seq) - 1:
                    t = accept
                else:
                    t = nxt
                    nxt += 1
                edges.setdefault(q, []).append((blo, bhi, t))
                q = t
    return nfa_to_bytedfa(edges, 0, {accept})


# --------------------------------------------------------------------------------------
# Tree -> IR
# --------------------------------------------------------------------------------------


class _Converter:
    def __init__(self, tree, start: str) -> None:
        self.b = IRBuilder()
        self.tree = tree
        self.start = start
        self.rule_syms: dict[str, int] = {}
        self.class_cache: dict[tuple, int] = {}
        self.lit_cache: dict[bytes, int] = {}

    def run(self) -> GrammarIR:
        rules = self.tree.children
        defs: list[tuple[str, object, int]] = []
        for r in rules:
            head, alts = r.children
            name = head.value[: head.value.index("::=")].strip()
            defs.append((name, alts, head.line))
            if name not in self.rule_syms:
                self.rule_syms[name] = self.b.nonterminal(name)
        if not defs:
            raise GrammarError("empty grammar: no rule defined")
        if self.start not in self.rule_syms:
            raise GrammarError(f"the start rule {self.start!r} is not defined")
        for name, alts, _line in defs:
            lhs = self.rule_syms[name]
            for seq in alts.children:
                self.b.rule(lhs, self.sequence(seq))
        return self.b.build(self.rule_syms[self.start], source="ebnf", meta={"start": self.start})

    def sequence(self, seq) -> list[int]:
        return [self.item(it) for it in seq.children]

    def alternatives(self, alts) -> int:
        seqs = [tuple(self.sequence(s)) for s in alts.children]
        if len(seqs) == 1 and len(seqs[0]) == 1:
            return seqs[0][0]
        return self.b.choice(seqs, "_group")

    def item(self, it) -> int:
        atom = it.children[0]
        sym = self.atom(atom)
        if len(it.children) == 1:
            return sym
        q = it.children[1]
        if q.data == "quant":
            op = q.children[0].value
            if op == "*":
                return self.b.star(sym)
            if op == "+":
                return self.b.plus(sym)
            return self.b.optional(sym)
        nums = [int(t.value) for t in q.children]
        if q.data == "rep_exact":
            lo, hi = nums[0], nums[0]
        elif q.data == "rep_min":
            lo, hi = nums[0], None
        else:
            lo, hi = nums
            if hi < lo:
                raise GrammarError(f"bad repetition {{{lo},{hi}}}", _where(q))
        from ..limits import check_count, check_deadline

        check_count("max_repeat", max(lo, hi or 0), f"repetition {{{lo},{hi if hi is not None else ''}}}")
        check_deadline("GBNF conversion")
        return self.b.repeat(sym, lo, hi)

    def atom(self, a) -> int:
        kind = a.data
        if kind == "literal":
            tok = a.children[0]
            data = _decode_literal(tok.value, _where(tok))
            if not data:
                return self.b.literal(b"")
            sym = self.lit_cache.get(data)
            if sym is None:
                sym = self.lit_cache[data] = self.b.terminal(literal_dfa(data), tok.value)
            return sym
        if kind == "charclass":
            tok = a.children[0]
            negated, ranges = _decode_class(tok.value, _where(tok))
            return self._class(tok.value, negated, ranges)
        if kind == "any":
            return self._class(".", True, ())
        if kind == "ref":
            tok = a.children[0]
            name = tok.value
            if name not in self.rule_syms:
                raise GrammarError(f"undefined rule {name!r} (used at line {tok.line})", f"line {tok.line}")
            return self.rule_syms[name]
        if kind == "group":
            return self.alternatives(a.children[0])
        raise AssertionError(kind)

    def _class(self, label: str, negated: bool, ranges: tuple[tuple[int, int], ...]) -> int:
        key = (negated, ranges)
        if key not in self.class_cache:
            rs = _complement(ranges) if negated else ranges
            dfa = utf8_class_dfa(rs)
            if dfa.is_empty:
                # An empty class matches nothing: a nonterminal without rules (dropped by build).
                self.class_cache[key] = self.b.nonterminal("_nothing")
            else:
                self.class_cache[key] = self.b.terminal(dfa, label)
        return self.class_cache[key]


def _where(tok) -> str | None:
    line = getattr(tok, "line", None)
    if line is None:
        meta = getattr(tok, "meta", None)
        line = getattr(meta, "line", None) if meta is not None and not getattr(meta, "empty", True) else None
    return f"line {line}" if line is not None else None


def ebnf_to_ir(text: str, *, start: str = "root") -> GrammarIR:
    """Convert a GBNF (llama.cpp / transformers-CFG EBNF) grammar to a GrammarIR.

    Raises GrammarError for a syntax error (with line and column), an undefined rule
    (naming it and the line of the use), a missing start rule, or an empty language.
    """
    from ..limits import check_count, check_deadline

    check_count("max_source_chars", len(text), "GBNF grammar")
    tree = parse_gbnf(text)
    check_deadline("GBNF parsing")
    return _Converter(tree, start).run()
