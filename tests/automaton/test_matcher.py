"""The token-level automaton against independent oracles.

Oracles: the byte automaton's own viability walk (a different code path from the
precomputed inside/cross masks), Python's ``json`` module for the JSON grammar,
and enumeration for tiny vocabularies.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from corral.automaton.dfa import ByteDFA
from corral.automaton.grammar import Grammar
from corral.automaton.ir import IRBuilder
from corral.testing import random_sentence
from corral.vocab import Vocabulary


def char_class(chars: bytes, plus: bool = False) -> ByteDFA:
    """[chars] or [chars]+ as a byte DFA."""
    trans = np.full((2, 256), -1, np.int32)
    for c in chars:
        trans[0, c] = 1
        if plus:
            trans[1, c] = 1
    return ByteDFA.from_arrays(trans, np.array([False, True]))


def string_dfa() -> ByteDFA:
    """A JSON string with the escapes \\" \\\\ \\n (enough for these tests)."""
    trans = np.full((4, 256), -1, np.int32)
    trans[0, ord('"')] = 1
    for c in range(0x20, 0x80):
        if c not in (ord('"'), ord("\\")):
            trans[1, c] = 1
    trans[1, ord('"')] = 2
    trans[1, ord("\\")] = 3
    for c in b'"\\n':
        trans[3, c] = 1
    return ByteDFA.from_arrays(trans, np.array([False, False, True, False]))


def int_dfa() -> ByteDFA:
    """0 | [1-9][0-9]*"""
    trans = np.full((3, 256), -1, np.int32)
    trans[0, ord("0")] = 2
    for c in b"123456789":
        trans[0, c] = 1
    for c in b"0123456789":
        trans[1, c] = 1
    return ByteDFA.from_arrays(trans, np.array([False, True, True]))


def json_ir(ws: bool = False):
    b = IRBuilder()
    val, obj, arr, pair = (b.nonterminal(n) for n in ("value", "object", "array", "pair"))
    s = b.terminal(string_dfa(), "STRING")
    n = b.terminal(int_dfa(), "NUMBER")
    for x in (obj, arr, s, n, b.literal("true"), b.literal("null")):
        b.rule(val, [x])
    b.rule(pair, [s, b.literal(":"), val])
    comma = b.literal(",")
    b.rule(obj, [b.literal("{"), b.optional(b.seq([pair, b.star(b.seq([comma, pair]))])), b.literal("}")])
    b.rule(arr, [b.literal("["), b.optional(b.seq([val, b.star(b.seq([comma, val]))])), b.literal("]")])
    if ws:
        b.ignore(b.terminal(char_class(b" \n", plus=True), "WS"))
    return b.build(val)


def expr_ir():
    """Left-recursive, with %ignore: e -> e + t | t ; t -> t * f | f ; f -> ( e ) | NUM."""
    b = IRBuilder()
    e, t, f = b.nonterminal("e"), b.nonterminal("t"), b.nonterminal("f")
    num = b.terminal(char_class(b"0123456789", plus=True), "NUM")
    b.rule(e, [e, b.literal("+"), t])
    b.rule(e, [t])
    b.rule(t, [t, b.literal("*"), f])
    b.rule(t, [f])
    b.rule(f, [b.literal("("), e, b.literal(")")])
    b.rule(f, [num])
    b.ignore(b.terminal(char_class(b" ", plus=True), "WS"))
    return b.build(e)


def ambiguous_ir():
    """s -> s s | 'a' | 'ab' | <empty> : ambiguous, left-recursive, nullable."""
    b = IRBuilder()
    s = b.nonterminal("s")
    b.rule(s, [s, s])
    b.rule(s, [b.literal("a")])
    b.rule(s, [b.literal("ab")])
    b.rule(s, [])
    return b.build(s)


def toy_vocab(alphabet: bytes, max_len: int = 2) -> Vocabulary:
    toks: list[bytes | None] = [None]  # id 0: EOS
    level = [b""]
    for _ in range(max_len):
        level = [p + bytes([c]) for p in level for c in alphabet]
        toks.extend(level)
    return Vocabulary(toks, eos_ids=[0])


def mask_ids(m) -> set[int]:
    return set(m.allowed_token_ids().tolist())


def oracle_ids(g: Grammar, vocab: Vocabulary, prefix: bytes) -> set[int]:
    out = {i for i, tb in enumerate(vocab.token_bytes) if tb and g.is_viable_prefix(prefix + tb)}
    if g.accepts(prefix):
        out.update(vocab.eos_ids)
    return out


GRAMMARS = {
    "expr": (expr_ir, b"0123+*() x"),
    "json": (json_ir, b'{}[]":,0123ab\\tnuel '),
    "ambiguous": (ambiguous_ir, b"abc"),
}


@pytest.mark.parametrize("name", sorted(GRAMMARS))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_masks_equal_viability_oracle_on_random_walks(name, seed):
    make, alphabet = GRAMMARS[name]
    vocab = toy_vocab(alphabet)
    g = Grammar(make(), vocab)
    rng = random.Random(seed)
    m = g.matcher()
    prefix = b""
    for _ in range(12):
        allowed = mask_ids(m)
        assert allowed == oracle_ids(g, vocab, prefix), prefix
        choices = sorted(allowed - {0})
        if not allowed:
            break  # the toy vocabulary cannot spell any continuation (e.g. no 'e' for "true")
        if not choices or (0 in allowed and rng.random() < 0.2):
            assert m.consume_token(0) and m.is_terminated()
            break
        tid = rng.choice(choices)
        assert m.consume_token(tid)
        prefix += vocab.token_bytes[tid]
        # every walk stays a viable prefix (soundness)
        assert g.is_viable_prefix(prefix)


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_random_sentences_are_accepted_byte_by_byte_and_tokenwise(name):
    make, _ = GRAMMARS[name]
    ir = make()
    vocab = Vocabulary([None] + [bytes([c]) for c in range(256)], eos_ids=[0])
    g = Grammar(ir, vocab)
    rng = random.Random(7)
    for _ in range(40):
        s = random_sentence(ir, rng, max_depth=8)
        assert g.accepts(s), s
        m = g.matcher()
        ids = [vocab.id_of_bytes[bytes([c])][0] for c in s]
        assert m.consume_tokens(ids) == len(ids)
        assert m.is_accepting()
        assert m.consume_token(0) and m.is_terminated()


def test_expression_grammar_language():
    g = Grammar(expr_ir())
    for ok in ["1", "1+2", "1+2*3", "(1+2)*3", " ( ( 1 ) ) ", "12 + 3 * (4+5)"]:
        assert g.accepts(ok), ok
    for bad in ["", "1+", "(1", "12 34", "1++2", "()", "+1"]:
        assert not g.accepts(bad), bad
    assert g.is_viable_prefix("(1+")
    assert not g.is_viable_prefix("(1+)")


def test_json_grammar_agrees_with_json_module():
    g = Grammar(json_ir())
    rng = random.Random(3)
    ir = json_ir()
    for _ in range(200):
        s = random_sentence(ir, rng, max_depth=6).decode()
        json.loads(s)  # every generated sentence is JSON
        assert g.accepts(s)
        cut = s[: rng.randrange(len(s))]
        if cut:
            assert not g.accepts(cut) or _is_json(cut)


def _is_json(s: str) -> bool:
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


def test_rollback_copy_and_forced_agree_with_replay():
    vocab = toy_vocab(b'{}[]":,0123ab', max_len=2)
    g = Grammar(json_ir(), vocab)
    rng = random.Random(11)
    for _ in range(30):
        m = g.matcher()
        taken: list[int] = []
        for _ in range(rng.randrange(1, 15)):
            allowed = sorted(mask_ids(m) - {0})
            if not allowed:
                break
            t = rng.choice(allowed)
            assert m.consume_token(t)
            taken.append(t)
        fork = m.copy()
        n = rng.randrange(0, len(taken) + 1)
        m.rollback(n)
        replay = g.matcher()
        assert replay.consume_tokens(taken[: len(taken) - n]) == len(taken) - n
        assert replay.state == m.state
        assert np.array_equal(replay.next_token_mask(), m.next_token_mask())
        # the fork is unaffected by the rollback
        again = g.matcher()
        again.consume_tokens(taken)
        assert fork.state == again.state
        # forced tokens: the only allowed token at each step, then replay gives singletons
        forced = fork.forced_tokens()
        probe = fork.copy()
        for t in forced:
            assert mask_ids(probe) == {t}
            assert probe.consume_token(t)
        assert len(mask_ids(probe)) != 1 or probe.is_accepting() or probe.is_terminated() or mask_ids(probe) == {0}


def test_refused_token_leaves_state_unchanged_and_eos_rules():
    vocab = toy_vocab(b"0123+*() ", max_len=1)
    g = Grammar(expr_ir(), vocab)
    m = g.matcher()
    plus = vocab.id_of_bytes[b"+"][0]
    one = vocab.id_of_bytes[b"1"][0]
    s0 = m.state
    assert not m.consume_token(plus)
    assert m.state == s0 and m.num_tokens == 0
    assert not m.consume_token(0)  # EOS not allowed before a complete sentence
    assert m.consume_token(one)
    assert m.is_accepting()
    assert m.consume_token(0)
    assert m.is_terminated()
    assert not m.consume_token(one)
    assert mask_ids(m) == {0}
    m.rollback(1)
    assert not m.is_terminated() and m.is_accepting()
    with pytest.raises(ValueError):
        m.rollback(5)


def test_mask_is_cached_only_after_the_mask_is_computed():
    vocab = toy_vocab(b"0123+*() ", max_len=1)
    m = Grammar(expr_ir(), vocab).matcher()
    assert m.mask_is_cached()  # the first state's mask is computed with the grammar
    assert m.consume_token(vocab.id_of_bytes[b"("][0])
    assert not m.mask_is_cached()
    m.next_token_mask()
    assert m.mask_is_cached()


def test_forced_bytes():
    b = IRBuilder()
    s = b.nonterminal("s")
    b.rule(s, [b.literal('{"name":'), b.terminal(string_dfa(), "STRING"), b.literal("}")])
    g = Grammar(b.build(s), toy_vocab(b'{}":name', max_len=1))
    m = g.matcher()
    assert m.forced_bytes() == b'{"name":"'
    assert m.consume_bytes(b'{"name":"x')
    assert m.forced_bytes() == b""  # more characters or the closing quote
    assert m.consume_bytes(b'"')
    assert m.forced_bytes() == b"}"
    assert m.consume_bytes(b"}")
    assert m.is_accepting() and m.forced_bytes() == b""


def test_bitmask_layout_and_width():
    import torch

    vocab = Vocabulary([None, b"a", b"b", b"ab"], eos_ids=[0], size=70)  # ids past 3 are padding
    b = IRBuilder()
    s = b.nonterminal("s")
    b.rule(s, [b.literal("ab")])
    g = Grammar(b.build(s), vocab)
    m = g.matcher()
    bm = torch.full((2, 3), -1, dtype=torch.int32)
    m.fill_next_token_bitmask(bm, row=1)
    assert bm[0].tolist() == [-1, -1, -1]  # other rows untouched
    allowed = [i for i in range(70) if (int(bm[1, i // 32]) >> (i % 32)) & 1]
    assert allowed == [1, 3]
    assert m.allowed_token_ids().tolist() == [1, 3]


def test_bitmask_writes_follow_the_tensor_through_strides_and_reallocation():
    """The mask is written through a cached numpy view of a host tensor; strided tensors, a
    tensor whose storage moved, and a second tensor all get the same words as the reference."""
    import torch

    vocab = Vocabulary([None, b"a", b"b", b"ab"], eos_ids=[0], size=70)
    b = IRBuilder()
    s = b.nonterminal("s")
    b.rule(s, [b.literal("ab")])
    m = Grammar(b.build(s), vocab).matcher()
    want = m.next_token_mask().view(np.int32).tolist() + [0]  # one padding word past the mask

    plain = torch.full((2, 4), -1, dtype=torch.int32)
    m.fill_next_token_bitmask(plain, row=0)
    assert plain[0].tolist() == want and plain[1].tolist() == [-1] * 4

    plain.set_(torch.full((8, 4), -1, dtype=torch.int32))  # a new storage behind the same object
    m.fill_next_token_bitmask(plain, row=7)
    assert plain[7].tolist() == want and plain[6].tolist() == [-1] * 4

    strided = torch.full((4, 2), -1, dtype=torch.int32).t()  # last dimension not contiguous
    m.fill_next_token_bitmask(strided, row=1)
    assert strided[1].tolist() == want and strided[0].tolist() == [-1] * 4

    m.consume_token(1)
    m.fill_next_token_bitmask(plain, row=0)
    assert plain[0].tolist() == m.next_token_mask().view(np.int32).tolist() + [0]


def test_ignored_text_before_a_collapsed_start_rule_agrees_with_lark():
    """Regression (found by benchmarks/fuzz.py): ignored text first, then a terminal that
    the start rule may also begin with; the automaton merges both readings into one column."""
    import lark

    text = 'start: "ab" "ab"* | start? "ab"? | "x"i? ("a" /a+/* "ab" | "a")\n%ignore " "\n'
    g = Grammar.from_lark(text)
    parser = lark.Lark(text, parser="earley", lexer="dynamic_complete")
    for s in [" a", " ", "", "  a  ab ", "b", "ab", " x a", "Xaab", "a b"]:
        try:
            parser.parse(s)
            expected = True
        except lark.exceptions.LarkError:
            expected = False
        assert g.accepts(s) == expected, s


def prefix_ops_ir():
    """e -> e + t | t ; t -> - t | ( e ) | NUM: chains of prefix operators and parentheses."""
    b = IRBuilder()
    e, t = b.nonterminal("e"), b.nonterminal("t")
    b.rule(e, [e, b.literal("+"), t])
    b.rule(e, [t])
    b.rule(t, [b.literal("-"), t])
    b.rule(t, [b.literal("("), e, b.literal(")")])
    b.rule(t, [b.terminal(char_class(b"0123456789", plus=True), "NUM")])
    return b.build(e)


def test_long_operator_tokens_against_oracle_with_a_bounded_view(monkeypatch):
    """Tokens made of long runs of ``-``, ``(`` and ``)`` (as real vocabularies have) cross
    many terminals at once. The masks still equal the oracle's, and the columns that the
    shared crossing masks explore stay few: those reached from a column image are cut back
    like the image, instead of one new column per operator in the token."""
    toks: list[bytes | None] = [None]
    for k in range(1, 41):
        toks += [b"-" * k, b"(" * k, b")" * k, b"-" * k + b"1", b"1" + b")" * k, b"(" * k + b"-"]
    toks += [b"1", b"+", b"+-", b"2"]
    vocab = Vocabulary(toks, eos_ids=[0])
    from corral.automaton import grammar as G

    monkeypatch.setattr(G, "_EAGER_IMAGES", 0)  # count only the columns that masks explore
    g = Grammar(prefix_ops_ir(), vocab)
    rng = random.Random(7)
    for _ in range(6):
        m, prefix = g.matcher(), b""
        for _ in range(8):
            allowed = mask_ids(m)
            assert allowed == oracle_ids(g, vocab, prefix), prefix
            choices = sorted(allowed - {0})
            if not choices:
                break
            tid = rng.choice(choices)
            assert m.consume_token(tid)
            prefix += vocab.token_bytes[tid]
    assert g._masker._horizon.parser.n_columns < 40


def test_a_grown_automaton_is_renewed_for_new_matchers_while_running_ones_keep_theirs(monkeypatch):
    """The automaton interns every state a sequence reaches, so a long-lived grammar grows with
    each new sentence. Past ``_RENEW_STATES`` states, new matchers and text queries start on a
    fresh automaton; matchers already running keep theirs (their state ids mean nothing on
    the new one) until they are dropped, and then it is freed. Masks are unchanged by it."""
    import gc
    import weakref

    from corral.automaton import grammar as G

    vocab = toy_vocab(b"0123+*() x", max_len=2)
    reference = Grammar(expr_ir(), vocab)
    rng = random.Random(5)
    walks = []  # (tokens, the mask before each token and at the end), from a grammar left alone
    for _ in range(12):
        m, tokens, masks = reference.matcher(), [], []
        for _ in range(rng.randrange(4, 16)):
            masks.append(mask_ids(m))
            choices = sorted(masks[-1] - {0})
            if not choices:
                break
            tokens.append(rng.choice(choices))
            m.consume_token(tokens[-1])
        masks.append(mask_ids(m))
        walks.append((tokens, masks))

    monkeypatch.setattr(G, "_RENEW_STATES", 20)
    g = Grammar(expr_ir(), vocab)
    tokens0, masks0 = walks[0]
    half = len(tokens0) // 2
    running = g.matcher()
    assert running.consume_tokens(tokens0[:half]) == half
    first = running.state_key
    first_automaton = weakref.ref(g.automaton)
    generations = set()
    for tokens, masks in walks[1:]:
        m = g.matcher()
        generations.add(m.state_key[0])
        for t, want in zip(tokens, masks):
            assert mask_ids(m) == want
            assert m.consume_token(t)
        assert mask_ids(m) == masks[-1]
        assert g.automaton.n_states <= 20 + 200  # renewed before growing far past the limit
    assert len(generations | {first[0]}) > 2  # renewed, more than once

    fork = running.copy()  # a copy stays on the automaton its state ids belong to
    for m in (running, fork):
        for k, t in enumerate(tokens0[half:], start=half):
            assert mask_ids(m) == masks0[k]
            assert m.consume_token(t)
        assert mask_ids(m) == masks0[-1]
        m.rollback(len(tokens0) - half)
        assert m.state_key == first
    fresh = g.matcher()
    assert fresh.state == Grammar(expr_ir(), vocab).matcher().state and fresh.state_key != first
    assert g.accepts(b"(1+2) * 3") and not g.accepts(b"(1+")

    del running, fork, m
    gc.collect()
    assert first_automaton() is None  # the last matcher on it is gone, so is the old automaton


def test_a_text_only_grammar_renews_its_automaton_too(monkeypatch):
    from corral.automaton import grammar as G

    monkeypatch.setattr(G, "_RENEW_STATES", 30)
    g = Grammar(expr_ir())
    first = g.automaton
    for seed in range(40):
        sentence = random_sentence(g.ir, seed)
        assert g.accepts(sentence)
        assert not g.accepts(sentence + b"+")
    assert g.automaton is not first
