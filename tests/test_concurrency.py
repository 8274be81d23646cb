"""Concurrency and special tokens (issue 8): one Grammar shared by matchers in 8 threads."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from corral import Grammar, Vocabulary
from corral.testing import random_sentence

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "integer"},
                                           "xs": {"type": "array", "items": {"type": "boolean"}}},
          "required": ["name", "n"]}


def _trace(grammar, ids):
    m = grammar.matcher()
    out = []
    for t in ids:
        out.append(m.next_token_mask().tobytes())
        assert m.consume_token(t)
    out.append(m.next_token_mask().tobytes())
    return out


def test_parallel_matchers_equal_serial(llama3_tokenizer):
    tok = llama3_tokenizer
    rng = random.Random(0)
    base = Grammar.from_json_schema(SCHEMA)
    texts = list(dict.fromkeys(random_sentence(base.ir, rng).decode() for _ in range(48)))
    encode = (lambda s: tok.encode(s, add_special_tokens=False)) if hasattr(tok, "encode") else None
    seqs = [encode(t) for t in texts]
    serial_grammar = Grammar.from_json_schema(SCHEMA, tok)
    serial = [_trace(serial_grammar, ids) for ids in seqs]
    shared = Grammar.from_json_schema(SCHEMA, tok)  # fresh caches, filled concurrently
    with ThreadPoolExecutor(8) as ex:
        parallel = list(ex.map(lambda ids: _trace(shared, ids), seqs * 2))
    assert parallel == serial * 2


def test_special_tokens_never_in_masks_except_eos(llama3_tokenizer):
    g = Grammar.from_json_schema(SCHEMA, llama3_tokenizer)
    v = g.vocab
    special = np.array(sorted(v.special_ids - set(v.eos_ids)), dtype=np.int64)
    eos = np.array(v.eos_ids, dtype=np.int64)
    rng = random.Random(1)
    for _ in range(10):
        ids = llama3_tokenizer.encode(random_sentence(g.ir, rng).decode(), add_special_tokens=False)
        m = g.matcher()
        for t in ids + [None]:
            bits = np.unpackbits(m.next_token_mask().view(np.uint8), bitorder="little")
            assert not bits[special].any()
            assert bool(bits[eos].all()) == m.is_accepting() and bool(bits[eos].any()) == m.is_accepting()
            if t is None:
                break
            assert m.consume_token(t)
        assert m.consume_token(int(eos[0]))


def test_multiple_eos_ids():
    v = Vocabulary([None, None, b"a", b"b", b"ab"], eos_ids=[0, 1])
    g = Grammar.from_regex("a+b", v)
    for eos in (0, 1):
        m = g.matcher()
        assert not m.consume_token(eos)
        assert m.consume_tokens([2, 4]) == 2
        bits = np.unpackbits(m.next_token_mask().view(np.uint8), bitorder="little")
        assert bits[0] and bits[1] and not bits[3]
        assert m.consume_token(eos) and m.is_terminated()
        assert not m.consume_token(2)
