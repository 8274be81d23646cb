import itertools
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.automaton.dfa import ByteDFA
from corral.automaton.regex import CharDFA, compile_regex, json_string_dfa, regex_to_char_dfa
from corral.errors import CompileLimitError, RegexError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))

# (pattern, flags) compared against Python's re.fullmatch
PY_PATTERNS = [
    ("abc", ""),
    ("a|b|", ""),
    ("(ab|a)(c|bcd)", ""),
    ("a*b+c?", ""),
    ("(a|b)*abb", ""),
    ("[a-c]{2,4}", ""),
    ("x{3}", ""),
    ("x{2,}", ""),
    ("x{,2}y", ""),
    ("(?:ab){1,3}?", ""),
    ("[^a-c]", ""),
    ("[^\\n]*", ""),
    (".", ""),
    (".", "s"),
    ("a.b", ""),
    ("\\d+", ""),
    ("\\D", ""),
    ("\\w+", ""),
    ("\\W", ""),
    ("\\s*", ""),
    ("\\S+", ""),
    ("[\\d\\s]+", ""),
    ("[^\\w\\s]", ""),
    ("[\\w-]+", ""),
    ("hello", "i"),
    ("[a-z]+", "i"),
    ("[^k]", "i"),
    ("(?i)straße", ""),
    ("(?i:a)b", ""),
    ("é+ü", ""),
    ("[à-ÿ]+", ""),
    ("[\u0100-\u017f]", "i"),
    ("[😀-😏]x", ""),
    ("\\u00e9|\\x41", ""),
    ("\\U0001F600", ""),
    ("[\\]a-]", ""),
    ("[]]", ""),
    ("a\\.b\\*", ""),
    ("(?P<year>\\d{4})-(?P<m>\\d\\d)", ""),
    ("[0-9]{1,3}(\\.[0-9]{1,3}){3}", ""),
    ("a # comment\n b", "x"),
    ("\\w+@\\w+\\.com", "a"),
    ("(a|bc)*?d", ""),
    ("[\\x00-\\x1f]", ""),
    ("\\t\\n\\r\\f\\v\\a\\0", ""),
    ("[.]+", ""),
    ("\\-\\[\\]", ""),
]

SPECIAL = "aAbBcCkKsSxXyYdDé😀ßİıſ\u212a\u0131\u017f0123456789 \t\n\r-._@#[]\u00a0\u0663\u2028"


def _alphabet(pattern: str) -> str:
    lits = {c for c in pattern if c.isprintable() or c in "\n\t"}
    return "".join(sorted(lits | set(SPECIAL)))


def _pyflags(flags: str) -> int:
    f = 0
    for c, v in (("i", re.I), ("s", re.S), ("m", re.M), ("x", re.X), ("a", re.A)):
        if c in flags:
            f |= v
    return f


@pytest.mark.parametrize("pattern,flags", PY_PATTERNS)
def test_python_dialect_matches_re(pattern, flags):
    d = compile_regex(pattern, flags=flags)
    rx = re.compile(pattern, _pyflags(flags))

    @SETTINGS
    @given(st.text(alphabet=_alphabet(pattern), max_size=8))
    def random_strings(s):
        assert d.matches(s.encode()) == bool(rx.fullmatch(s)), (pattern, s)

    @SETTINGS
    @given(st.from_regex(rx, fullmatch=True))
    def members(s):
        assert d.matches(s.encode()), (pattern, s)

    random_strings()
    members()


@pytest.mark.parametrize("pattern,flags", PY_PATTERNS[::3])
def test_search_mode_matches_re_search(pattern, flags):
    d = compile_regex(pattern, flags=flags, search=True)
    rx = re.compile(pattern, _pyflags(flags))

    @SETTINGS
    @given(st.text(alphabet=_alphabet(pattern), max_size=8))
    def check(s):
        assert d.matches(s.encode()) == bool(rx.search(s)), (pattern, s)

    check()


@pytest.mark.parametrize(
    "pattern,flags",
    [("^ab", ""), ("ab$", ""), ("^ab$", ""), ("^a|b$", ""), ("^ab", "m"), ("ab$", "m"), ("\\Aab\\Z", ""),
     ("^$", ""), ("^x*$", "m")],
)
def test_anchors_in_search_mode(pattern, flags):
    d = compile_regex(pattern, flags=flags, search=True)
    rx = re.compile(pattern, _pyflags(flags))
    for n in range(5):
        for t in itertools.product("ab\nx", repeat=n):
            s = "".join(t)
            assert d.matches(s.encode()) == bool(rx.search(s)), (pattern, s)


def test_anchors_are_noops_in_fullmatch_mode():
    assert compile_regex("^abc$") == compile_regex("abc")
    assert compile_regex("^a|b$") == compile_regex("a|b")
    assert compile_regex("a^b").is_empty  # start-of-input after a character never holds


@pytest.mark.parametrize(
    "pattern,feature,offset",
    [
        ("(a)\\1", "backreference", 3),
        ("a(?=b)", "lookahead", 1),
        ("a(?!b)", "lookahead", 1),
        ("(?<=a)b", "lookbehind", 0),
        ("(?<!a)b", "lookbehind", 0),
        ("a\\bb", "word boundary", 1),
        ("a$b|c", "anchor", 1),
        ("(a$)b", "anchor", 2),
        ("(?P<x>a)(?P=x)", "backreference", 8),
        ("(?>a)", "atomic", 0),
        ("a*+", "possessive", 2),
    ],
)
def test_unsupported_features_raise(pattern, feature, offset):
    with pytest.raises(RegexError) as ei:
        compile_regex(pattern)
    assert feature in str(ei.value)
    assert ei.value.offset == offset


@pytest.mark.parametrize("pattern", ["(a", "a)", "[a", "*a", "a{3,2}", "\\q", "(?Q)"])
def test_syntax_errors(pattern):
    with pytest.raises(RegexError):
        compile_regex(pattern)


def test_ecma_backreference_and_lookahead_errors():
    for p in ["(a)\\1", "(?=a)", "(?<!a)", "\\k<x>(?<x>a)", "a\\Bb"]:
        with pytest.raises(RegexError):
            compile_regex(p, dialect="ecma")


def test_ecma_shorthands_are_ascii():
    d = compile_regex("\\d+", dialect="ecma")
    assert d.matches("123".encode())
    assert not d.matches("١٢٣".encode())  # Arabic-Indic digits
    assert compile_regex("\\d+").matches("١٢٣".encode())  # python: unicode \d
    w = compile_regex("\\w", dialect="ecma")
    assert w.matches(b"_") and not w.matches("é".encode())
    s = compile_regex("\\s", dialect="ecma")
    for ch in "\t\n\v\f\r \u00a0\u1680\u2000\u2028\u2029\u202f\u205f\u3000\ufeff":
        assert s.matches(ch.encode()), hex(ord(ch))
    assert not s.matches("\u200b".encode())
    assert not s.matches(b"\x1c")  # python \s matches \x1c, ECMA does not
    assert compile_regex("\\s").matches(b"\x1c")


def test_ecma_dot_and_line_terminators():
    d = compile_regex(".", dialect="ecma")
    for ch in "\n\r\u2028\u2029":
        assert not d.matches(ch.encode())
    assert d.matches("é".encode()) and d.matches("😀".encode())
    assert compile_regex(".", dialect="ecma", flags="s").matches(b"\n")
    assert compile_regex(".").matches(b"\r")  # python only excludes \n


def test_ecma_escapes():
    assert compile_regex("\\u00e9", dialect="ecma").matches("é".encode())
    assert compile_regex("\\u{1F600}", dialect="ecma", flags="u").matches("😀".encode())
    assert compile_regex("\\uD83D\\uDE00", dialect="ecma").matches("😀".encode())
    assert compile_regex("\\cJ", dialect="ecma").matches(b"\n")
    assert compile_regex("[^]", dialect="ecma").matches(b"\n")
    assert compile_regex("[]", dialect="ecma").is_empty
    assert compile_regex("a{,2}", dialect="ecma").matches(b"a{,2}")
    assert compile_regex("\\p{Lu}+", dialect="ecma", flags="u").matches("ÀB".encode())
    assert not compile_regex("\\p{Lu}", dialect="ecma", flags="u").matches(b"a")
    assert compile_regex("[\\p{L}\\d]+", dialect="ecma", flags="u").matches("añ1".encode())
    assert compile_regex("\\0", dialect="ecma").matches(b"\x00")


def test_ecma_search_semantics():
    d = compile_regex("\\d{3}", dialect="ecma", search=True)
    assert d.matches(b"ab123cd") and not d.matches(b"ab12cd")
    d = compile_regex("^\\d{3}$", dialect="ecma", search=True)
    assert d.matches(b"123") and not d.matches(b"123\n") and not d.matches(b"1234")
    d = compile_regex("^a", dialect="ecma", search=True)
    assert d.matches(b"abc") and not d.matches(b"ba")
    d = compile_regex("b$", dialect="ecma", search=True)
    assert d.matches(b"ab") and not d.matches(b"ba")
    d = compile_regex("^b", dialect="ecma", flags="m", search=True)
    assert d.matches(b"a\rb") and d.matches("a\u2028b".encode()) and not d.matches(b"ab")
    assert compile_regex("", dialect="ecma", search=True).matches("any ☃".encode())


def test_python_dollar_allows_trailing_newline_in_search():
    assert compile_regex("a$", search=True).matches(b"a\n")
    assert not compile_regex("a$", dialect="ecma", search=True).matches(b"a\n")


def test_case_insensitive_unicode_special_cases():
    d = compile_regex("k", flags="i")
    assert d.matches("\u212a".encode()) and d.matches(b"K")
    d = compile_regex("s+", flags="i")
    assert d.matches("sSſ".encode())
    assert not compile_regex("[^k]", flags="i").matches("\u212a".encode())
    d = compile_regex("[a-z]", flags="ia")
    assert d.matches(b"Q") and not d.matches("\u212a".encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=6))
def test_never_accepts_invalid_utf8(data):
    for d in _INVALID_CHECK:
        if d.matches(data):
            data.decode("utf-8")


_INVALID_CHECK = [compile_regex(p, dialect=dl) for p, dl in
                  [(".*", "python"), ("[^a]*", "ecma"), ("\\W*", "python"), ("(?s).{0,3}", "python")]]


def test_invalid_utf8_explicit():
    d = compile_regex("(?s).*")
    for bad in [b"\x80", b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xf5\x80\x80\x80", b"\xff", b"\xe2\x82"]:
        assert not d.matches(bad), bad
    for good in ["\x7f", "\u0080", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\U00010000", "\U0010ffff"]:
        assert d.matches(good.encode()), hex(ord(good))


@pytest.mark.parametrize("pattern,dialect", [
    ("[a-z]{2,5}", "python"), ("\\w+", "python"), (".{0,20}", "ecma"), ("(ab|a)*\\d", "python"),
    ("[^\\u00e9]x", "ecma"), ("(?i)[a-zé]+k", "python"),
])
def test_output_is_minimal_and_canonical(pattern, dialect):
    d = compile_regex(pattern, dialect=dialect)
    again = ByteDFA.from_arrays(d.trans, d.accepting)
    assert again.key() == d.key()
    assert again.n_states == d.n_states


def test_max_states_limit():
    with pytest.raises(CompileLimitError):
        compile_regex(".{0,500}", max_states=100)
    with pytest.raises(CompileLimitError):
        compile_regex("(a|b)*a(a|b){12}", max_states=1000)


def test_performance_budget():
    import time

    pats = [
        r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
        r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}",
        r"[a-zA-Z0-9_]{1,64}",
        r".{0,1000}",
    ]
    compile_regex(r"\w")  # warm the unicode tables
    for p in pats:
        t = time.process_time()
        regex_to_char_dfa(p).to_byte_dfa()
        assert time.process_time() - t < 1.0, p  # generous: CI machines are noisy


# ---------------------------------------------------------------------------
# CharDFA algebra vs set semantics


def _all_strings(alpha, n):
    for k in range(n + 1):
        for t in itertools.product(alpha, repeat=k):
            yield "".join(t)


ALPHA = "abc"
UNIVERSE = list(_all_strings(ALPHA, 4))


def _lang(cd: CharDFA):
    return {s for s in UNIVERSE if cd.accepts(s)}


def _re_lang(p):
    return {s for s in UNIVERSE if re.fullmatch(p, s)}


regexes = st.sampled_from(["a*", "(ab)*", "a|bc", "[ab]*c", "b+", "", "(a|b)(a|c)", "c?a?", "[abc]{2,3}", "x", "a*b*"])


@settings(max_examples=80, deadline=None)
@given(regexes, regexes)
def test_char_dfa_boolean_ops(p, q):
    a, b = regex_to_char_dfa(p), regex_to_char_dfa(q)
    la, lb = _re_lang(p), _re_lang(q)
    assert _lang(a) == la
    assert _lang(a.union(b)) == la | lb
    assert _lang(a.intersection(b)) == la & lb
    assert _lang(a.difference(b)) == la - lb
    assert _lang(a.complement()) == set(UNIVERSE) - la
    assert a.complement().accepts("é😀")
    if la & lb:
        assert not a.intersection(b).is_empty()
    assert a.difference(a).is_empty()
    assert a.intersection(a) == a
    assert a.union(b) == b.union(a)


@settings(max_examples=60, deadline=None)
@given(regexes, regexes, st.integers(0, 2), st.one_of(st.none(), st.integers(0, 3)))
def test_char_dfa_concat_repeat(p, q, lo, hi):
    a, b = regex_to_char_dfa(p), regex_to_char_dfa(q)
    assert _lang(a.concat(b)) == _re_lang(f"(?:{p})(?:{q})")
    if hi is not None and hi < lo:
        with pytest.raises(ValueError):
            a.repeat(lo, hi)
        return
    rep = f"(?:{p}){{{lo},{'' if hi is None else hi}}}"
    assert _lang(a.repeat(lo, hi)) == _re_lang(rep)


def test_char_dfa_helpers():
    cd = regex_to_char_dfa("ab(c|de)")
    assert cd.min_length() == 3 and cd.max_length() == 4
    assert regex_to_char_dfa("a+").max_length() is None
    assert regex_to_char_dfa("a+").min_length() == 1
    assert CharDFA.literal("héllo").accepts("héllo")
    assert not CharDFA.literal("héllo").accepts("hello")
    assert CharDFA.any_char().accepts("😀") and not CharDFA.any_char().accepts("ab")
    digits = CharDFA.from_codepoints([(0x30, 0x39)])
    assert digits.accepts("7") and not digits.accepts("a")
    lr = CharDFA.length_range_dfa(2, 3)
    assert [lr.accepts("x" * n) for n in range(5)] == [False, False, True, True, False]
    assert CharDFA.length_range_dfa(2, None).accepts("é" * 50)
    assert CharDFA.empty().is_empty() and CharDFA.empty().min_length() is None
    both = regex_to_char_dfa("[a-z]+").intersection(CharDFA.length_range_dfa(2, 3))
    assert both.min_length() == 2 and both.max_length() == 3
    assert both.transitions(0) == [(ord("a"), ord("z"), 1)]
    # equal languages give equal (canonical) automata
    assert regex_to_char_dfa("(a|b)*") == regex_to_char_dfa("(a*b*)*")
    assert regex_to_char_dfa("a") != regex_to_char_dfa("b")


def test_surrogates_never_accepted():
    assert not CharDFA.any_char().complement().complement().accepts("\ud800")
    assert not regex_to_char_dfa("[\\ud000-\\ue000]").accepts("\ud900")
    assert regex_to_char_dfa("[\\ud000-\\ue000]").accepts("\ue000")


# ---------------------------------------------------------------------------
# JSON string-content encoding

JSON_CASES = ["[a-z\"\\\\/]*", "(?s).{0,4}", "[^a]{1,3}", "\\d+|é", "[😀-😂]+", "[\\x00-\\x1f\"]*", "x\\ny"]


@pytest.mark.parametrize("pattern", JSON_CASES)
def test_json_encoding(pattern):
    cd = regex_to_char_dfa(pattern)
    content = cd.to_byte_dfa("json")
    full = json_string_dfa(cd)
    rx = re.compile(pattern)
    assert ByteDFA.from_arrays(content.trans, content.accepting).key() == content.key()

    @SETTINGS
    @given(st.from_regex(rx, fullmatch=True))
    def members(s):
        for ea in (True, False):
            enc = json.dumps(s, ensure_ascii=ea)
            assert content.matches(enc[1:-1].encode()), (s, enc)
            assert full.matches(enc.encode())
        upper = re.sub(r"\\u([0-9a-f]{4})", lambda m: "\\u" + m.group(1).upper(), json.dumps(s)[1:-1])
        assert content.matches(upper.encode()), upper

    @SETTINGS
    @given(st.text(alphabet="az\"\\/é😀\n\x01\x1f0 ", max_size=5))
    def anything(s):
        ok = bool(rx.fullmatch(s))
        for ea in (True, False):
            enc = json.dumps(s, ensure_ascii=ea)
            assert content.matches(enc[1:-1].encode()) == ok, (s, enc)
            assert full.matches(enc.encode()) == ok

    @settings(max_examples=100, deadline=None)
    @given(st.binary(max_size=8))
    def decodes(data):
        if content.matches(data):
            s = json.loads(b'"' + data + b'"')
            assert rx.fullmatch(s)

    members()
    anything()
    decodes()


def test_json_encoding_explicit():
    cd = CharDFA.literal('a"\\/\b\f\n\r\t\x01é😀')
    d = cd.to_byte_dfa("json")
    assert d.matches(rb'a\"\\/\b\f\n\r\t\u0001\u00e9\ud83d\ude00')
    assert d.matches(rb'\u0061\u0022\u005C\u002f\u0008\u000C\u000a\u000D\u0009\u0001\u00E9\uD83D\uDE00')
    assert d.matches('a\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001é😀'.encode())
    assert not d.matches('a"\\\\/\\b\\f\\n\\r\\t\\u0001é😀'.encode())  # raw quote
    assert not CharDFA.literal("\n").to_byte_dfa("json").matches(b"\n")  # raw control char
    assert not CharDFA.literal("😀").to_byte_dfa("json").matches(rb"\ud83d")
    assert not CharDFA.any_char().to_byte_dfa("json").matches(rb"\udc00")  # lone surrogate
    assert json_string_dfa(CharDFA.literal("")).matches(b'""')


def test_json_encoding_is_compact():
    d = CharDFA.length_range_dfa(0, None).to_byte_dfa("json")
    assert d.n_states < 40
    assert d.matches(json.dumps("any \u2603 text \U0001f600 \x00")[1:-1].encode())


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 0x10FFFF), st.integers(0, 70000), st.data())
def test_utf8_sequences_cover_range_exactly(lo, width, data):
    from corral.automaton.charset import utf8_sequences

    hi = min(0x10FFFF, lo + width)
    seqs = utf8_sequences(lo, hi)
    cp = data.draw(st.integers(max(0, lo - 3), min(0x10FFFF, hi + 3)))
    if 0xD800 <= cp <= 0xDFFF:
        return
    e = chr(cp).encode()
    hits = sum(len(s) == len(e) and all(a <= x <= b for x, (a, b) in zip(e, s)) for s in seqs)
    assert hits == (1 if lo <= cp <= hi else 0)


ANCHORED_PIECES = ["^", "$", "a", "b", "(^|,)", "($|,)", "(a$)", "(^b)", "[ab]*", "x?", "(a|^)", "(b$|a)+"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(ANCHORED_PIECES), min_size=1, max_size=5),
       st.lists(st.text(alphabet="ab,x", max_size=5), min_size=1, max_size=20))
def test_anchors_anywhere_are_zero_width_assertions(pieces, texts):
    # ECMA ^ and $ inside a pattern (not only at its ends): Python's re with \A and \Z is the oracle
    pattern = "".join(pieces)
    d = regex_to_char_dfa(pattern, dialect="ecma", search=True)
    oracle = re.compile(pattern.replace("^", r"\A").replace("$", r"\Z"))
    for t in texts + [""]:
        assert d.accepts(t) == (oracle.search(t) is not None), (pattern, t)
