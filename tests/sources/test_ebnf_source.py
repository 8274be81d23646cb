"""ebnf_to_ir (GBNF): syntax, escapes, UTF-8 classes, errors, the shared corpora, soundness.

Soundness oracle: the GBNF tree is translated (test-only) into a Lark grammar whose
terminals are single characters / literals, and Lark's Earley parser must accept every
sentence generated from the IR.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import lark
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import irgen  # noqa: E402

from corral.errors import GrammarError  # noqa: E402
from corral.sources.ebnf import (  # noqa: E402
    _complement,
    _decode_class,
    _decode_literal,
    ebnf_to_ir,
    parse_gbnf,
    utf8_class_dfa,
)

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data" / "grammars"

# ------------------------------------------------------------------ GBNF -> Lark oracle


def _re_char(cp: int) -> str:
    c = chr(cp)
    if c in "\\^$.|?*+()[]{}-/":
        return "\\" + c
    return f"\\U{cp:08x}" if cp > 0xFFFF else f"\\u{cp:04x}"


EPS = "_eps"


def gbnf_to_lark(text: str) -> str:
    tree = parse_gbnf(text)
    names: dict[str, str] = {}
    for r in tree.children:
        n = r.children[0].value.split("::=")[0].strip()
        names.setdefault(n, f"r{len(names)}")
    out: list[str] = []

    def alts(node) -> str:
        return " | ".join(seq(s) or EPS for s in node.children) if node.children else EPS

    def seq(node) -> str:
        return " ".join(item(i) for i in node.children)

    def item(node) -> str:
        a = atom(node.children[0])
        if len(node.children) == 1:
            return a
        q = node.children[1]
        if q.data == "quant":
            return f"({a}){q.children[0].value}"
        nums = [int(t.value) for t in q.children]
        if q.data == "rep_exact":
            return f"(({a}) ~ {nums[0]})" if nums[0] else EPS
        if q.data == "rep_min":
            return f"(({a}) ~ {nums[0]} ({a})*)" if nums[0] else f"({a})*"
        lo, hi = nums
        if hi == 0:
            return EPS
        return f"(({a}) ~ {lo}..{hi})" if lo else f"(({a}) ~ 1..{hi})?"

    def atom(node) -> str:
        k = node.data
        if k == "literal":
            s = _decode_literal(node.children[0].value, None).decode("utf-8")
            if not s:
                return EPS
            return "/" + "".join(_re_char(ord(c)) for c in s) + "/"
        if k in ("charclass", "any"):
            if k == "any":
                neg, rs = True, ()
            else:
                neg, rs = _decode_class(node.children[0].value, None)
            rs = _complement(rs) if neg else rs
            if not rs:
                return "/(?!)x/"
            body = "".join(f"{_re_char(a)}-{_re_char(b)}" for a, b in rs)
            return f"/[{body}]/"
        if k == "ref":
            return names[node.children[0].value]
        if k == "group":
            return f"({alts(node.children[0])})"
        raise AssertionError(k)

    for r in tree.children:
        n = r.children[0].value.split("::=")[0].strip()
        out.append(f"{names[n]}: {alts(r.children[1])}")
    out.append(f"start: {names['root']}")
    out.append("_eps: ")
    return "\n".join(out)


def _check_sound(text: str, n: int = 25, seed: int = 0, max_depth: int = 8):
    ir = ebnf_to_ir(text)
    lk = lark.Lark(gbnf_to_lark(text), parser="earley", lexer="dynamic_complete")
    rng = random.Random(seed)
    for _ in range(n):
        s = irgen.random_sentence(ir, rng, max_depth=max_depth).decode("utf-8")
        lk.parse(s)  # raises if not a sentence
    return ir


# ------------------------------------------------------------------ unit tests


def test_basic_rules_and_operators():
    g = r"""
    # a comment
    root ::= greeting ws name ("!" | "?")? rep
    greeting ::= "hello" | "hi"   # trailing comment
    name-part ::= [A-Z] [a-z]*
    name ::= name-part (" " name-part){0,2}
    ws ::= [ \t]+
    rep ::= "x"{2} "y"{1,} "z"{0,3} "w"{2,3}
    """
    ir = _check_sound(g)
    assert ir.source == "ebnf"


def test_multiline_rule_continues_until_next_head():
    g = 'root ::= "a"\n   "b"\n | "c"\nother ::= "d"\n'
    ir = ebnf_to_ir(g)
    lk = lark.Lark(gbnf_to_lark(g), parser="earley", lexer="dynamic_complete")
    lk.parse("ab")
    lk.parse("c")
    assert len([r for r in ir.rules if ir.name(r[0]) == "root"]) == 2


def test_escapes_in_literals_and_classes():
    assert _decode_literal(r'"a\n\t\\\"\x41\u00e9\U0001F600"', None) == 'a\n\t\\"Aé😀'.encode()
    neg, rs = _decode_class(r"[^\x00-\x1F\]\-a-c]", None)
    assert neg and rs == ((0, 0x1F), (ord("-"), ord("-")), (ord("]"), ord("]")), (ord("a"), ord("c")))
    _check_sound(r'root ::= "\x41\u00e9" [\u0400-\u04FF]+ [^"\\\x7F\x00-\x1F]*')


def test_utf8_class_dfa_agrees_with_python():
    rng = random.Random(3)
    classes = [((0x41, 0x5A),), ((0x80, 0x7FF),), ((0x400, 0x4FF), (0x3040, 0x30FF)), _complement(((0x22, 0x22),)),
               ((0xE000, 0x10FFFF),), ((0x7F, 0x10000),)]
    for rs in classes:
        dfa = utf8_class_dfa(rs)
        for _ in range(400):
            cp = rng.choice([rng.randrange(0x80), rng.randrange(0x800), rng.randrange(0x10000), rng.randrange(0x110000)])
            if 0xD800 <= cp <= 0xDFFF:
                continue
            inside = any(a <= cp <= b for a, b in rs)
            assert dfa.matches(chr(cp).encode("utf-8")) == inside, (rs, hex(cp))
        assert not dfa.matches(b"\xed\xa0\x80")  # a surrogate is not valid UTF-8
        assert not dfa.matches(b"AA")


def test_any_char_is_one_utf8_character():
    ir = ebnf_to_ir("root ::= . .")
    t = ir.terminals[0]
    for c in ("a", "\n", "é", "中", "😀"):
        assert t.matches(c.encode())
    assert not t.matches(b"\xff") and not t.matches(b"ab")


def test_undefined_rule_names_it_and_its_line():
    with pytest.raises(GrammarError) as ei:
        ebnf_to_ir('root ::= a\na ::= "x" missing-rule\n')
    assert "missing-rule" in str(ei.value) and "line 2" in str(ei.value)


def test_syntax_errors():
    for bad in ['root ::= "abc', "root ::= (a", "root ::= [a-", "root = 'x'", 'root ::= "a"{2,1}', 'x ::= "a" ::= "b"']:
        with pytest.raises(GrammarError):
            ebnf_to_ir(bad)


def test_missing_root_and_start_option():
    with pytest.raises(GrammarError, match="root"):
        ebnf_to_ir('main ::= "x"')
    ir = ebnf_to_ir('main ::= "x"', start="main")
    assert ir.name(ir.start) == "main"


def test_empty_alternatives_and_literals():
    g = 'root ::= "a" ws "b"\nws ::= | " " ws\nempty ::= ""'
    _check_sound(g)


def test_recursive_grammar_soundness():
    g = r"""
    root ::= expr
    expr ::= term (("+" | "-") term)*
    term ::= factor (("*" | "/") factor)*
    factor ::= [0-9]+ | "(" expr ")" | "-" factor
    """
    _check_sound(g, n=40)


def test_accepts_with_compiled_grammar():
    G = irgen.grammar_cls()
    if G is None:
        pytest.skip("compiled Grammar not available")
    g = G.from_ir(ebnf_to_ir('root ::= "[" (item ("," item)*)? "]"\nitem ::= [a-z]+ | "\\"" [^"]* "\\""'))
    for s in ["[]", "[ab,c]", '["x,y",z]', '["é"]']:
        assert g.accepts(s), s
    for s in ["[", "[a,]", "[A]", '["x]', "[a]]"]:
        assert not g.accepts(s), s


# ------------------------------------------------------------------ shared corpora

# Published grammars that are broken as written (llama.cpp rejects them too).
EXPECTED_FAILURES = {
    "transformers-GAD/sygus/examples/sygus/euphony/11604909.ebnf": "undefined rule _arg_0",
    "transformers-GAD/sygus/examples/sygus/woosuk/sygus_iter_26_0_bare.ebnf":
        'syntax error: `"(not " Depth0)"` has an unbalanced quote',
    "transformers-GAD/sygus/examples/sygus/woosuk/sygus_iter_26_0_completion.ebnf":
        'syntax error: `"(not " Depth0)"` has an unbalanced quote',
}
# transformers-GAD nlp/CP/CP_re_ptb_*.ebnf: the deepest chain rule (e.g. C_0_22) is never defined.
_CP_UNDEFINED = re.compile(r"CP_re_ptb_\d+\.ebnf")


def _shared_ebnf_files():
    if not SHARED.is_dir():
        return []
    return sorted(list(SHARED.rglob("*.ebnf")) + list(SHARED.rglob("*.gbnf")))


def test_shared_ebnf_and_gbnf_grammars_load():
    files = _shared_ebnf_files()
    if not files:
        pytest.skip("shared grammar corpus absent")
    unexpected = []
    loaded = 0
    for p in files:
        text = p.read_text(encoding="utf-8")
        expect_fail = str(p.relative_to(SHARED)) in EXPECTED_FAILURES or _CP_UNDEFINED.fullmatch(p.name)
        try:
            ir = ebnf_to_ir(text)
        except GrammarError as e:
            if not expect_fail:
                unexpected.append(f"{p.relative_to(SHARED)}: {e}")
            continue
        loaded += 1
        assert ir.rules
        if expect_fail:
            unexpected.append(f"{p.relative_to(SHARED)}: loaded but expected to fail")
    assert not unexpected, "\n".join(unexpected)
    assert loaded >= 300


_SOUND_SAMPLES = ["c.gbnf", "chess.gbnf", "arithmetic.gbnf", "list.gbnf", "japanese.gbnf"]


@pytest.mark.parametrize("name", _SOUND_SAMPLES)
def test_shared_llama_cpp_grammars_sound(name):
    p = SHARED / "llama.cpp" / name
    if not p.exists():
        pytest.skip("shared grammar corpus absent")
    _check_sound(p.read_text(encoding="utf-8"), n=8, max_depth=6)


@pytest.mark.parametrize("name", ["json.gbnf", "json_arr.gbnf"])
def test_shared_json_gbnf_sentences_are_json(name):
    """The llama.cpp JSON grammars describe subsets of JSON: json.loads is the oracle."""
    import json

    p = SHARED / "llama.cpp" / name
    if not p.exists():
        pytest.skip("shared grammar corpus absent")
    ir = ebnf_to_ir(p.read_text(encoding="utf-8"))
    rng = random.Random(5)
    for _ in range(30):
        s = irgen.random_sentence(ir, rng, max_depth=7).decode("utf-8")
        json.loads(s)
