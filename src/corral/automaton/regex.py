"""Regular expressions -> char-level DFAs -> byte DFAs.

Public entry points:

* :func:`compile_regex` -- the language of a regex (full match, or ``search=True``
  for "contains a match") over UTF-8 text, as a minimal :class:`ByteDFA`.
* :func:`regex_to_char_dfa` -- the same at code-point level, as a :class:`CharDFA`.
* :class:`CharDFA` -- DFA over code points with the algebra the JSON Schema
  compiler needs (union, intersection, difference, complement, concat, repeat,
  length bounds) and the encodings :meth:`CharDFA.to_byte_dfa` (``"utf8"`` or
  ``"json"`` string-content) and :func:`json_string_dfa`.

Dialects: ``"python"`` (``re`` syntax, flags ``i s m x u a``) and ``"ecma"``
(ECMA-262 as used by JSON Schema ``pattern``, flags ``i s m u``).

Not supported (``RegexError`` naming the feature and its offset): backreferences,
lookaround, word boundaries ``\\b``/``\\B``, line anchors (multiline ``^``/``$``, and
Python's ``$`` before a final newline) anywhere but at the very start / end of the pattern
or of a top-level alternative (input-start/end anchors may appear anywhere: they become
zero-width assertions of the automaton), atomic groups, possessive
quantifiers, conditionals, Unicode scripts/binary properties in ``\\p{..}``
(general categories are supported in the ecma dialect). Case-insensitive matching
uses simple per-code-point case equivalence as CPython's ``sre`` does (the ecma
dialect uses the same tables: exact for ASCII, close elsewhere).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..errors import CompileLimitError, RegexError
from . import charset as cs
from . import dfa_ops as ops
from .dfa import DEAD, ByteDFA, _make

MAX_REPEAT = 100_000
_BASE_BOUNDS = (0, cs.SURROGATE_LO, cs.SURROGATE_HI + 1, cs.MAX_CP + 1)


def _err(feature: str, pos: int, pattern: str = "") -> RegexError:
    e = RegexError(f"{feature} (at offset {pos})" + (f" in pattern {pattern!r}" if pattern and len(pattern) < 200 else ""),
                   where=f"offset {pos}")
    e.offset = pos  # type: ignore[attr-defined]
    return e


# ---------------------------------------------------------------------------
# parser -> AST
#   ("set", ranges) | ("cat", [nodes]) | ("alt", [nodes]) | ("rep", node, lo, hi)
#   ("bol", pos, kind) | ("eol", pos, kind)   kinds: "strict", "py" (before final \n), "ml"

_EMPTY_NODE = ("cat", [])


class _Parser:
    def __init__(self, pattern: str, flags: str, dialect: str):
        if dialect not in ("python", "ecma"):
            raise ValueError(f"unknown regex dialect {dialect!r}")
        self.p = pattern
        self.n = len(pattern)
        self.i = 0
        self.dialect = dialect
        self.ecma = dialect == "ecma"
        allowed = "ismxua" if not self.ecma else "ismuvgdy"
        fl = set()
        for c in flags:
            if c not in allowed:
                raise RegexError(f"unknown regex flag {c!r} for dialect {dialect}")
            fl.add(c)
        if self.ecma:
            fl.discard("x")
        self.unicode_mode = "u" in fl or "v" in fl
        self.global_ok = True
        self.flags = fl
        self.raw = False

    # -- helpers
    def err(self, feature: str, pos: int | None = None) -> RegexError:
        return _err(feature, self.i if pos is None else pos, self.p)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.p[j] if j < self.n else ""

    def skip_ws(self) -> None:
        if "x" not in self.flags:
            return
        while self.i < self.n:
            c = self.p[self.i]
            if c in " \t\n\r\f\v":
                self.i += 1
            elif c == "#":
                while self.i < self.n and self.p[self.i] != "\n":
                    self.i += 1
            else:
                break

    # -- sets
    def mkset(self, ranges) -> tuple:
        r = cs.normalize(ranges)
        if self.raw:
            return ("set", r)
        if "i" in self.flags:
            r = cs.case_close(r, ascii_only="a" in self.flags)
        return ("set", cs.valid(r))

    def shorthand(self, c: str) -> tuple:
        low = c.lower()
        if self.ecma:
            base = {"d": cs.ECMA_D, "w": cs.ECMA_W, "s": cs.ECMA_S}[low]
        else:
            base = cs.python_class(low, ascii_only="a" in self.flags)
        return cs.complement(base) if c.isupper() else base

    def dot(self) -> tuple:
        if "s" in self.flags:
            return ("set", cs.ALL)
        if self.ecma:
            return ("set", cs.complement(cs.ECMA_LINE_TERMINATORS))
        return ("set", cs.complement(((10, 10),)))

    # -- grammar
    def parse(self):
        node = self.parse_alt()
        if self.i < self.n:
            if self.p[self.i] == ")":
                raise self.err("unbalanced parenthesis")
            raise self.err("unexpected character")
        return node

    def parse_alt(self):
        alts = [self.parse_seq()]
        while self.i < self.n and self.p[self.i] == "|":
            self.i += 1
            alts.append(self.parse_seq())
        return alts[0] if len(alts) == 1 else ("alt", alts)

    def parse_seq(self):
        items: list = []
        while True:
            self.skip_ws()
            if self.i >= self.n or self.p[self.i] in "|)":
                break
            start = self.i
            atom = self.parse_atom()
            if atom is None:
                continue
            self.global_ok = False
            atom = self.parse_quantifiers(atom, start)
            items.append(atom)
        return items[0] if len(items) == 1 else ("cat", items)

    def parse_quantifiers(self, atom, start: int):
        while True:
            self.skip_ws()
            c = self.peek()
            qpos = self.i
            if c in ("*", "+", "?"):
                self.i += 1
                lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{":
                q = self.try_brace()
                if q is None:
                    return atom
                lo, hi = q
            else:
                return atom
            if atom[0] in ("bol", "eol"):
                raise self.err("quantifier on an anchor", qpos)
            if atom[0] == "rep" and atom[4] == "q":
                # two quantifiers in a row is an error except the lazy/possessive suffix handled below
                raise self.err("multiple repeat", qpos)
            if self.peek() == "?":
                self.i += 1  # lazy: same language
            elif self.peek() == "+" and not self.ecma:
                raise self.err("possessive quantifier is not supported", self.i)
            if hi is not None and hi < lo:
                raise self.err("min repeat greater than max repeat", qpos)
            if lo > MAX_REPEAT or (hi is not None and hi > MAX_REPEAT):
                raise CompileLimitError(f"repeat count too large at offset {qpos}")
            atom = ("rep", atom, lo, hi, "q")

    _BRACE = __import__("re").compile(r"\{([0-9]*)(,([0-9]*))?\}")

    def try_brace(self):
        """Parse ``{n}``, ``{n,}``, ``{n,m}`` (and ``{,m}`` in python); None if literal."""
        m = self._BRACE.match(self.p, self.i)
        ok = False
        if m:
            lo_s, comma, hi_s = m.group(1), m.group(2), m.group(3)
            if comma is None:
                ok = bool(lo_s)
            elif self.ecma:
                ok = bool(lo_s)
            else:
                ok = bool(lo_s or hi_s)
        if not ok:
            if self.ecma and self.unicode_mode:
                raise self.err("incomplete quantifier")
            return None
        self.i = m.end()
        lo = int(lo_s or 0)
        if comma is None:
            return lo, lo
        return lo, (int(hi_s) if hi_s else None)

    def parse_atom(self):
        c = self.p[self.i]
        pos = self.i
        if c == "(":
            return self.parse_group()
        if c == "[":
            self.i += 1
            return self.parse_class(pos)
        if c == ".":
            self.i += 1
            return self.dot()
        if c == "^":
            self.i += 1
            return ("bol", pos, "ml" if "m" in self.flags else "strict")
        if c == "$":
            self.i += 1
            if "m" in self.flags:
                return ("eol", pos, "ml")
            return ("eol", pos, "strict" if self.ecma else "py")
        if c in "*+?":
            raise self.err("nothing to repeat")
        if c == "{" and self.ecma and self.unicode_mode:
            raise self.err("lone quantifier bracket")
        if c in ")]}" and self.ecma and self.unicode_mode:
            raise self.err("lone bracket")
        if c == "\\":
            return self.parse_escape(in_class=False)
        self.i += 1
        cp = ord(c)
        if self.ecma and 0xD800 <= cp <= 0xDBFF and 0xDC00 <= ord(self.peek() or "\0") <= 0xDFFF:
            cp = 0x10000 + ((cp - 0xD800) << 10) + (ord(self.p[self.i]) - 0xDC00)
            self.i += 1
        return self.mkset([(cp, cp)])

    def parse_group(self):
        pos = self.i
        self.i += 1
        saved = set(self.flags)
        if not (self.peek() == "?" and self.peek(1) not in (":", "P", "<", "=", "!", ">", "(", "#")):
            self.global_ok = False
        if self.peek() == "?":
            c = self.peek(1)
            if c == ":":
                self.i += 2
            elif c == "P" and self.peek(2) == "<":
                self.i += 3
                self.group_name()
            elif c == "P" and self.peek(2) == "=":
                raise self.err("backreference (?P=...) is not supported", pos)
            elif c == "<" and self.peek(2) not in ("=", "!"):
                self.i += 2
                self.group_name()
            elif c in ("=", "!"):
                raise self.err("lookahead is not supported", pos)
            elif c == "<":
                raise self.err("lookbehind is not supported", pos)
            elif c == ">":
                raise self.err("atomic group is not supported", pos)
            elif c == "(":
                raise self.err("conditional group is not supported", pos)
            elif c == "#" and not self.ecma:
                end = self.p.find(")", self.i)
                if end < 0:
                    raise self.err("unterminated comment", pos)
                self.i = end + 1
                return None
            else:
                # inline flags
                self.i += 1
                on, off = "", ""
                neg = False
                while self.i < self.n and self.p[self.i] not in ":)":
                    f = self.p[self.i]
                    if f == "-":
                        neg = True
                    elif f in "imsxua":
                        if neg:
                            off += f
                        else:
                            on += f
                    elif f == "L":
                        raise self.err("locale flag (?L) is not supported", self.i)
                    else:
                        raise self.err(f"unknown inline flag {f!r}", self.i)
                    self.i += 1
                if self.i >= self.n:
                    raise self.err("missing ), unterminated inline flag group", pos)
                if self.p[self.i] == ")":
                    self.i += 1
                    if off:
                        raise self.err("global flags cannot be turned off", pos)
                    if not self.global_ok:
                        raise self.err("global flags not at the start of the expression", pos)
                    self.flags |= set(on)
                    if "u" in on:
                        pass
                    return None
                self.i += 1  # ':'
                self.flags |= set(on)
                self.flags -= set(off)
                body = self.parse_alt()
                if self.peek() != ")":
                    raise self.err("missing ), unterminated subpattern", pos)
                self.i += 1
                self.flags = saved
                return ("group", body)
        body = self.parse_alt()
        if self.peek() != ")":
            raise self.err("missing ), unterminated subpattern", pos)
        self.i += 1
        self.flags = saved
        return ("group", body)

    def group_name(self) -> None:
        end = self.p.find(">", self.i)
        if end < 0 or end == self.i:
            raise self.err("bad group name")
        self.i = end + 1

    # -- escapes
    def hexnum(self, k: int, pos: int) -> int:
        s = self.p[self.i:self.i + k]
        if len(s) != k or any(ch not in "0123456789abcdefABCDEF" for ch in s):
            raise self.err("incomplete escape", pos)
        self.i += k
        return int(s, 16)

    def parse_escape(self, in_class: bool):
        """Returns a set node (class escapes, literals) or an anchor node."""
        pos = self.i
        self.i += 1
        if self.i >= self.n:
            raise self.err("bad escape (end of pattern)", pos)
        c = self.p[self.i]
        self.i += 1
        if c in "dDwWsS":
            return ("set", self.shorthand(c))
        if c == "b":
            if in_class:
                return self.mkset([(8, 8)])
            raise self.err("word boundary \\b is not supported", pos)
        if c == "B":
            raise self.err("non-word boundary \\B is not supported", pos)
        simple = {"n": 10, "r": 13, "t": 9, "f": 12, "v": 11}
        if c in simple:
            return self.mkset([(simple[c], simple[c])])
        if c.isdigit() and c.isascii():
            return self.numeric_escape(c, pos, in_class)
        if self.ecma:
            return self.ecma_escape(c, pos, in_class)
        return self.python_escape(c, pos, in_class)

    def numeric_escape(self, c: str, pos: int, in_class: bool):
        nxt_digit = self.peek().isdigit() and self.peek().isascii()
        if self.ecma:
            if c == "0" and not nxt_digit:
                return self.mkset([(0, 0)])
            if self.unicode_mode or not in_class:
                raise self.err("backreference is not supported", pos)
            if c in "89":
                return self.mkset([(ord(c), ord(c))])
            return self._octal(c)  # Annex B legacy octal in a class
        # python
        if c == "0":
            return self._octal(c)
        if (c in "01234567" and self.peek() and self.peek() in "01234567"
                and self.peek(1) and self.peek(1) in "01234567"):
            v = int(c + self.p[self.i:self.i + 2], 8)
            self.i += 2
            if v > 0o377:
                raise self.err("octal escape value outside of range 0-0o377", pos)
            return self.mkset([(v, v)])
        if in_class:
            raise self.err("bad escape (backreference in class)", pos)
        raise self.err("backreference is not supported", pos)

    def _octal(self, first: str):
        s = first
        while len(s) < 3 and self.peek() in tuple("01234567") and self.peek():
            s += self.p[self.i]
            self.i += 1
        v = int(s, 8)
        return self.mkset([(v, v)])

    def python_escape(self, c: str, pos: int, in_class: bool):
        if c == "a":
            return self.mkset([(7, 7)])
        if c == "x":
            v = self.hexnum(2, pos)
            return self.mkset([(v, v)])
        if c == "u":
            v = self.hexnum(4, pos)
            return self.mkset([(v, v)])
        if c == "U":
            v = self.hexnum(8, pos)
            if v > cs.MAX_CP:
                raise self.err("bad escape \\U (code point out of range)", pos)
            return self.mkset([(v, v)])
        if c == "N":
            import unicodedata

            if self.peek() != "{":
                raise self.err("missing {", pos)
            end = self.p.find("}", self.i)
            if end < 0:
                raise self.err("missing }", pos)
            name = self.p[self.i + 1:end]
            try:
                ch = unicodedata.lookup(name)
            except KeyError:
                raise self.err(f"undefined character name {name!r}", pos) from None
            self.i = end + 1
            return self.mkset([(ord(ch), ord(ch))])
        if c == "A" and not in_class:
            return ("bol", pos, "strict")
        if c == "Z" and not in_class:
            return ("eol", pos, "strict")
        if c in ("p", "P"):
            raise self.err("unicode property escape \\p is not supported by Python re", pos)
        if c.isascii() and c.isalnum():
            raise self.err(f"bad escape \\{c}", pos)
        return self.mkset([(ord(c), ord(c))])

    def ecma_escape(self, c: str, pos: int, in_class: bool):
        if c == "x":
            save = self.i
            try:
                v = self.hexnum(2, pos)
            except RegexError:
                if self.unicode_mode:
                    raise
                self.i = save
                v = ord("x")
            return self.mkset([(v, v)])
        if c == "u":
            if self.peek() == "{" and self.unicode_mode:
                end = self.p.find("}", self.i)
                digits = self.p[self.i + 1:end] if end > 0 else ""
                if not digits or any(ch not in "0123456789abcdefABCDEF" for ch in digits):
                    raise self.err("invalid unicode escape", pos)
                v = int(digits, 16)
                if v > cs.MAX_CP:
                    raise self.err("unicode escape out of range", pos)
                self.i = end + 1
                return self.mkset([(v, v)])
            save = self.i
            try:
                v = self.hexnum(4, pos)
            except RegexError:
                if self.unicode_mode:
                    raise
                self.i = save
                return self.mkset([(ord("u"), ord("u"))])
            if 0xD800 <= v <= 0xDBFF and self.p.startswith("\\u", self.i):
                save = self.i
                self.i += 2
                try:
                    w = self.hexnum(4, pos)
                except RegexError:
                    w = -1
                if 0xDC00 <= w <= 0xDFFF:
                    v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00)
                else:
                    self.i = save
            return self.mkset([(v, v)])
        if c == "c":
            ch = self.peek()
            if ch and ch.isascii() and ch.isalpha():
                self.i += 1
                v = ord(ch) % 32
                return self.mkset([(v, v)])
            if self.unicode_mode:
                raise self.err("invalid \\c escape", pos)
            self.i -= 1  # Annex B: the backslash is literal
            return self.mkset([(0x5C, 0x5C)])
        if c in ("p", "P"):
            if not self.unicode_mode:
                return self.mkset([(ord(c), ord(c))])
            if self.peek() != "{":
                raise self.err("invalid property name", pos)
            end = self.p.find("}", self.i)
            if end < 0:
                raise self.err("invalid property name", pos)
            name = self.p[self.i + 1:end]
            r = cs.unicode_property(name)
            if r is None:
                raise self.err(f"unicode property \\p{{{name}}} is not supported", pos)
            self.i = end + 1
            if c == "P":
                r = cs.complement(r)
            return ("set", r) if "i" not in self.flags else self.mkset(r)
        if c == "k":
            if self.unicode_mode or "(?<" in self.p:
                raise self.err("backreference \\k is not supported", pos)
            return self.mkset([(ord("k"), ord("k"))])
        if c == "-" and in_class:
            return self.mkset([(0x2D, 0x2D)])
        if c.isascii() and c.isalnum():
            if self.unicode_mode:
                raise self.err(f"invalid escape \\{c}", pos)
            return self.mkset([(ord(c), ord(c))])
        return self.mkset([(ord(c), ord(c))])

    # -- classes
    def class_item(self):
        """One class atom: ('cp', int) or ('set', ranges); no case folding, surrogates kept."""
        c = self.p[self.i]
        if c == "\\":
            pos = self.i
            self.raw = True
            try:
                node = self.parse_escape(in_class=True)
            finally:
                self.raw = False
            if node[0] != "set":
                raise self.err("bad escape in class", pos)
            r = node[1]
            if len(r) == 1 and r[0][0] == r[0][1] and self.p[pos + 1] not in "dDwWsSpP":
                return ("cp", r[0][0])
            return ("set", r)
        self.i += 1
        cp = ord(c)
        if self.ecma and 0xD800 <= cp <= 0xDBFF and self.i < self.n and 0xDC00 <= ord(self.p[self.i]) <= 0xDFFF:
            cp = 0x10000 + ((cp - 0xD800) << 10) + (ord(self.p[self.i]) - 0xDC00)
            self.i += 1
        return ("cp", cp)

    def parse_class(self, pos: int):
        negate = False
        if self.peek() == "^":
            negate = True
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            if self.i >= self.n:
                raise self.err("unterminated character set", pos)
            c = self.p[self.i]
            if c == "]" and not (first and not self.ecma):
                self.i += 1
                break
            if c == "[" and not self.ecma and self.peek(1) in (":", "=", "."):
                pass  # Python treats these literally (with a FutureWarning)
            first = False
            ipos = self.i
            item = self.class_item()
            # range?
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                item2 = self.class_item()
                lo = item[1] if item[0] == "cp" else None
                hi = item2[1] if item2[0] == "cp" else None
                if lo is None or hi is None:
                    if self.ecma and not self.unicode_mode:
                        # Annex B: class escape in a range is a union with '-'
                        ranges.extend(self._item_ranges(item))
                        ranges.append((0x2D, 0x2D))
                        ranges.extend(self._item_ranges(item2))
                        continue
                    raise self.err("bad character range", ipos)
                if lo > hi:
                    raise self.err("bad character range (reversed)", ipos)
                ranges.append((lo, hi))
                continue
            ranges.extend(self._item_ranges(item))
        r = cs.normalize(ranges)
        if "i" in self.flags:
            r = cs.case_close(r, ascii_only="a" in self.flags)
        if negate:
            r = cs.complement(r)
        return ("set", cs.valid(r))

    @staticmethod
    def _item_ranges(item):
        if item[0] == "cp":
            return [(item[1], item[1])]
        return list(item[1])


def parse(pattern: str, flags: str = "", dialect: str = "python"):
    """Parse to the AST (exposed for tests and tools)."""
    return _Parser(pattern, flags, dialect).parse()


# ---------------------------------------------------------------------------
# anchors


def _nodes(node):
    """Every node of a regex AST, depth first."""
    yield node
    kind = node[0]
    if kind in ("cat", "alt"):
        for x in node[1]:
            yield from _nodes(x)
    elif kind in ("rep", "group"):
        yield from _nodes(node[1])


def _check_no_anchor(node, pattern: str) -> None:
    for n in _nodes(node):
        if n[0] in ("bol", "eol"):
            what = "^" if n[0] == "bol" else "$"
            raise _err(f"anchor {what} is only supported at the start/end of the pattern", n[1], pattern)


def _split_anchors(ast, pattern: str):
    """Top-level alternatives as (bol_kind|None, body, eol_kind|None)."""
    alts = ast[1] if ast[0] == "alt" else [ast]
    out = []
    for alt in alts:
        items = list(alt[1]) if alt[0] == "cat" else [alt]
        bol = eol = None
        while items and items[0][0] == "bol":
            k = items.pop(0)[2]
            bol = k if bol is None or bol == "ml" else bol
        while items and items[-1][0] == "eol":
            k = items.pop()[2]
            eol = k if eol is None else ("strict" if "strict" in (k, eol) else eol)
        body = ("cat", items)
        _check_no_anchor(body, pattern)
        out.append((bol, body, eol))
    return out


# ---------------------------------------------------------------------------
# AST -> NFA over atoms


def _collect_sets(node, acc: list) -> None:
    acc.extend(n[1] for n in _nodes(node) if n[0] == "set")


def _bounds_for(sets) -> np.ndarray:
    pts = set(_BASE_BOUNDS)
    for s in sets:
        for lo, hi in s:
            pts.add(lo)
            pts.add(hi + 1)
    return np.array(sorted(pts), dtype=np.int64)


def _mask(bounds: np.ndarray, ranges) -> np.ndarray:
    k = len(bounds) - 1
    delta = np.zeros(k + 1, dtype=np.int32)
    if ranges:
        r = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        a = np.searchsorted(bounds, r[:, 0])
        b = np.searchsorted(bounds, r[:, 1] + 1)
        np.add.at(delta, a, 1)
        np.add.at(delta, b, -1)
    return np.cumsum(delta[:k]) > 0


def _build(nfa: ops.Nfa, node, bounds, mask_cache: dict):
    kind = node[0]
    if kind == "set":
        mid = mask_cache.get(node[1])
        if mid is None:
            mid = nfa.mask_id(_mask(bounds, node[1]))
            mask_cache[node[1]] = mid
        a, b = nfa.state(), nfa.state()
        if node[1]:
            nfa.add_edge(a, mid, b)
        return a, b
    if kind == "cat":
        return ops.nfa_concat(nfa, [_build(nfa, x, bounds, mask_cache) for x in node[1]])
    if kind == "alt":
        a, b = nfa.state(), nfa.state()
        for x in node[1]:
            s, e = _build(nfa, x, bounds, mask_cache)
            nfa.add_eps(a, s)
            nfa.add_eps(e, b)
        return a, b
    if kind == "group":
        return _build(nfa, node[1], bounds, mask_cache)
    if kind == "rep":
        return ops.nfa_repeat(nfa, lambda: _build(nfa, node[1], bounds, mask_cache), node[2], node[3])
    if kind in ("bol", "eol"):  # only strict anchors get here (see regex_to_char_dfa)
        a, b = nfa.state(), nfa.state()
        nfa.add_anchor(a, kind == "bol", b)
        return a, b
    raise AssertionError(kind)


def _anchor_kinds(node) -> set:
    return {n[2] for n in _nodes(node) if n[0] in ("bol", "eol")}


_SIGMA_STAR = ("rep", ("set", cs.ALL), 0, None, "q")


def _anchor_wrap(bol, body, eol, dialect: str, search: bool):
    if not search:
        return body
    lt = cs.ECMA_LINE_TERMINATORS if dialect == "ecma" else ((10, 10),)
    if bol is None:
        pre = _SIGMA_STAR
    elif bol == "ml":
        pre = ("rep", ("cat", [_SIGMA_STAR, ("set", lt)]), 0, 1, "q")
    else:
        pre = _EMPTY_NODE
    if eol is None:
        post = _SIGMA_STAR
    elif eol == "ml":
        post = ("rep", ("cat", [("set", lt), _SIGMA_STAR]), 0, 1, "q")
    elif eol == "py":
        post = ("rep", ("set", ((10, 10),)), 0, 1, "q")
    else:
        post = _EMPTY_NODE
    return ("cat", [pre, body, post])


# ---------------------------------------------------------------------------
# CharDFA


class CharDFA:
    """A minimal, canonical DFA over Unicode scalar values.

    ``bounds`` (int64 ``[k+1]``) splits 0..0x10FFFF into atoms
    ``[bounds[i], bounds[i+1])``; ``trans`` (int32 ``[n, k]``, -1 dead) gives
    the transitions per atom; ``accepting`` (bool ``[n]``); start state 0.
    Surrogates never have transitions. Instances are immutable.
    """

    __slots__ = ("bounds", "trans", "accepting", "_key")

    def __init__(self, bounds: np.ndarray, trans: np.ndarray, accepting: np.ndarray, *, normalized: bool = False):
        bounds = np.asarray(bounds, dtype=np.int64)
        trans = np.asarray(trans, dtype=np.int32)
        accepting = np.asarray(accepting, dtype=bool)
        if not normalized:
            trans, accepting = ops.minimize(trans, accepting, 0)
            bounds, trans = _merge_columns(bounds, trans)
        self.bounds = bounds
        self.trans = trans
        self.accepting = accepting
        self._key = None
        for a in (self.bounds, self.trans, self.accepting):
            a.setflags(write=False)

    # -- basics
    @property
    def n_states(self) -> int:
        return int(self.trans.shape[0])

    def is_empty(self) -> bool:
        return self.n_states == 0

    @property
    def accepts_empty(self) -> bool:
        return bool(self.n_states and self.accepting[0])

    def key(self) -> bytes:
        if self._key is None:
            import hashlib

            h = hashlib.blake2b(digest_size=16)
            for a in (self.bounds, self.trans, self.accepting):
                h.update(np.int64(a.size).tobytes())
                h.update(a.tobytes())
            self._key = h.digest()
        return self._key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharDFA) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return f"CharDFA(states={self.n_states}, atoms={len(self.bounds) - 1})"

    def transitions(self, state: int) -> list[tuple[int, int, int]]:
        """Disjoint sorted ``(lo, hi, target)`` code-point ranges of one state."""
        out: list[tuple[int, int, int]] = []
        row = self.trans[state].tolist()
        b = self.bounds.tolist()
        for i, t in enumerate(row):
            if t < 0:
                continue
            lo, hi = b[i], b[i + 1] - 1
            if out and out[-1][2] == t and out[-1][1] + 1 == lo:
                out[-1] = (out[-1][0], hi, t)
            else:
                out.append((lo, hi, t))
        return out

    def accepts(self, text: str) -> bool:
        if self.is_empty():
            return False
        q = 0
        b = self.bounds
        for ch in text:
            a = int(np.searchsorted(b, ord(ch), side="right")) - 1
            q = int(self.trans[q, a])
            if q < 0:
                return False
        return bool(self.accepting[q])

    def min_length(self) -> int | None:
        """Length (in code points) of the shortest accepted string; None if empty."""
        if self.is_empty():
            return None
        dist = {0: 0}
        frontier = [0]
        rows = self.trans.tolist()
        d = 0
        while frontier:
            for q in frontier:
                if self.accepting[q]:
                    return d
            d += 1
            nxt = []
            for q in frontier:
                for r in set(rows[q]):
                    if r >= 0 and r not in dist:
                        dist[r] = d
                        nxt.append(r)
            frontier = nxt
        return None

    def max_length(self) -> int | None:
        """Length of the longest accepted string; None if unbounded (or empty language)."""
        if self.is_empty():
            return None
        rows = [sorted({r for r in row if r >= 0}) for row in self.trans.tolist()]
        n = self.n_states
        # longest path in a DAG (trimmed automaton: any cycle means infinite)
        color = [0] * n
        best = [0] * n
        stack = [(0, 0)]
        while stack:
            q, i = stack.pop()
            if i == 0:
                if color[q] == 2:
                    continue
                color[q] = 1
            if i < len(rows[q]):
                stack.append((q, i + 1))
                r = rows[q][i]
                if color[r] == 1:
                    return None
                if color[r] == 0:
                    stack.append((r, 0))
            else:
                color[q] = 2
                best[q] = max([best[r] + 1 for r in rows[q]], default=0)
        return best[0]

    # -- constructors
    @staticmethod
    def empty() -> "CharDFA":
        return CharDFA(np.array([0, cs.MAX_CP + 1]), np.zeros((0, 1), dtype=np.int32), np.zeros(0, dtype=bool))

    @staticmethod
    def epsilon() -> "CharDFA":
        return CharDFA.literal("")

    @staticmethod
    def literal(s: str) -> "CharDFA":
        return CharDFA.sequence([((ord(c), ord(c)),) for c in s])

    @staticmethod
    def sequence(sets) -> "CharDFA":
        """Strings of ``len(sets)`` code points, the i-th from ``sets[i]`` (range sets)."""
        sets = [cs.valid(cs.normalize(s)) for s in sets]
        bounds = _bounds_for(sets)
        n = len(sets) + 1
        T = np.full((n, len(bounds) - 1), DEAD, dtype=np.int32)
        for i, s in enumerate(sets):
            T[i, _mask(bounds, s)] = i + 1
        acc = np.zeros(n, dtype=bool)
        acc[-1] = True
        return CharDFA(bounds, T, acc)

    @staticmethod
    def from_codepoints(ranges) -> "CharDFA":
        """Single code points from ``ranges`` (pairs ``(lo, hi)`` inclusive, or ints)."""
        rs = [(r, r) if isinstance(r, int) else (r[0], r[1]) for r in ranges]
        return CharDFA.sequence([rs])

    @staticmethod
    def any_char() -> "CharDFA":
        return CharDFA.sequence([cs.ALL])

    @staticmethod
    def any_string() -> "CharDFA":
        return CharDFA.length_range_dfa(0, None)

    @staticmethod
    def length_range_dfa(lo: int, hi: int | None = None) -> "CharDFA":
        """All strings of ``lo`` to ``hi`` code points (``hi=None``: unbounded)."""
        if lo < 0 or (hi is not None and hi < lo):
            return CharDFA.empty()
        bounds = np.array(_BASE_BOUNDS, dtype=np.int64)
        valid_cols = np.array([True, False, True])
        n = (hi + 1) if hi is not None else lo + 1
        T = np.full((n, 3), DEAD, dtype=np.int32)
        nxt = np.arange(1, n + 1, dtype=np.int32)
        if hi is None:
            nxt[-1] = n - 1
        else:
            nxt[-1] = DEAD
        T[:, valid_cols] = nxt[:, None]
        acc = np.arange(n) >= lo
        return CharDFA(bounds, T, acc)

    # -- algebra
    def _aligned(self, *others: "CharDFA"):
        allb = np.unique(np.concatenate([self.bounds] + [o.bounds for o in others] + [np.array(_BASE_BOUNDS)]))
        return allb, [x._refine(allb) for x in (self, *others)]

    def _refine(self, allb: np.ndarray) -> ops.Table:
        idx = np.searchsorted(self.bounds, allb[:-1], side="right") - 1
        if self.n_states == 0:
            return np.zeros((0, len(allb) - 1), dtype=np.int32), self.accepting
        return np.ascontiguousarray(self.trans[:, idx]), self.accepting

    def _binop(self, other: "CharDFA", op: str, max_states: int | None) -> "CharDFA":
        b, (ta, tb) = self._aligned(other)
        T, A = ops.product(ta, tb, op, max_states)
        return CharDFA(b, T, A)

    def union(self, *others: "CharDFA", max_states: int | None = ops.DEFAULT_MAX_STATES) -> "CharDFA":
        res = self
        for o in others:
            res = res._binop(o, "or", max_states)
        return res

    def intersection(self, *others: "CharDFA", max_states: int | None = ops.DEFAULT_MAX_STATES) -> "CharDFA":
        res = self
        for o in others:
            res = res._binop(o, "and", max_states)
        return res

    def difference(self, other: "CharDFA", max_states: int | None = ops.DEFAULT_MAX_STATES) -> "CharDFA":
        return self._binop(other, "diff", max_states)

    def complement(self) -> "CharDFA":
        """All code-point strings not in the language."""
        b, (t,) = self._aligned()
        valid_cols = ~((b[:-1] >= cs.SURROGATE_LO) & (b[:-1] <= cs.SURROGATE_HI))
        T, A = ops.complete_complement(t, valid_cols)
        return CharDFA(b, T, A)

    def concat(self, *others: "CharDFA", max_states: int | None = ops.DEFAULT_MAX_STATES) -> "CharDFA":
        b, tables = self._aligned(*others)
        if any(t[0].shape[0] == 0 for t in tables):
            return CharDFA.empty()
        T, A = ops.t_concat(tables, len(b) - 1, max_states)
        return CharDFA(b, T, A, normalized=False)

    def repeat(self, lo: int, hi: int | None = None, max_states: int | None = ops.DEFAULT_MAX_STATES) -> "CharDFA":
        if lo < 0 or (hi is not None and hi < lo):
            raise ValueError(f"bad repeat bounds {lo}, {hi}")
        if self.is_empty():
            return CharDFA.epsilon() if lo == 0 else CharDFA.empty()
        b, (t,) = self._aligned()
        T, A = ops.t_repeat(t, lo, hi, len(b) - 1, max_states)
        return CharDFA(b, T, A)

    def star(self) -> "CharDFA":
        return self.repeat(0, None)

    def plus(self) -> "CharDFA":
        return self.repeat(1, None)

    def optional(self) -> "CharDFA":
        return self.repeat(0, 1)

    __or__ = union
    __and__ = intersection
    __sub__ = difference

    def __invert__(self) -> "CharDFA":
        return self.complement()

    def __add__(self, other: "CharDFA") -> "CharDFA":
        return self.concat(other)

    # -- encodings
    def to_byte_dfa(self, encoding: str = "utf8", max_states: int | None = ops.DEFAULT_MAX_STATES) -> ByteDFA:
        """Encode as bytes: ``"utf8"`` or ``"json"`` (JSON string content, no quotes)."""
        if encoding not in ("utf8", "json"):
            raise ValueError(f"unknown encoding {encoding!r}")
        return _encode(self, encoding, max_states)


def _merge_columns(bounds: np.ndarray, trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge adjacent atoms with identical columns (keeping the surrogate boundaries)."""
    k = trans.shape[1]
    if k <= 1:
        return bounds, trans
    if trans.shape[0] == 0:
        return np.array([0, cs.MAX_CP + 1], dtype=np.int64), np.zeros((0, 1), dtype=np.int32)
    same = (trans[:, 1:] == trans[:, :-1]).all(axis=0)
    keep = np.concatenate([[True], ~same])
    return np.concatenate([bounds[:-1][keep], bounds[-1:]]), np.ascontiguousarray(trans[:, keep])


# ---------------------------------------------------------------------------
# encoding to bytes


@lru_cache(maxsize=64)
def _trie(bounds_key: bytes, encoding: str):
    bounds = np.frombuffer(bounds_key, dtype=np.int64).tolist()
    tb = cs.TrieBuilder(bounds)
    root = tb.utf8_lead_runs() if encoding == "utf8" else tb.json_root_runs()
    return tb.nodes, root


def _encode(cd: CharDFA, encoding: str, max_states: int | None) -> ByteDFA:
    """Instantiate the decoder trie for every char state, hash-consing intermediate states.

    The char DFA is minimal and the encodings are injective, so hash-consing on
    (byte runs -> child) yields the minimal byte DFA directly; only canonical
    renumbering is left to do.
    """
    n = cd.n_states
    if n == 0:
        return ByteDFA.empty()
    bounds = np.unique(np.concatenate([cd.bounds, np.array(_BASE_BOUNDS, dtype=np.int64)]))
    R = cd._refine(bounds)[0]
    k = R.shape[1]
    nodes, root = _trie(bounds.tobytes(), encoding)
    # Z[p, c]: byte-state id reached from char state p via atom c (c < k) or trie node c - k
    Z = np.full((n, k + len(nodes)), DEAD, dtype=np.int64)
    Z[:, :k] = R
    index: dict[tuple, int] = {}
    runs_of: list[tuple] = []
    next_id = n
    vector = n > 16
    Zl = None if vector else Z.tolist()
    for nid, node in enumerate(nodes):
        cols = [c[1] if c[0] == "a" else k + c[1] for _, _, c in node]
        if vector:
            M = Z[:, cols]
            live = (M >= 0).any(axis=1)
            if not live.any():
                continue
            uniq, inv = np.unique(M[live], axis=0, return_inverse=True)
            rows_iter = uniq.tolist()
        else:
            rows_iter = [[Zl[p][c] for c in cols] for p in range(n)]
        ids = []
        for row in rows_iter:
            out = []
            for (lo, hi, _), t in zip(node, row):
                if t < 0:
                    continue
                if out and out[-1][2] == t and out[-1][1] + 1 == lo:
                    out[-1] = (out[-1][0], hi, t)
                else:
                    out.append((lo, hi, t))
            if not out:
                ids.append(DEAD)
                continue
            key = tuple(out)
            sid = index.get(key)
            if sid is None:
                sid = next_id
                next_id += 1
                index[key] = sid
                runs_of.append(key)
                if max_states is not None and next_id > max_states:
                    raise CompileLimitError(f"byte DFA exceeds max_states={max_states} ({next_id} states)")
            ids.append(sid)
        if vector:
            Z[np.flatnonzero(live), k + nid] = np.asarray(ids, dtype=np.int64)[inv.reshape(-1)]
        else:
            for p in range(n):
                Zl[p][k + nid] = ids[p]
    if not vector:
        Z = np.asarray(Zl, dtype=np.int64).reshape(n, k + len(nodes))
    col_of_byte = np.full(256, -1, dtype=np.int64)
    cuts = {0, 256}
    for lo, hi, c in root:
        col_of_byte[lo:hi + 1] = c[1] if c[0] == "a" else k + c[1]
        cuts.add(lo)
        cuts.add(hi + 1)
    for node in nodes:
        for lo, hi, _ in node:
            cuts.add(lo)
            cuts.add(hi + 1)
    starts = np.array(sorted(cuts)[:-1], dtype=np.int64)
    cls = np.searchsorted(starts, np.arange(256), side="right") - 1
    kk = len(starts)
    T = np.full((next_id, kk), DEAD, dtype=np.int32)
    rc = col_of_byte[starts]
    has = rc >= 0
    T[:n, has] = Z[:, rc[has]]
    cl = cls.tolist()
    for j, runs in enumerate(runs_of):
        row = T[n + j]
        for lo, hi, t in runs:
            row[cl[lo]:cl[hi] + 1] = t
    acc = np.zeros(next_id, dtype=bool)
    acc[:n] = cd.accepting
    cls2, reps2 = ops._classes_of(T)
    T, acc = ops.canonical(np.ascontiguousarray(T[:, reps2]), acc, 0)
    return _make(np.ascontiguousarray(T[:, cls2[cls]]), acc)


def json_string_dfa(cd: CharDFA, max_states: int | None = ops.DEFAULT_MAX_STATES) -> ByteDFA:
    """``"`` + JSON-escaped content of a string in the language + ``"``."""
    content = cd.to_byte_dfa("json", max_states=max_states)
    q = ByteDFA.literal(b'"')
    return ops.concat(q, content, q, max_states=max_states)


# ---------------------------------------------------------------------------
# entry points


def regex_to_char_dfa(pattern: str, flags: str = "", dialect: str = "python", search: bool = False,
                      max_states: int | None = 100_000) -> CharDFA:
    """The language of ``pattern`` over code points (full match, or contains-a-match with ``search``)."""
    ast = _Parser(pattern, flags, dialect).parse()
    try:
        parts = _split_anchors(ast, pattern)
    except RegexError:
        # An anchor inside the pattern, e.g. ^(a$|b): exact as a zero-width assertion when it
        # means the very start or end of the input (not a line boundary).
        if _anchor_kinds(ast) != {"strict"}:
            raise
        parts = None
    if parts is None:
        full = ("cat", [_SIGMA_STAR, ast, _SIGMA_STAR]) if search else ast
    else:
        bodies = [_anchor_wrap(bol, body, eol, dialect, search) for bol, body, eol in parts]
        full = bodies[0] if len(bodies) == 1 else ("alt", bodies)
    sets: list = []
    _collect_sets(full, sets)
    bounds = _bounds_for(sets)
    nfa = ops.Nfa(len(bounds) - 1, max_states=None if max_states is None else 20 * max_states + 1000)
    a, b = _build(nfa, full, bounds, {})
    T, A = nfa.determinize(a, b, max_states)
    return CharDFA(bounds, T, A)


def compile_regex(pattern: str, *, flags: str = "", dialect: str = "python", search: bool = False,
                  max_states: int = 100_000) -> ByteDFA:
    """The language of ``pattern`` over UTF-8 bytes, as a minimal :class:`ByteDFA`."""
    return _compile_cached(pattern, flags, dialect, search, max_states)


@lru_cache(maxsize=512)
def _compile_cached(pattern, flags, dialect, search, max_states) -> ByteDFA:
    cd = regex_to_char_dfa(pattern, flags, dialect, search, max_states)
    return cd.to_byte_dfa("utf8", max_states=max_states)


length_range_dfa = CharDFA.length_range_dfa

__all__ = [
    "CharDFA",
    "compile_regex",
    "regex_to_char_dfa",
    "json_string_dfa",
    "length_range_dfa",
    "parse",
]
