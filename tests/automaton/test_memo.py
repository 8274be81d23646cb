"""Bounded caches: they forget their oldest entries past a weight limit, and what the mask
memos forget is computed again the same."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from corral.automaton import masks as M
from corral.automaton.memo import BoundedCache
from corral.automaton.regex import compile_regex
from corral.vocab import Vocabulary


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 30)), min_size=1, max_size=200),
       st.integers(30, 200))
def test_bounded_cache_keeps_its_newest_entries_within_the_limit(writes, limit):
    cache = BoundedCache(limit, weigh=len)
    model: dict[int, bytes] = {}
    for key, size in writes:
        value = bytes(size)
        cache[key] = value
        model[key] = value
        assert cache.weight == sum(len(v) for v in cache.values())
        assert cache.weight <= max(limit, size)
        assert cache[key] is value  # the entry just written is never the one dropped
        assert all(model[k] is v for k, v in cache.items())  # what is kept is the latest value
    kept = list(cache)
    assert kept == [k for k in dict.fromkeys(k for k, _ in reversed(writes)) if k in cache][::-1]
    cache.clear()
    assert cache.weight == 0 and not cache


def test_setdefault_keeps_the_first_value_and_counts_it():
    cache = BoundedCache(10, weigh=len)
    assert cache.setdefault("a", b"xyz") == b"xyz"
    assert cache.setdefault("a", b"other") == b"xyz"
    assert cache.weight == 3
    for i in range(10):
        cache.setdefault(i, b"12")
    assert cache.weight <= 10 and 9 in cache and "a" not in cache


def test_mask_memos_stay_within_their_bytes_and_recompute_the_same(smollm_tokenizer, monkeypatch):
    """The memos shared by every grammar (terminal-state masks, crossing walks) grow with every
    new terminal a process compiles (each JSON schema brings its own). With small limits they
    stay within them, and masks computed again after being dropped equal the first ones."""
    vocab = Vocabulary.from_tokenizer(smollm_tokenizer)
    M.clear_cache()
    monkeypatch.setattr(M._tsm_cache, "limit", 2 * 4 * vocab.n_words * 4)  # about two states' masks
    dfas = [compile_regex(p) for p in (r"[a-z]{2,9}", r"-?[0-9]+(\.[0-9]+)?", r'"([^"\\]|\\.)*"', r"(true|false|null)")]
    first = {}
    for i, dfa in enumerate(dfas):
        for q in range(min(dfa.n_states, 6)):
            m = M.terminal_state_masks(vocab, dfa, q)
            first[(i, q)] = (m.inside.copy(), m.rec_node.copy(), m.cuts.copy())
            assert M._tsm_cache.weight <= M._tsm_cache.limit + M._tsm_bytes(m) * 2
    assert len(first) > 10 and len(M._tsm_cache) < 2 * len(first)
    for (i, q), (inside, nodes, cuts) in first.items():
        m = M.terminal_state_masks(vocab, dfas[i], q)
        assert np.array_equal(m.inside, inside) and np.array_equal(m.rec_node, nodes) and np.array_equal(m.cuts, cuts)
    M.clear_cache()
