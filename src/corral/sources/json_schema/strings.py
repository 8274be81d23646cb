"""String languages (over decoded code points) and the ``format`` regexes.

A ``StrLang`` is either a union of code-point length intervals (kept symbolic so long
``maxLength`` bounds stay cheap) or a ``CharDFA``. The algebra is exact at the
code-point level; JSON encoding (quotes and escapes) happens at emission.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ...automaton.regex import CharDFA, regex_to_char_dfa

INF = None
DFA_LENGTH_LIMIT = 256  # symbolic length intervals up to this bound may be materialised


@dataclass(frozen=True)
class StrLang:
    """Either ``ranges`` (sorted disjoint (lo, hi|None) code-point length intervals) or ``dfa``."""

    ranges: tuple | None = None
    dfa: CharDFA | None = None

    # constructors
    @staticmethod
    def any() -> "StrLang":
        return StrLang(ranges=((0, None),))

    @staticmethod
    def none() -> "StrLang":
        return StrLang(ranges=())

    @staticmethod
    def length(lo: int, hi: int | None) -> "StrLang":
        if hi is not None and hi < lo:
            return StrLang.none()
        return StrLang(ranges=((lo, hi),))

    @staticmethod
    def of(d: CharDFA) -> "StrLang":
        return StrLang(dfa=d)

    @staticmethod
    def literal(s: str) -> "StrLang":
        return StrLang(dfa=CharDFA.literal(s))

    @property
    def is_empty(self) -> bool:
        return not self.ranges if self.ranges is not None else self.dfa.is_empty()

    @property
    def is_any(self) -> bool:
        return self.ranges == ((0, None),)

    def key(self):
        return ("r", self.ranges) if self.ranges is not None else ("d", self.dfa.key())

    def max_bound(self) -> int:
        return max((hi if hi is not None else lo) for lo, hi in self.ranges) if self.ranges else 0

    def to_dfa(self) -> CharDFA:
        if self.dfa is not None:
            return self.dfa
        out = CharDFA.empty()
        for lo, hi in self.ranges:
            if (hi if hi is not None else lo) > 4096:
                from ...errors import CompileLimitError

                raise CompileLimitError(f"string length bound {hi or lo} too large to combine with patterns")
            out = out.union(CharDFA.length_range_dfa(lo, hi))
        return out

    def accepts(self, s: str) -> bool:
        if self.ranges is not None:
            n = len(s)
            return any(lo <= n and (hi is None or n <= hi) for lo, hi in self.ranges)
        return self.dfa.accepts(s)

    # algebra
    def __and__(self, o: "StrLang") -> "StrLang":
        if self.ranges is not None and o.ranges is not None:
            out = []
            for a, b in self.ranges:
                for c, d in o.ranges:
                    lo = max(a, c)
                    hi = b if d is None else (d if b is None else min(b, d))
                    if hi is None or hi >= lo:
                        out.append((lo, hi))
            return StrLang(ranges=_norm(out))
        if self.is_any:
            return o
        if o.is_any:
            return self
        return StrLang(dfa=self.to_dfa().intersection(o.to_dfa()))

    def __or__(self, o: "StrLang") -> "StrLang":
        if self.ranges is not None and o.ranges is not None:
            return StrLang(ranges=_norm(list(self.ranges) + list(o.ranges)))
        if self.is_empty:
            return o
        if o.is_empty:
            return self
        return StrLang(dfa=self.to_dfa().union(o.to_dfa()))

    def __invert__(self) -> "StrLang":
        if self.ranges is not None:
            out = []
            pos = 0
            for lo, hi in self.ranges:
                if lo > pos:
                    out.append((pos, lo - 1))
                if hi is None:
                    pos = None
                    break
                pos = hi + 1
            if pos is not None:
                out.append((pos, None))
            return StrLang(ranges=tuple(out))
        return StrLang(dfa=self.dfa.complement())

    def __sub__(self, o: "StrLang") -> "StrLang":
        return self & ~o

    def disjoint(self, o: "StrLang") -> bool:
        return (self & o).is_empty

    def finite_values(self, limit: int = 64) -> list[str] | None:
        """All strings of a finite language (None when infinite or above ``limit``)."""
        if self.ranges is not None:
            if self.ranges == ((0, 0),):
                return [""]
            return None if self.ranges else []
        d = self.dfa
        if d.is_empty():
            return []
        if d.max_length() is None:
            return None
        out: list[str] = []
        stack = [(0, "")]
        while stack:
            q, s = stack.pop()
            if d.accepting[q]:
                out.append(s)
                if len(out) > limit:
                    return None
            for a in range(d.trans.shape[1]):
                r = int(d.trans[q, a])
                if r < 0:
                    continue
                lo, hi = int(d.bounds[a]), int(d.bounds[a + 1])
                if hi - lo > limit:
                    return None
                for cp in range(lo, hi):
                    stack.append((r, s + chr(cp)))
            if len(stack) > 10 * limit:
                return None
        return sorted(out)


def _norm(rs) -> tuple:
    rs = sorted(rs, key=lambda r: r[0])
    out: list[list] = []
    for lo, hi in rs:
        if out and (out[-1][1] is None or lo <= out[-1][1] + 1):
            if out[-1][1] is not None:
                out[-1][1] = None if hi is None else max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


@lru_cache(maxsize=2048)
def pattern_lang(pattern: str) -> StrLang:
    """``pattern``: an ECMA-262 regex, matched anywhere in the string (unanchored search)."""
    return StrLang(dfa=regex_to_char_dfa(pattern, flags="u", dialect="ecma", search=True))


# --- formats: regexes over the decoded string, full match (python dialect) ------------

_DEC_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = rf"{_DEC_OCTET}(\.{_DEC_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"({_H16}:{_H16}|{_IPV4})"
_IPV6 = (
    r"("
    rf"({_H16}:){{6}}{_LS32}"
    rf"|::({_H16}:){{5}}{_LS32}"
    rf"|({_H16})?::({_H16}:){{4}}{_LS32}"
    rf"|(({_H16}:){{0,1}}{_H16})?::({_H16}:){{3}}{_LS32}"
    rf"|(({_H16}:){{0,2}}{_H16})?::({_H16}:){{2}}{_LS32}"
    rf"|(({_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}"
    rf"|(({_H16}:){{0,4}}{_H16})?::{_LS32}"
    rf"|(({_H16}:){{0,5}}{_H16})?::{_H16}"
    rf"|(({_H16}:){{0,6}}{_H16})?::"
    r")"
)
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = rf"(?=.{{1,253}}$)?{_LABEL}(\.{_LABEL})*"
_HOSTNAME_SIMPLE = rf"{_LABEL}(\.{_LABEL})*"
_DATE = r"[0-9]{4}-(((0[13578]|1[02])-(0[1-9]|[12][0-9]|3[01]))|((0[469]|11)-(0[1-9]|[12][0-9]|30))|(02-(0[1-9]|1[0-9]|2[0-9])))"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9])(\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
_DUR_T = r"T([0-9]+H([0-9]+M)?([0-9]+S)?|[0-9]+M([0-9]+S)?|[0-9]+S)"
_DURATION = rf"P(([0-9]+D|[0-9]+M([0-9]+D)?|[0-9]+Y([0-9]+M)?([0-9]+D)?)({_DUR_T})?|{_DUR_T}|[0-9]+W)"
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_EMAIL = rf"{_ATEXT}+(\.{_ATEXT}+)*@({_HOSTNAME_SIMPLE}|\[{_IPV4}\]|\[IPv6:{_IPV6}\])"
_UNRESERVED = r"[A-Za-z0-9\-._~]"
_PCT = r"%[0-9A-Fa-f]{2}"
_SUBDELIM = r"[!$&'()*+,;=]"
_PCHAR = rf"({_UNRESERVED}|{_PCT}|{_SUBDELIM}|[:@])"
_USERINFO = rf"({_UNRESERVED}|{_PCT}|{_SUBDELIM}|:)*"
_REGNAME = rf"({_UNRESERVED}|{_PCT}|{_SUBDELIM})*"
_HOST = rf"(\[({_IPV6}|v[0-9A-Fa-f]+\.({_UNRESERVED}|{_SUBDELIM}|:)+)\]|{_IPV4}|{_REGNAME})"
_AUTHORITY = rf"({_USERINFO}@)?{_HOST}(:[0-9]*)?"
_PATH_ABEMPTY = rf"(/{_PCHAR}*)*"
_PATH_ABSOLUTE = rf"/({_PCHAR}+(/{_PCHAR}*)*)?"
_PATH_ROOTLESS = rf"{_PCHAR}+(/{_PCHAR}*)*"
_PATH_NOSCHEME = rf"({_UNRESERVED}|{_PCT}|{_SUBDELIM}|@)+(/{_PCHAR}*)*"
_QUERY = rf"({_PCHAR}|[/?])*"
_SCHEME = r"[A-Za-z][A-Za-z0-9+\-.]*"
_HIER = rf"(//{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_ROOTLESS}|)"
_URI = rf"{_SCHEME}:{_HIER}(\?{_QUERY})?(#{_QUERY})?"
_RELATIVE = rf"(//{_AUTHORITY}{_PATH_ABEMPTY}|{_PATH_ABSOLUTE}|{_PATH_NOSCHEME}|)(\?{_QUERY})?(#{_QUERY})?"
_JSON_POINTER = r"(/([^/~]|~[01])*)*"
# RFC 3987 (IRIs): URIs whose unreserved characters also include ucschar, and queries iprivate
_UCSCHAR = (r"[\u00A0-\uD7FF\uF900-\uFDCF\uFDF0-\uFFEF\U00010000-\U0001FFFD\U00020000-\U0002FFFD"
            r"\U00030000-\U0003FFFD\U00040000-\U0004FFFD\U00050000-\U0005FFFD\U00060000-\U0006FFFD"
            r"\U00070000-\U0007FFFD\U00080000-\U0008FFFD\U00090000-\U0009FFFD\U000A0000-\U000AFFFD"
            r"\U000B0000-\U000BFFFD\U000C0000-\U000CFFFD\U000D0000-\U000DFFFD\U000E1000-\U000EFFFD]")
_IPRIVATE = r"[\uE000-\uF8FF\U000F0000-\U000FFFFD\U00100000-\U0010FFFD]"
_IUNRESERVED = rf"([A-Za-z0-9\-._~]|{_UCSCHAR})"
_IPCHAR = rf"({_IUNRESERVED}|{_PCT}|{_SUBDELIM}|[:@])"
_IUSERINFO = rf"({_IUNRESERVED}|{_PCT}|{_SUBDELIM}|:)*"
_IREGNAME = rf"({_IUNRESERVED}|{_PCT}|{_SUBDELIM})*"
_IHOST = rf"(\[({_IPV6}|v[0-9A-Fa-f]+\.({_UNRESERVED}|{_SUBDELIM}|:)+)\]|{_IPV4}|{_IREGNAME})"
_IAUTHORITY = rf"({_IUSERINFO}@)?{_IHOST}(:[0-9]*)?"
_IPATH_ABEMPTY = rf"(/{_IPCHAR}*)*"
_IPATH_ABSOLUTE = rf"/({_IPCHAR}+(/{_IPCHAR}*)*)?"
_IPATH_ROOTLESS = rf"{_IPCHAR}+(/{_IPCHAR}*)*"
_IPATH_NOSCHEME = rf"({_IUNRESERVED}|{_PCT}|{_SUBDELIM}|@)+(/{_IPCHAR}*)*"
_IQUERY = rf"({_IPCHAR}|{_IPRIVATE}|[/?])*"
_IFRAGMENT = rf"({_IPCHAR}|[/?])*"
_IHIER = rf"(//{_IAUTHORITY}{_IPATH_ABEMPTY}|{_IPATH_ABSOLUTE}|{_IPATH_ROOTLESS}|)"
_IRI = rf"{_SCHEME}:{_IHIER}(\?{_IQUERY})?(#{_IFRAGMENT})?"
_IRELATIVE = rf"(//{_IAUTHORITY}{_IPATH_ABEMPTY}|{_IPATH_ABSOLUTE}|{_IPATH_NOSCHEME}|)(\?{_IQUERY})?(#{_IFRAGMENT})?"
# RFC 6570 (URI templates, level 4)
_VARCHAR = rf"([A-Za-z0-9_]|{_PCT})"
_VARSPEC = rf"{_VARCHAR}(\.?{_VARCHAR})*(:[1-9][0-9]{{0,3}}|\*)?"
_TEMPLATE_EXPR = rf"\{{[+#./;?&=,!@|]?{_VARSPEC}(,{_VARSPEC})*\}}"
_TEMPLATE_LITERAL = rf"([\x21\x23\x24\x26\x28-\x3B\x3D\x3F-\x5B\x5D\x5F\x61-\x7A\x7E]|{_UCSCHAR}|{_IPRIVATE}|{_PCT})"

FORMATS: dict[str, str] = {
    "date": _DATE,
    "time": _TIME,
    "date-time": rf"{_DATE}[Tt]{_TIME}",
    "duration": _DURATION,
    "email": _EMAIL,
    "hostname": _HOSTNAME_SIMPLE,
    "ipv4": _IPV4,
    "ipv6": _IPV6,
    "uuid": _UUID,
    "uri": _URI,
    "uri-reference": rf"({_URI}|{_RELATIVE})",
    "iri": _IRI,
    "iri-reference": rf"({_IRI}|{_IRELATIVE})",
    "uri-template": rf"({_TEMPLATE_LITERAL}|{_TEMPLATE_EXPR})*",
    "json-pointer": _JSON_POINTER,
    "relative-json-pointer": rf"(0|[1-9][0-9]*)(#|{_JSON_POINTER})",
}
# Formats a validator may assert that corral does not implement (strict mode refuses them).
KNOWN_UNIMPLEMENTED = {
    "idn-email", "idn-hostname", "regex",
}


@lru_cache(maxsize=64)
def format_lang(name: str) -> StrLang | None:
    """The language of a known format, or None when corral does not implement it."""
    rx = FORMATS.get(name)
    if rx is None:
        return None
    return StrLang(dfa=regex_to_char_dfa(rx, dialect="python", search=False))
