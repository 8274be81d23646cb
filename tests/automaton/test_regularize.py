"""Collapsing regular parts into terminals keeps the language (checked both ways on random sentences)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from corral.automaton.grammar import Grammar
from corral.automaton.regularize import regularize
from corral.testing import random_sentence

from test_matcher import ambiguous_ir, expr_ir, json_ir

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grammars"


def _same_language(ir, n=60, seed=0):
    reg = regularize(ir)
    plain, collapsed = Grammar(ir, collapse_regular=False), Grammar(reg, collapse_regular=False)
    rng = random.Random(seed)
    for _ in range(n):
        s = random_sentence(ir, rng, max_depth=8)
        assert collapsed.accepts(s), s
        t = random_sentence(reg, rng, max_depth=8)
        assert plain.accepts(t), t
        # prefixes and one-byte mutations agree too
        cut = rng.randrange(len(s) + 1)
        probe = s[:cut] + bytes([rng.randrange(32, 127)]) + s[cut:]
        assert plain.accepts(probe) == collapsed.accepts(probe), probe
        assert plain.is_viable_prefix(probe) == collapsed.is_viable_prefix(probe), probe
    return reg


@pytest.mark.parametrize("make", [json_ir, expr_ir, ambiguous_ir])
def test_collapse_keeps_language_of_recursive_grammars(make):
    _same_language(make())


def test_collapse_turns_character_grammar_into_one_terminal():
    from corral.sources.ebnf import ebnf_to_ir

    ir = ebnf_to_ir('root ::= word (" " word)* "."\nword ::= [a-z]+ | [0-9]+\n')
    reg = _same_language(ir)
    assert reg.n_terminals == 1 and len(reg.rules) == 1


@pytest.mark.parametrize("name", ["arithmetic.gbnf", "c.gbnf", "chess.gbnf", "json.gbnf", "list.gbnf", "vllm-sql.gbnf"])
def test_collapse_on_llama_cpp_grammars(name):
    path = SHARED / "llama.cpp" / name
    if not path.exists():
        pytest.skip("shared grammar data not present")
    from corral.sources.ebnf import ebnf_to_ir

    reg = _same_language(ebnf_to_ir(path.read_text()), n=30)
    assert len(reg.rules) <= len(ebnf_to_ir(path.read_text()).rules)
