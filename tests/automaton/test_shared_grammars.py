"""Every published grammar under ../shared/data/grammars compiles, and the matcher checks hold on them.

Text level for all of them (random sentences accepted, collapsed and plain automata
agree); token level (canonical Llama-3 tokenization accepted step by step, EOS
exactly at the end) on a deterministic sample. Skips cleanly without the data.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

import pytest

from corral import Grammar, GrammarError, Vocabulary
from corral.testing import random_sentence

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "grammars"
# Grammars the authors' own tools reject (an undefined rule, a broken quote), and
# indentation-sensitive or start-less Lark files; everything else must compile.
BROKEN = ("/nlp/CP/", "euphony/11604909", "woosuk/sygus_iter_26_0_")
SKIP_LARK = ("python", "common.lark", "unicode.lark", "larkm/grammars/lark.lark")


def _files() -> list[Path]:
    if not DATA.exists():
        return []
    out = [p for ext in ("*.gbnf", "*.ebnf", "*.lark") for p in DATA.rglob(ext)]
    return sorted(p for p in out if not any(b in str(p) for b in BROKEN + SKIP_LARK))


FILES = _files()
TOKEN_LEVEL = {p for p in FILES if "llama.cpp" in str(p) or zlib.crc32(str(p.relative_to(DATA)).encode()) % 12 == 0}


def _compile(path: Path, vocab=None) -> Grammar:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".lark":
        return Grammar.from_lark(text, vocab)
    return Grammar.from_ebnf(text, vocab)


@pytest.mark.skipif(not FILES, reason="shared grammar data not present")
def test_every_shared_grammar_compiles_and_accepts_its_sentences():
    failures = []
    for path in FILES:
        try:
            g = _compile(path)
        except GrammarError as e:
            failures.append(f"{path.relative_to(DATA)}: {e}")
            continue
        rng = random.Random(zlib.crc32(path.name.encode()))
        for _ in range(3):
            s = random_sentence(g.source_ir, rng, max_depth=6)
            if not g.accepts(s):
                failures.append(f"{path.relative_to(DATA)}: refused its own sentence {s[:80]!r}")
                break
    assert not failures, "\n".join(failures[:20])


@pytest.mark.skipif(not FILES, reason="shared grammar data not present")
@pytest.mark.parametrize("path", sorted(TOKEN_LEVEL), ids=lambda p: str(p.relative_to(DATA)))
def test_shared_grammar_token_level(path, llama3_tokenizer):
    vocab = Vocabulary.from_tokenizer(llama3_tokenizer)
    g = _compile(path, vocab)
    rng = random.Random(zlib.crc32(path.name.encode()))
    done = 0
    for _ in range(6):
        text = random_sentence(g.source_ir, rng, max_depth=5).decode("utf-8")
        ids = llama3_tokenizer.encode(text, add_special_tokens=False)
        if vocab.decode_bytes(ids) != text.encode("utf-8") or len(ids) > 120:
            continue
        m = g.matcher()
        for tid in ids:
            mask = m.next_token_mask()
            assert (int(mask[tid >> 5]) >> (tid & 31)) & 1, (text, vocab.token_str(tid))
            assert m.consume_token(tid)
        assert m.is_accepting()
        done += 1
        if done == 2:
            break
