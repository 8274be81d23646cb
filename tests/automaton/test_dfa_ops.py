import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from corral.automaton import dfa_ops as ops
from corral.automaton.dfa import ByteDFA
from corral.automaton.regex import compile_regex
from corral.errors import CompileLimitError

ALPHA = b"ab\xc3"
UNIVERSE = [bytes(t) for n in range(5) for t in itertools.product(ALPHA, repeat=n)]


def lang(d: ByteDFA) -> set:
    return {s for s in UNIVERSE if d.matches(s)}


def from_set(words) -> ByteDFA:
    words = list(words)
    return ops.union(*[ByteDFA.literal(w) for w in words]) if words else ByteDFA.empty()


word_sets = st.sets(st.binary(max_size=3).map(lambda b: bytes(ALPHA[x % 3] for x in b)), max_size=5)


@settings(max_examples=80, deadline=None)
@given(word_sets, word_sets)
def test_boolean_ops_match_set_semantics(x, y):
    a, b = from_set(x), from_set(y)
    assert lang(a) == x and lang(b) == y
    assert lang(ops.union(a, b)) == x | y
    assert lang(ops.intersection(a, b)) == x & y
    assert lang(ops.difference(a, b)) == x - y
    # canonical: equal languages -> equal keys
    assert ops.union(a, b) == ops.union(b, a)
    assert ops.intersection(a, b) == from_set(x & y)


@settings(max_examples=60, deadline=None)
@given(word_sets, word_sets, st.integers(0, 2), st.one_of(st.none(), st.integers(0, 3)))
def test_concat_and_repeat(x, y, lo, hi):
    a, b = from_set(x), from_set(y)
    assert lang(ops.concat(a, b)) == {u + v for u in x for v in y} & set(UNIVERSE)
    if hi is not None and hi < lo:
        with pytest.raises(ValueError):
            ops.repeat(a, lo, hi)
        return
    r = ops.repeat(a, lo, hi)
    expect = set()
    top = hi if hi is not None else 4
    for n in range(lo, top + 1):
        for combo in itertools.product(sorted(x), repeat=n):
            w = b"".join(combo)
            if len(w) <= 4:
                expect.add(w)
    assert lang(r) == expect


FRAGMENTS = ["a*", "b", "(ab)+", "a|b", "[ab]{0,2}", "b?a", "", "ba*b", "[^a]"]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=2, max_size=4))
def test_concat_equals_regex_concatenation(parts):
    # overlapping splits (a* then a|b) take subset construction, forced ones (a* then b) are glued
    got = ops.concat(*[compile_regex(p) for p in parts])
    assert got == compile_regex("".join(f"(?:{p})" for p in parts))


def test_star_optional_plus():
    a = ByteDFA.literal(b"ab")
    assert lang(ops.star(a)) == {b"", b"ab", b"abab"}
    assert lang(ops.plus(a)) == {b"ab", b"abab"}
    assert lang(ops.optional(a)) == {b"", b"ab"}
    assert ops.star(ops.star(a)) == ops.star(a)
    assert ops.concat() == ByteDFA.literal(b"")
    assert ops.union().is_empty
    assert ops.concat(a, ByteDFA.empty()).is_empty
    assert ops.repeat(ByteDFA.empty(), 0, 3) == ByteDFA.literal(b"")


def test_results_equal_from_arrays():
    a = compile_regex("[a-z]+[0-9]*")
    b = compile_regex("[a-f0-9]{2,6}")
    for d in (ops.union(a, b), ops.intersection(a, b), ops.difference(a, b), ops.concat(a, b), ops.star(b)):
        assert ByteDFA.from_arrays(d.trans, d.accepting) == d
        assert d.n_states == ByteDFA.from_arrays(d.trans, d.accepting).n_states


def test_agrees_with_regex_compiler():
    a = compile_regex("[a-z]+")
    b = compile_regex("[a-m0-9]+")
    assert ops.intersection(a, b) == compile_regex("[a-m]+")
    assert ops.union(a, b) == compile_regex("[a-z]+|[a-m0-9]+")
    assert ops.concat(a, b) == compile_regex("[a-z]+[a-m0-9]+")
    assert ops.repeat(compile_regex("é|x"), 2, 3) == compile_regex("(é|x){2,3}")
    assert ops.difference(compile_regex("[a-c]"), compile_regex("b")) == compile_regex("[ac]")


def test_normalize_fast_equals_from_arrays():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 12))
        trans = rng.integers(-1, n, size=(n, 256)).astype(np.int32)
        trans[:, rng.random(256) < 0.9] = -1  # sparse
        acc = rng.random(n) < 0.4
        assert ops.normalize_fast(trans, acc) == ByteDFA.from_arrays(trans, acc)


def test_product_is_lazy_and_limited():
    # two 200-state chains: the product has ~200 reachable pairs, not 40000
    a = compile_regex("a{0,200}")
    b = compile_regex("a{100,300}")
    t = time.process_time()
    d = ops.intersection(a, b)
    assert time.process_time() - t < 2.0
    assert d == compile_regex("a{100,200}")
    with pytest.raises(CompileLimitError):
        ops.intersection(compile_regex("(a|b)*a(a|b){6}"), compile_regex("(a|b)*b(a|b){6}"), max_states=50)


@settings(max_examples=80, deadline=None)
@given(st.lists(word_sets, min_size=2, max_size=4))
def test_co_accepting_sets_equal_brute_force(languages):
    """``co_accepting`` finds exactly the sets of two or more DFAs that accept one same string."""
    from corral.automaton.dfa import co_accepting

    dfas = [from_set(words) for words in languages]
    expected = set()
    for s in UNIVERSE:
        both = frozenset(i for i, d in enumerate(dfas) if d.matches(s))
        if len(both) > 1:
            expected.add(both)
    assert set(co_accepting(dfas)) == expected


def test_co_accepting_keywords_and_names():
    """A keyword is also a name; a number is not."""
    from corral.automaton.dfa import co_accepting

    names = ["IN", "INT", "NAME", "NUMBER"]
    dfas = [compile_regex("in"), compile_regex("int"), compile_regex("[a-z]+"), compile_regex("[0-9]+")]
    found = {frozenset(names[i] for i in s) for s in co_accepting(dfas)}
    assert found == {frozenset({"IN", "NAME"}), frozenset({"INT", "NAME"})}
