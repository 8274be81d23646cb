"""Toy models and finite grammars whose conditionals P(x | x in L) can be enumerated."""

from __future__ import annotations

from corral import Grammar
from corral.sampling.toy import fair_coin_lm, random_lm, toy_vocabulary

BOS_GAD = 3  # fair_coin_lm's BOS id


def gad_problem(p_eos: float = 0.1):
    """The GAD paper's example: {00000} U 1{0,1}^4 under a fair coin (+EOS)."""
    lm, vocab = fair_coin_lm(p_eos)
    g = Grammar.from_regex("00000|1[01]{4}", vocab)
    return lm, g, [BOS_GAD]


TOKENS = ["a", "b", "c", "ab", "bc", "ca", "abc", "x"]


def random_problem(seed: int = 0, pattern: str = "(a|b|c)(ab|ca|c)?(abc|b)(a|bc)?c", concentration: float = 0.5):
    """A random-table model over multi-byte tokens (ambiguous tokenisations) and a finite regex."""
    vocab = toy_vocabulary(TOKENS)
    bos = vocab.size - 1
    lm = random_lm(vocab.size, seed, concentration=concentration, zero_ids=[bos])
    g = Grammar.from_regex(pattern, vocab)
    return lm, g, [bos]
