"""Test helpers for the source front ends.

* ``random_sentence(ir, rng)``: a random sentence of a GrammarIR (bounded depth; terminals
  sampled by a random walk in their DFA that heads for acceptance after a few steps).
* ``ensure_compile_regex()``: the real ``corral.automaton.regex.compile_regex`` when it
  exists, else a stand-in built on interegular (test-only; never shipped).
* ``grammar_accepts_available()``: whether the compiled ``Grammar`` can be used.
"""

from __future__ import annotations

import random

import numpy as np

from corral.automaton.dfa import ByteDFA
from corral.automaton.ir import GrammarIR

# ------------------------------------------------------------------ random sentences

_dist_cache: dict[bytes, np.ndarray] = {}


def _dist(dfa: ByteDFA) -> np.ndarray:
    k = dfa.key()
    if k not in _dist_cache:
        n = dfa.n_states
        big = 1 << 40
        dist = np.where(dfa.accepting, 0, big).astype(np.int64)
        trans = dfa.trans
        safe = np.where(trans >= 0, trans, 0)
        while True:
            cand = np.where(trans >= 0, dist[safe] + 1, big).min(axis=1) if n else dist
            new = np.minimum(dist, cand)
            if (new == dist).all():
                break
            dist = new
        _dist_cache[k] = dist
    return _dist_cache[k]


def _utf8_next_bytes(row: np.ndarray) -> np.ndarray:
    return np.flatnonzero(row >= 0)


def dfa_sample(dfa: ByteDFA, rng: random.Random, wander: int = 6) -> bytes:
    """A random string of the DFA's language."""
    dist = _dist(dfa)
    q = 0
    out = bytearray()
    steps = 0
    budget = rng.randint(0, wander)
    while True:
        row = dfa.trans[q]
        choices = _utf8_next_bytes(row)
        if dfa.accepting[q] and (steps >= budget or len(choices) == 0 or rng.random() < 0.3):
            return bytes(out)
        if steps >= budget:
            # head for acceptance: only moves that decrease the distance
            choices = [c for c in choices if dist[row[c]] < dist[q]]
        c = int(rng.choice(list(choices)))
        out.append(c)
        q = int(row[c])
        steps += 1


def _min_heights(ir: GrammarIR) -> dict[int, int]:
    h: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for lhs, rhs in ir.rules:
            if all(ir.is_terminal(s) or s in h for s in rhs):
                v = 1 + max((h.get(s, 0) for s in rhs if not ir.is_terminal(s)), default=0)
                if v < h.get(lhs, 1 << 30):
                    h[lhs] = v
                    changed = True
    return h


def random_sentence(ir: GrammarIR, rng: random.Random, max_depth: int = 10, ignore_rate: float = 0.25) -> bytes:
    heights = _min_heights(ir)
    by_lhs: dict[int, list[tuple[int, ...]]] = {}
    for lhs, rhs in ir.rules:
        by_lhs.setdefault(lhs, []).append(rhs)

    def rh(rhs):
        return max((heights[s] for s in rhs if not ir.is_terminal(s)), default=0)

    out = bytearray()

    def maybe_ignore():
        while ir.ignore and rng.random() < ignore_rate:
            out.extend(dfa_sample(ir.terminals[rng.choice(ir.ignore)], rng))

    maybe_ignore()
    # iterative expansion (explicit stack) to avoid Python recursion limits
    stack: list[tuple[int, int]] = [(ir.start, 0)]
    while stack:
        sym, depth = stack.pop()
        if ir.is_terminal(sym):
            out.extend(dfa_sample(ir.terminals[sym], rng))
            maybe_ignore()
            continue
        alts = by_lhs[sym]
        if depth >= max_depth:
            best = min(rh(a) for a in alts)
            alts = [a for a in alts if rh(a) == best]
        rhs = rng.choice(alts)
        for s in reversed(rhs):
            stack.append((s, depth + 1))
    return bytes(out)


# ------------------------------------------------------------------ regex stand-in


def _interegular_compile(pattern: str, *, flags: str = "", dialect: str = "python", search: bool = False) -> ByteDFA:
    import interegular
    from interegular.fsm import anything_else

    from corral.errors import RegexError
    from corral.sources.ebnf import _class_dfa_cached, _complement, _normalize_ranges, nfa_to_bytedfa

    if flags:
        pattern = f"(?{flags}:{pattern})"
    try:
        fsm = interegular.parse_pattern(pattern).to_fsm()
    except Exception as e:  # noqa: BLE001
        raise RegexError(f"cannot compile {pattern!r}: {e}") from e
    by_tr = fsm.alphabet.by_transition
    listed = _normalize_ranges((ord(c), ord(c)) for c in fsm.alphabet._symbol_mapping if c is not anything_else)

    def ranges_of(tr):
        rs = []
        for c in by_tr[tr]:
            if c is anything_else:
                rs.extend(_complement(listed))
            else:
                rs.append((ord(c), ord(c)))
        return _normalize_ranges(rs)

    states = sorted(fsm.states)
    idx = {s: i for i, s in enumerate(states)}
    edges: dict[int, list] = {}
    nxt = len(states)
    for s, m in fsm.map.items():
        for tr, t in m.items():
            cls = _class_dfa_cached(_normalize_ranges(_strip(ranges_of(tr))))
            if cls.is_empty:
                continue
            # splice the one-character DFA between s and t
            local = {0: idx[s]}
            for q in range(1, cls.n_states):
                local[q] = nxt
                nxt += 1
            for q in range(cls.n_states):
                for b in np.flatnonzero(cls.trans[q] >= 0):
                    r = int(cls.trans[q, b])
                    tgt = idx[t] if cls.accepting[r] else local[r]
                    edges.setdefault(local[q], []).append((int(b), int(b), tgt))
    return nfa_to_bytedfa(edges, idx[fsm.initial], {idx[f] for f in fsm.finals})


def _strip(rs):
    from corral.sources.ebnf import _without_surrogates

    return _without_surrogates(rs)


def ensure_compile_regex(monkeypatch=None):
    """Make ``corral.sources.lark`` able to compile regexes (real compiler or stand-in)."""
    try:
        from corral.automaton.regex import compile_regex  # noqa: F401

        return "real"
    except ImportError:
        pass
    import corral.sources.lark as L
    import corral.sources.regex as R

    def shim(pattern, flags=""):
        return _interegular_compile(pattern, flags=flags)

    if monkeypatch is not None:
        monkeypatch.setattr(L, "_compile_regex", shim)
        monkeypatch.setattr(R, "_compile_regex", lambda p, flags="", dialect="python": shim(p, flags))
    else:
        L._compile_regex = shim
        R._compile_regex = lambda p, flags="", dialect="python": shim(p, flags)
    return "shim"


def grammar_cls():
    """The compiled Grammar class when the lead's matcher is importable, else None."""
    try:
        from corral.automaton.grammar import Grammar

        return Grammar
    except Exception:  # noqa: BLE001
        return None
