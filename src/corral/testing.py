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

__all__ = ["random_sentence", "random_dfa_string", "sentences", "documents", "assert_matches"]


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
    budget = _budget(rng, mean_extra)
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


def _budget(rng: Any, mean_extra: float) -> int:
    if mean_extra <= 0:
        return 0
    try:
        return min(int(rng.expovariate(1.0 / mean_extra)), 64 * int(mean_extra + 1))
    except (OverflowError, ValueError):  # a degenerate random() of 0.0 / 1.0
        return 0


def random_sentence(ir: GrammarIR, rng: random.Random | int | None = None, *, max_depth: int = 12, ignore_rate: float = 0.2) -> bytes:
    """A random sentence of the IR's language (rules chosen at random, depth bounded)."""
    if rng is None or isinstance(rng, (int, float, str, bytes)):
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
        options = sorted(rules_of[sym], key=rule_height)  # index 0 = shortest: draws shrink toward it
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


class _DataRandom:
    """A ``random.Random`` look-alike whose choices are hypothesis draws (so they shrink toward 0)."""

    def __init__(self, draw) -> None:
        from hypothesis import strategies as st

        self._draw = draw
        self._st = st

    def randrange(self, n: int) -> int:
        return self._draw(self._st.integers(0, n - 1)) if n > 1 else 0

    def random(self) -> float:
        return self._draw(self._st.integers(0, 1023)) / 1024

    def choice(self, seq):
        return seq[self.randrange(len(seq))]

    def expovariate(self, lambd: float) -> float:
        # shrinks toward 0 (no extra wandering); mean about 1/lambd
        return float(self._draw(self._st.integers(0, max(1, int(4 / lambd)))))


def _as_grammar(grammar_or_schema: Any):
    """A Grammar/GrammarIR as is; a dict/bool JSON Schema compiled (cached by its JSON text)."""
    if isinstance(grammar_or_schema, (dict, bool)):
        import json

        from .automaton.grammar import Grammar

        key = json.dumps(grammar_or_schema, sort_keys=True)
        g = _schema_cache.get(key)
        if g is None:
            g = _schema_cache[key] = Grammar.from_json_schema(grammar_or_schema)
        return g
    return grammar_or_schema


_schema_cache: dict[str, Any] = {}


def sentences(grammar: Any, *, max_depth: int = 10):
    """A hypothesis strategy drawing sentences (``str``) of a grammar, GrammarIR or JSON Schema dict.

    Every rule choice and every byte is a hypothesis draw, so failing examples shrink
    toward small sentences (first / shortest alternatives, no optional wandering). Each
    drawn sentence is accepted by the grammar by construction and checked again; for a
    schema dict it also validates with ``jsonschema`` (documents in the grammar's
    compact layout and schema property order). See ``documents`` for parsed values.
    """
    from hypothesis import strategies as st

    g = _as_grammar(grammar)
    ir = g if isinstance(g, GrammarIR) else g.ir
    validator = None
    if isinstance(grammar, (dict, bool)):
        import jsonschema

        validator = jsonschema.validators.validator_for(grammar)(grammar)
    if not ir.rules:
        return st.nothing()  # an empty language (e.g. the schema ``false``)

    @st.composite
    def _draw(draw):
        data = random_sentence(ir, _DataRandom(draw), max_depth=max_depth)
        text = data.decode("utf-8")
        if not isinstance(g, GrammarIR) and not g.accepts(data):  # pragma: no cover - a corral bug
            raise AssertionError(f"corral.testing drew a sentence its grammar rejects: {text!r}")
        if validator is not None:
            import json

            errors = list(validator.iter_errors(json.loads(text)))
            if errors:  # pragma: no cover - a corral bug
                raise AssertionError(f"corral.testing drew a document the schema rejects: {text!r}: {errors[0].message}")
        return text

    return _draw()


def documents(schema: Any, *, max_depth: int = 10):
    """A hypothesis strategy of parsed JSON values valid against ``schema`` (a dict or bool)."""
    import json

    return sentences(schema, max_depth=max_depth).map(json.loads)


def assert_matches(output: str | bytes, grammar: Any) -> None:
    """Assert that ``output`` is a sentence of ``grammar`` (a Grammar or a JSON Schema dict).

    The failure message names the byte offset, the text around it and what was expected;
    for a schema it also lists the ``jsonschema`` errors when the text is JSON.
    """
    from .errors import ValidationError

    g = _as_grammar(grammar)
    try:
        g.check(output)
    except ValidationError as e:
        msg = f"output does not match the grammar: {e}"
        if isinstance(grammar, (dict, bool)):
            import json

            import jsonschema

            try:
                value = json.loads(output)
            except ValueError:
                msg += "\n(not JSON)"
            else:
                v = jsonschema.validators.validator_for(grammar)(grammar)
                errs = [f"  at {'/'.join(map(str, x.absolute_path)) or '#'}: {x.message}" for x in v.iter_errors(value)]
                msg += "\njsonschema: " + ("\n" + "\n".join(errs) if errs else "valid (layout or property order differs from the grammar's)")
        raise AssertionError(msg) from None
