"""Code-point range sets, Unicode class tables, case folding and UTF-8 / JSON decoder tries.

A *range set* is a tuple of disjoint, sorted, non-adjacent inclusive ``(lo, hi)``
code-point pairs. Every set handed to the automaton builders excludes the
surrogates D800-DFFF: they can never appear in valid UTF-8.

The *decoder tries* describe how byte strings decode to code points, in terms
of an *atom partition* of the code-point space (``bounds``: atom ``i`` is
``[bounds[i], bounds[i+1])``). A trie node is a tuple of runs
``(byte_lo, byte_hi, child)`` where ``child`` is ``("a", atom)`` (the byte
completes a code point of that atom) or ``("n", node_id)``. Nodes are
hash-consed, so equal sub-structures are shared; the byte automaton of a
char-level DFA is obtained by instantiating the trie for each char state
(see :meth:`corral.automaton.regex.CharDFA.to_byte_dfa`).
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from functools import lru_cache

MAX_CP = 0x10FFFF
SURROGATE_LO = 0xD800
SURROGATE_HI = 0xDFFF

RangeSet = tuple  # tuple[tuple[int, int], ...]

EMPTY: RangeSet = ()
ALL: RangeSet = ((0, SURROGATE_LO - 1), (SURROGATE_HI + 1, MAX_CP))


# ---------------------------------------------------------------------------
# range-set algebra


def normalize(ranges) -> RangeSet:
    """Sort, merge overlapping/adjacent ranges, clip to 0..MAX_CP."""
    rs = sorted((max(0, int(lo)), min(MAX_CP, int(hi))) for lo, hi in ranges)
    out: list[list[int]] = []
    for lo, hi in rs:
        if lo > hi:
            continue
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1][1] = hi
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


def union(*sets: RangeSet) -> RangeSet:
    return normalize([r for s in sets for r in s])


def complement_all(s: RangeSet) -> RangeSet:
    """Complement with respect to 0..MAX_CP (surrogates included)."""
    out = []
    nxt = 0
    for lo, hi in s:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CP:
        out.append((nxt, MAX_CP))
    return tuple(out)


def intersect(a: RangeSet, b: RangeSet) -> RangeSet:
    out = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return normalize(out)


def difference(a: RangeSet, b: RangeSet) -> RangeSet:
    return intersect(a, complement_all(b))


def complement(s: RangeSet) -> RangeSet:
    """Complement with respect to the valid scalar values (no surrogates)."""
    return intersect(complement_all(s), ALL)


def valid(s: RangeSet) -> RangeSet:
    """Drop surrogates."""
    return intersect(s, ALL)


def contains(s: RangeSet, cp: int) -> bool:
    i = bisect.bisect_right(s, (cp, MAX_CP + 1)) - 1
    return i >= 0 and s[i][0] <= cp <= s[i][1]


def from_chars(chars) -> RangeSet:
    return normalize((ord(c), ord(c)) if isinstance(c, str) else (c, c) for c in chars)


def size(s: RangeSet) -> int:
    return sum(hi - lo + 1 for lo, hi in s)


# ---------------------------------------------------------------------------
# Unicode tables (computed from the running Python so they agree with ``re``)


@lru_cache(maxsize=1)
def _all_cp_string() -> str:
    import numpy as np

    return np.arange(MAX_CP + 1, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")


def _runs_of(regex: str) -> RangeSet:
    s = _all_cp_string()
    return valid(tuple((m.start(), m.end() - 1) for m in re.finditer(regex, s)))


@lru_cache(maxsize=None)
def python_class(name: str, ascii_only: bool = False) -> RangeSet:
    """``d``, ``w`` or ``s`` exactly as Python's ``re`` defines them (str patterns)."""
    if ascii_only:
        return {
            "d": ((0x30, 0x39),),
            "w": normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)]),
            "s": normalize([(0x09, 0x0D), (0x20, 0x20)]),
        }[name]
    return _runs_of("\\" + name + "+")


ECMA_D: RangeSet = ((0x30, 0x39),)
ECMA_W: RangeSet = normalize([(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)])
ECMA_S: RangeSet = normalize(
    [(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A),
     (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)]
)
ECMA_LINE_TERMINATORS: RangeSet = normalize([(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)])


@lru_cache(maxsize=1)
def _category_table() -> dict[str, RangeSet]:
    s = _all_cp_string()
    cats = list(map(unicodedata.category, s))
    runs: dict[str, list[tuple[int, int]]] = {}
    start = 0
    for i in range(1, len(cats) + 1):
        if i == len(cats) or cats[i] != cats[start]:
            runs.setdefault(cats[start], []).append((start, i - 1))
            start = i
    return {k: valid(normalize(v)) for k, v in runs.items()}


_CATEGORY_ALIASES = {
    "letter": "L", "cased_letter": "LC", "uppercase_letter": "Lu", "lowercase_letter": "Ll",
    "titlecase_letter": "Lt", "modifier_letter": "Lm", "other_letter": "Lo", "mark": "M",
    "combining_mark": "M", "nonspacing_mark": "Mn", "spacing_mark": "Mc", "enclosing_mark": "Me",
    "number": "N", "decimal_number": "Nd", "digit": "Nd", "letter_number": "Nl", "other_number": "No",
    "punctuation": "P", "punct": "P", "connector_punctuation": "Pc", "dash_punctuation": "Pd",
    "open_punctuation": "Ps", "close_punctuation": "Pe", "initial_punctuation": "Pi",
    "final_punctuation": "Pf", "other_punctuation": "Po", "symbol": "S", "math_symbol": "Sm",
    "currency_symbol": "Sc", "modifier_symbol": "Sk", "other_symbol": "So", "separator": "Z",
    "space_separator": "Zs", "line_separator": "Zl", "paragraph_separator": "Zp", "other": "C",
    "control": "Cc", "cntrl": "Cc", "format": "Cf", "surrogate": "Cs", "private_use": "Co",
    "unassigned": "Cn",
}


def unicode_property(name: str) -> RangeSet | None:
    """A general category (``L``, ``Lu``, ``Letter``, ``General_Category=Lu``, ...) or None."""
    if "=" in name:
        key, _, val = name.partition("=")
        if key not in ("General_Category", "gc"):
            return None
        name = val
    table = _category_table()
    if name in ("Any",):
        return ALL
    if name in ("ASCII",):
        return ((0, 0x7F),)
    if name in ("Assigned",):
        return complement(table.get("Cn", EMPTY))
    cat = _CATEGORY_ALIASES.get(name.lower(), name)
    if cat == "LC":
        return union(table.get("Lu", EMPTY), table.get("Ll", EMPTY), table.get("Lt", EMPTY))
    if len(cat) == 1 and cat.isupper():
        return union(*[v for k, v in table.items() if k[0] == cat])
    if len(cat) == 2 and cat in table:
        return table[cat]
    if len(cat) == 2 and cat[0].isupper() and cat[1].islower() and cat[0] in "LMNPSZC":
        return EMPTY if cat != "Cn" else table.get("Cn", EMPTY)
    return None


# ---------------------------------------------------------------------------
# case folding (simple, per code point; mirrors CPython's sre)


@lru_cache(maxsize=1)
def _case_classes() -> tuple[dict[int, int], dict[int, tuple[int, ...]]]:
    """Map every cased code point to a class representative, and each class to its members.

    Two code points are equivalent when their simple lowercase mappings are equal,
    or are listed together in ``re._casefix`` (e.g. ``s``/``ſ``, ``k``/KELVIN SIGN).
    """
    try:
        import _sre

        tolower = _sre.unicode_tolower
    except (ImportError, AttributeError):  # pragma: no cover - other interpreters

        def tolower(cp: int) -> int:
            lo = chr(cp).lower()
            return ord(lo) if len(lo) == 1 else cp

    try:
        from re._casefix import _EXTRA_CASES as extra  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        extra = {}
    lowers = list(map(tolower, range(MAX_CP + 1)))
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    def join(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    for cp, lo in enumerate(lowers):
        if lo != cp:
            join(cp, lo)
    for a, bs in extra.items():
        for b in bs:
            join(a, b)
    members: dict[int, list[int]] = {}
    for cp in list(parent):
        members.setdefault(find(cp), []).append(cp)
    rep: dict[int, int] = {}
    classes: dict[int, tuple[int, ...]] = {}
    for r, ms in members.items():
        ms = sorted(set(ms) | {r})
        for m in ms:
            rep[m] = r
        classes[r] = tuple(ms)
    return rep, classes


def case_close(s: RangeSet, ascii_only: bool = False) -> RangeSet:
    """Add every case variant of every member of ``s``."""
    if ascii_only:
        extra = []
        for lo, hi in s:
            a, b = max(lo, 0x41), min(hi, 0x5A)
            if a <= b:
                extra.append((a + 32, b + 32))
            a, b = max(lo, 0x61), min(hi, 0x7A)
            if a <= b:
                extra.append((a - 32, b - 32))
        return normalize(list(s) + extra)
    rep, classes = _case_classes()
    cased = _cased_sorted()
    extra = []
    for lo, hi in s:
        i = bisect.bisect_left(cased, lo)
        j = bisect.bisect_right(cased, hi)
        for cp in cased[i:j]:
            extra.extend((m, m) for m in classes[rep[cp]])
    return normalize(list(s) + extra) if extra else s


@lru_cache(maxsize=1)
def _cased_sorted() -> list[int]:
    rep, _ = _case_classes()
    return sorted(rep)


# ---------------------------------------------------------------------------
# UTF-8 helpers


def utf8_sequences(lo: int, hi: int) -> list[list[tuple[int, int]]]:
    """Split ``[lo, hi]`` into sequences of byte ranges, each matching exactly a sub-range.

    Surrogates are skipped. E.g. ``utf8_sequences(0, 0x7FF)`` ->
    ``[[(0x00, 0x7F)], [(0xC2, 0xDF), (0x80, 0xBF)]]``.
    """
    out: list[list[tuple[int, int]]] = []
    todo = list(intersect(((lo, hi),), ALL))
    while todo:
        a, b = todo.pop(0)
        split = False
        for limit in (0x7F, 0x7FF, 0xFFFF):
            if a <= limit < b:
                todo[0:0] = [(a, limit), (limit + 1, b)]
                split = True
                break
        if split:
            continue
        n = len(chr(a).encode("utf-8"))
        for i in range(1, n):
            m = (1 << (6 * i)) - 1
            if (a & ~m) != (b & ~m):
                if a & m:
                    todo[0:0] = [(a, a | m), ((a | m) + 1, b)]
                    split = True
                    break
                if (b & m) != m:
                    todo[0:0] = [(a, (b & ~m) - 1), (b & ~m, b)]
                    split = True
                    break
        if split:
            continue
        ea, eb = chr(a).encode("utf-8"), chr(b).encode("utf-8")
        out.append([(x, y) for x, y in zip(ea, eb)])
    return out


class TrieBuilder:
    """Hash-consed decoder trie over an atom partition (see module docstring)."""

    def __init__(self, bounds: list[int]):
        self.bounds = bounds
        self.nodes: list[tuple] = []
        self._index: dict[tuple, int] = {}
        self._memo: dict = {}

    def atom(self, cp: int) -> int:
        return bisect.bisect_right(self.bounds, cp) - 1

    def node(self, runs: list[tuple[int, int, tuple]]) -> tuple | None:
        """Hash-cons a node from runs (merging adjacent equal children, dropping dead)."""
        runs = sorted(r for r in runs if r[2] is not None)
        merged: list[tuple[int, int, tuple]] = []
        for lo, hi, ch in runs:
            if merged and merged[-1][2] == ch and merged[-1][1] + 1 == lo:
                merged[-1] = (merged[-1][0], hi, ch)
            else:
                merged.append((lo, hi, ch))
        if not merged:
            return None
        key = tuple(merged)
        nid = self._index.get(key)
        if nid is None:
            nid = len(self.nodes)
            self.nodes.append(key)
            self._index[key] = nid
        return ("n", nid)

    # -- UTF-8 ---------------------------------------------------------------

    def _uniform_cont(self, k: int, atom: int):
        if k == 0:
            return ("a", atom)
        key = ("u8u", k, atom)
        r = self._memo.get(key)
        if r is None:
            r = self.node([(0x80, 0xBF, self._uniform_cont(k - 1, atom))])
            self._memo[key] = r
        return r

    def _utf8_block(self, base: int, k: int, jlo: int = 0, jhi: int = 63):
        """Child for ``k`` remaining continuation bytes covering ``[base, base + 64**k)``."""
        key = ("u8", base, k, jlo, jhi)
        if key in self._memo:
            return self._memo[key]
        s = 64 ** (k - 1)
        bounds = self.bounds
        runs = []
        x = base + jlo * s
        end = base + (jhi + 1) * s - 1
        j = jlo
        while x <= end:
            i = self.atom(x)
            atom_end = min(bounds[i + 1] - 1, end)
            m = (atom_end - x + 1) // s
            if m >= 1:
                runs.append((0x80 + j, 0x80 + j + m - 1, self._uniform_cont(k - 1, i)))
                x += m * s
                j += m
            else:
                runs.append((0x80 + j, 0x80 + j, self._utf8_block(x, k - 1)))
                x += s
                j += 1
        r = self.node(runs)
        self._memo[key] = r
        return r

    def utf8_lead_runs(self, exclude_ascii: RangeSet = EMPTY) -> list[tuple[int, int, tuple]]:
        """Runs of the root (a char state): ASCII atoms and multi-byte lead bytes."""
        runs = []
        for b in range(0x80):
            if not contains(exclude_ascii, b):
                runs.append((b, b, ("a", self.atom(b))))
        for b in range(0xC2, 0xE0):
            runs.append((b, b, self._utf8_block((b & 0x1F) << 6, 1)))
        for b in range(0xE0, 0xF0):
            jlo = 32 if b == 0xE0 else 0  # no overlong forms
            runs.append((b, b, self._utf8_block((b & 0x0F) << 12, 2, jlo, 63)))
        for b in range(0xF0, 0xF5):
            jlo = 16 if b == 0xF0 else 0
            jhi = 15 if b == 0xF4 else 63
            runs.append((b, b, self._utf8_block((b & 0x07) << 18, 3, jlo, jhi)))
        return runs

    # -- JSON string content -------------------------------------------------

    @staticmethod
    def _hex_bytes(d: int) -> list[int]:
        return [0x30 + d] if d < 10 else [0x41 + d - 10, 0x61 + d - 10]

    def _hex_runs(self, children: list) -> list[tuple[int, int, tuple]]:
        runs = []
        for d, ch in enumerate(children):
            for b in self._hex_bytes(d):
                runs.append((b, b, ch))
        return runs

    def _uniform_hex(self, k: int, leaf):
        if k == 0 or leaf is None:
            return leaf
        key = ("hxu", k, leaf)
        r = self._memo.get(key)
        if r is None:
            r = self.node(self._hex_runs([self._uniform_hex(k - 1, leaf)] * 16))
            self._memo[key] = r
        return r

    def _leaf_range(self, vlo: int, vhi: int, low_base: int | None):
        """Uniform leaf for hex values ``vlo..vhi`` or ``False`` when not uniform."""
        if low_base is not None:  # second half of a surrogate pair
            if vhi < 0xDC00 or vlo > 0xDFFF:
                return None
            if vlo < 0xDC00 or vhi > 0xDFFF:
                return False
            a, b = low_base + vlo - 0xDC00, low_base + vhi - 0xDC00
            i = self.atom(a)
            return ("a", i) if self.atom(b) == i else False
        if vhi < 0xD800 or vlo > 0xDFFF:
            i = self.atom(vlo)
            return ("a", i) if self.atom(vhi) == i else False
        if vlo >= 0xDC00 and vhi <= 0xDFFF:
            return None  # lone low surrogate
        if vlo >= 0xD800 and vhi <= 0xDBFF:
            a = 0x10000 + ((vlo - 0xD800) << 10)
            b = 0x10000 + ((vhi - 0xD800) << 10) + 1023
            i = self.atom(a)
            if self.atom(b) == i:
                return self._low_node_uniform(i)
            if vlo == vhi:
                return self._low_node(a)
            return False
        return False

    def _low_node_uniform(self, atom: int):
        key = ("lowu", atom)
        r = self._memo.get(key)
        if r is None:
            hexes = self._hex_block(0, 4, atom_low=atom)
            r = self._u_prefix(hexes)
            self._memo[key] = r
        return r

    def _low_node(self, base: int):
        key = ("low", base)
        r = self._memo.get(key)
        if r is None:
            r = self._u_prefix(self._hex_block(0, 4, low_base=base))
            self._memo[key] = r
        return r

    def _u_prefix(self, hexes):
        if hexes is None:
            return None
        return self.node([(0x5C, 0x5C, self.node([(0x75, 0x75, hexes)]))])

    def _hex_block(self, base: int, k: int, low_base: int | None = None, atom_low: int | None = None):
        key = ("hx", base, k, low_base, atom_low)
        if key in self._memo:
            return self._memo[key]
        s = 16 ** (k - 1)
        children = []
        for d in range(16):
            vlo = base + d * s
            vhi = vlo + s - 1
            if atom_low is not None:
                leaf = ("a", atom_low) if (vhi >= 0xDC00 and vlo <= 0xDFFF) else None
                if leaf is not None and (vlo < 0xDC00 or vhi > 0xDFFF):
                    leaf = False
            else:
                leaf = self._leaf_range(vlo, vhi, low_base)
            if leaf is False:
                children.append(self._hex_block(vlo, k - 1, low_base, atom_low))
            else:
                children.append(self._uniform_hex(k - 1, leaf))
        r = self.node(self._hex_runs(children))
        self._memo[key] = r
        return r

    def json_root_runs(self) -> list[tuple[int, int, tuple]]:
        """Runs of the root for JSON string content: raw UTF-8 (not '"', '\\', < 0x20) and escapes."""
        forbidden = normalize([(0, 0x1F), (0x22, 0x22), (0x5C, 0x5C)])
        runs = self.utf8_lead_runs(exclude_ascii=forbidden)
        esc = [(ord(c), ord(c), ("a", self.atom(cp))) for c, cp in
               (('"', 0x22), ("\\", 0x5C), ("/", 0x2F), ("b", 8), ("f", 12), ("n", 10), ("r", 13), ("t", 9))]
        esc.append((0x75, 0x75, self._hex_block(0, 4)))
        runs.append((0x5C, 0x5C, self.node(esc)))
        return runs
