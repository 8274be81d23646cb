"""Tools for tests: random sentences of any grammar, a hypothesis strategy, and assertions.

The same compiled grammar that constrains generation decides what these accept,
so "what the model may emit" and "what the test accepts" cannot disagree.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

from .automaton.dfa import ByteDFA
from .automaton.ir import GrammarIR

__all__ = ["random_sentence", "random_dfa_string", "sentences", "assert_matches"]


def _distance_to_accept(dfa: ByteDFA) -> np.ndarray:
    n = dfa.n_states
    dist = np.full(n, np.iinfo(np.int32).max, dtype=np.int64)
    dist[dfa.accepting] = 0
    changed = True
    trans = dfa.trans
    while changed:
        safe = np.where(trans >= 0, trans, 0)
        cand = np.where(trans >= 0, dist[safe] + 1, np.iinfo(np.int32).max).min(axis=1)
        new = np.minimum(dist, cand)
        changed = bool((new != dist).any())
        dist = new
    return dist


_dist_cache: dict[bytes, np.ndarray] = {}


def random_dfa_string(dfa: ByteDFA, rng: random.Random, mean_extra: float = 4.0) -> bytes:
    """A random member of the DFA's language: wander, then head for the nearest accepting state."""
    dist = _dist_cache.get(dfa.key())
    if dist is None:
        dist = _distance_to_accept(dfa)
        _dist_cache[dfa.key()] = dist
    out = bytearray()
    q = 0
    budget = int(rng.expovariate(1.0 / mean_extra)) if mean_extra > 0 else 0
    trans = dfa.trans
    while True:
        if dfa.accepting[q] and (budget <= 0 or rng.random() < 0.25):
            return bytes(out)
        row = trans[q]
        live = np.flatnonzero(row >= 0)
        if len(live) == 0:
            return bytes(out)
        if budget > 0:
            b = int(live[rng.randrange(len(live))])
            budget -= 1
        else:
            d = dist[row[live]]
            best = live[d == d.min()]
            b = int(best[rng.randrange(len(best))])
        out.append(b)
        q = int(row[b])


def random_sentence(ir: GrammarIR, rng: random.Random | int | None = None, *, max_depth: int = 12, ignore_rate: float = 0.2) -> bytes:
    """A random sentence of the IR's language (rules chosen at random, depth bounded)."""
    if not isinstance(rng, random.Random):
        rng = random.Random(rng)
    nt = ir.n_terminals
    rules_of: dict[int, list[tuple[int, ...]]] = {}
    for lhs, rhs in ir.rules:
        rules_of.setdefault(lhs, []).append(rhs)
    height = _min_heights(ir)
    out = bytearray()

    def rule_height(rhs: tuple[int, ...]) -> int:
        return 1 + max((height.get(s, 0) for s in rhs), default=0)

    def emit_terminal(t: int) -> None:
        if ir.ignore and rng.random() < ignore_rate:
            out.extend(random_dfa_string(ir.terminals[rng.choice(ir.ignore)], rng, 1.0))
        out.extend(random_dfa_string(ir.terminals[t], rng))

    # explicit stack of (symbol, depth) to avoid Python recursion limits
    stack: list[tuple[int, int]] = [(ir.start, 0)]
    while stack:
        sym, depth = stack.pop()
        if sym < nt:
            emit_terminal(sym)
            continue
        options = rules_of[sym]
        if depth >= max_depth:
            h = min(rule_height(r) for r in options)
            options = [r for r in options if rule_height(r) == h]
        rhs = options[rng.randrange(len(options))]
        for s in reversed(rhs):
            stack.append((s, depth + 1))
    return bytes(out)


def _min_heights(ir: GrammarIR) -> dict[int, int]:
    nt = ir.n_terminals
    height: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for lhs, rhs in ir.rules:
            if all(s < nt or s in height for s in rhs):
                h = 1 + max((height.get(s, 0) for s in rhs), default=0)
                if h < height.get(lhs, 1 << 30):
                    height[lhs] = h
                    changed = True
    return height


def sentences(grammar: Any, *, max_depth: int = 10):
    """A hypothesis strategy drawing sentences (``str``) of a grammar or GrammarIR.

    Draws are driven by hypothesis' random source, so failures shrink toward
    small seeds. Every drawn sentence is accepted by the grammar by construction
    and checked again before it is returned.
    """
    from hypothesis import strategies as st

    ir = grammar if isinstance(grammar, GrammarIR) else grammar.ir

    @st.composite
    def _draw(draw):
        seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
        data = random_sentence(ir, random.Random(seed), max_depth=max_depth)
        return data.decode("utf-8")

    return _draw()


def assert_matches(output: str | bytes, grammar: Any) -> None:
    """Assert that ``output`` is a sentence of ``grammar``, with a readable failure message."""
    from .errors import ValidationError

    try:
        grammar.check(output)
    except ValidationError as e:
        raise AssertionError(f"output does not match the grammar: {e}") from None
