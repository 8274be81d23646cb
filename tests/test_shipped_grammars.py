"""The grammars shipped in grammars/*.lark: valid Lark, right language, convertible to IR."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import lark
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sources"))
import irgen  # noqa: E402

from corral.sources import lark_to_ir  # noqa: E402

GRAMMARS = Path(__file__).resolve().parents[1] / "grammars"

SAMPLES = {
    "json": (
        ['{"a": [1, -2.5e3, true, false, null], "b": {"c": "x\\"\\u00e9"}}', "[]", " 0 ", '"é"'],
        ["{", "[1,]", "01", '{"a" 1}', "tru", '"\\x"', "{'a': 1}", "[1 2]"],
    ),
    "arithmetic": (
        ["1 + 2 * 3", "-(x - 4) / y2 ^ 2", "max(1, 2.5e-3, f())", "a%b", ".5"],
        ["1 +", "()", "1 2", "f(,)", "2 ** 3", "x y"],
    ),
    "sql_select": (
        [
            "SELECT * FROM users",
            "select id, name AS n FROM users AS u WHERE age >= 18 AND name LIKE 'A%' ORDER BY name DESC LIMIT 10;",
            "SELECT DISTINCT a.b, count(*) FROM t1, t2 AS x WHERE NOT (a = 1 OR b <> 'it''s') LIMIT 5 OFFSET 2",
            "SELECT x FROM t WHERE y IS NOT NULL AND z IN (1, 2,3) OR w BETWEEN 1 AND 2",
        ],
        ["SELECT FROM t", "SELECT * users", "SELECTaFROMt", "SELECT * FROM t WHERE", "SELECT * FROM t LIMIT x",
         "SELECT * FROM t ORDER name", "SELECT * FROM t u"],
    ),
    "csv": (
        ["a,b,c\n1,2,3\n", 'name,"quoted, with comma","say ""hi"""\r\nx,,z', "single", ""],
        ['a,"unterminated\n', 'a"b', '"x"y'],
    ),
    "config": (
        [
            '# settings\n[server.http]\nhost = "localhost"  # inline\nport = 8080\n\ntags = ["a",\n  "b",]\n'
            "limits = { cpu = 2.5, debug = false }\n",
            "a = 1",
            "",
            "x = 1 # trailing comment without newline",
        ],
        ["[server\n", "a = \n", "a == 1\n", 'a = "x\n', "a = 1 b = 2\n"],
    ),
}


def _load(name):
    text = (GRAMMARS / f"{name}.lark").read_text(encoding="utf-8")
    return text, lark.Lark(text, parser="earley", lexer="dynamic_complete")


def _accepts(lk, s):
    try:
        lk.parse(s)
        return True
    except lark.exceptions.LarkError:
        return False


def test_every_shipped_grammar_has_samples():
    assert sorted(p.stem for p in GRAMMARS.glob("*.lark")) == sorted(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_lark_samples(name):
    _, lk = _load(name)
    good, bad = SAMPLES[name]
    for s in good:
        assert _accepts(lk, s), s
    for s in bad:
        assert not _accepts(lk, s), s


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_ir_sentences_parse_with_lark(name):
    text, lk = _load(name)
    ir = lark_to_ir(text)
    rng = random.Random(11)
    for _ in range(10 if name == "sql_select" else 25):
        s = irgen.random_sentence(ir, rng, max_depth=7).decode("utf-8")
        assert _accepts(lk, s), s
        if name == "json":
            json.loads(s)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_compiled_grammar_agrees(name):
    G = irgen.grammar_cls()
    if G is None:
        pytest.skip("compiled Grammar not available")
    text, _ = _load(name)
    ir = lark_to_ir(text)
    g = G.from_ir(ir)
    good, bad = SAMPLES[name]
    for s in good:
        assert g.accepts(s), s
    for s in bad:
        assert not g.accepts(s), s
    rng = random.Random(3)
    for _ in range(10):
        assert g.accepts(irgen.random_sentence(ir, rng, max_depth=7))
