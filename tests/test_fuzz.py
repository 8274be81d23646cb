"""Fuzzing (issue 8): random regexes, Lark grammars and JSON schemas against their oracles.

Cases come from the generators in ``benchmarks/fuzz.py`` (a longer run: ``python
benchmarks/fuzz.py``), driven by hypothesis' random source so failures are replayable.
Each property: compile gives a Grammar or a ``CorralError`` (never another exception);
``Grammar.accepts`` agrees with the oracle; matchers never crash on random input.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral import CorralError, Grammar, Vocabulary

_spec = importlib.util.spec_from_file_location("corral_fuzz", Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

FAST = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _check(case, rng: random.Random) -> None:
    res = fuzz.Result()
    case(rng, res)
    assert not res.crashes, res.crashes
    assert not res.wrong, res.wrong[:3]


# regexes vs Python's re, Lark grammars vs lark's Earley parser, schemas vs jsonschema, and
# random bytes / token ids fed to matchers (which must never crash)
@pytest.mark.parametrize("case", ["regex_case", "lark_case", "schema_case", "matcher_case"])
@FAST
@given(rng=st.randoms(use_true_random=False))
def test_random_inputs_agree_with_their_oracle(case, rng):
    _check(getattr(fuzz, case), rng)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.text(max_size=30))
def test_arbitrary_regex_text_compiles_or_raises_a_corral_error(pattern):
    try:
        Grammar.from_regex(pattern)
    except CorralError:
        pass


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.text(max_size=60))
def test_arbitrary_lark_and_gbnf_text_compiles_or_raises_a_corral_error(text):
    for build in (Grammar.from_lark, Grammar.from_ebnf):
        try:
            build(text)
        except CorralError:
            pass


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.dictionaries(st.sampled_from(["type", "enum", "const", "items", "properties", "minLength", "maximum",
                                        "anyOf", "not", "$ref", "required", "pattern", "format"]), _JSON, max_size=3))
def test_arbitrary_schema_dicts_compile_or_raise_a_corral_error(schema):
    try:
        Grammar.from_json_schema(schema)
    except CorralError:
        pass


_VOCAB = Vocabulary([None] + [bytes([b]) for b in range(256)] + [b"ab", b"\xc3\xa9", b'{"'], eos_ids=[0])
_G = Grammar.from_lark('start: "{" pair ("," pair)* "}"\npair: /"[a-z]*"/ ":" /[0-9]+/', _VOCAB)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(st.one_of(st.integers(-10, 300), st.binary(min_size=1, max_size=4)), max_size=30))
def test_random_token_and_byte_sequences_never_crash(ops):
    m = _G.matcher()
    for op in ops:
        before = m.state
        if isinstance(op, int):
            if not m.consume_token(op):
                assert m.state == before
        elif not m.consume_bytes(op):
            assert m.state == before
        m.next_token_mask()
    assert _G.accepts(b"\xff\xfe") is False
    assert _G.is_viable_prefix(b"\x00") is False
