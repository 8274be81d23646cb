"""The byte-level DFA every terminal of a grammar compiles to.

Conventions every producer must keep (``ByteDFA.normalized`` enforces them):
the start state is 0; every state is reachable from the start and can reach an
accepting state (so "no transition" is the only way to die); ``trans[q, b]`` is
the next state on byte ``b`` or -1; the automaton is minimal, so two DFAs for
the same language have equal ``key()`` and share every cache keyed on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

DEAD = -1


@dataclass(frozen=True, eq=False)
class ByteDFA:
    """An immutable deterministic automaton over bytes."""

    trans: np.ndarray  # int32 [n_states, 256], DEAD for no transition
    accepting: np.ndarray  # bool [n_states]
    _key: bytes = field(default=b"", repr=False)

    @property
    def n_states(self) -> int:
        return int(self.trans.shape[0])

    def key(self) -> bytes:
        """A digest that is equal for equal minimal DFAs (they are numbered canonically)."""
        return self._key

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteDFA) and other._key == self._key

    @property
    def accepts_empty(self) -> bool:
        return bool(self.n_states and self.accepting[0])

    @property
    def is_empty(self) -> bool:
        """True when the language is empty (no states at all)."""
        return self.n_states == 0

    def step(self, state: int, data: bytes) -> int:
        """Run ``data`` from ``state``; DEAD when it leaves the automaton."""
        trans = self.trans
        for b in data:
            if state < 0:
                return DEAD
            state = int(trans[state, b])
        return state

    def matches(self, data: bytes) -> bool:
        """Whether the whole of ``data`` is in the language."""
        if self.is_empty:
            return False
        q = self.step(0, data)
        return q >= 0 and bool(self.accepting[q])

    @staticmethod
    def from_arrays(trans: np.ndarray, accepting: np.ndarray, start: int = 0) -> "ByteDFA":
        """Build from any DFA tables: trims, minimises and renumbers canonically."""
        return normalized(np.asarray(trans, dtype=np.int32), np.asarray(accepting, dtype=bool), start)

    @staticmethod
    def literal(data: bytes) -> "ByteDFA":
        """The DFA of exactly one byte string."""
        n = len(data) + 1
        trans = np.full((n, 256), DEAD, dtype=np.int32)
        for i, b in enumerate(data):
            trans[i, b] = i + 1
        acc = np.zeros(n, dtype=bool)
        acc[n - 1] = True
        return _make(trans, acc)  # a chain is already trimmed, minimal and in BFS order

    @staticmethod
    def empty() -> "ByteDFA":
        """The DFA of the empty language."""
        return normalized(np.zeros((0, 256), dtype=np.int32), np.zeros(0, dtype=bool), 0)


def normalized(trans: np.ndarray, accepting: np.ndarray, start: int) -> ByteDFA:
    """Trim (reachable and co-reachable states only), minimise, renumber in BFS order."""
    n = trans.shape[0]
    if n == 0 or start < 0:
        return _make(np.zeros((0, 256), dtype=np.int32), np.zeros(0, dtype=bool))
    # reachable
    seen = np.zeros(n, dtype=bool)
    seen[start] = True
    stack = [start]
    while stack:
        q = stack.pop()
        for r in np.unique(trans[q]):
            if r >= 0 and not seen[r]:
                seen[r] = True
                stack.append(int(r))
    # co-reachable: reverse reachability from accepting states
    live = accepting & seen
    changed = True
    while changed:
        safe = np.where(trans >= 0, trans, 0)
        reach = (live[safe] & (trans >= 0)).any(axis=1) & seen
        new_live = live | reach
        changed = bool((new_live != live).any())
        live = new_live
    if not live[start]:
        return _make(np.zeros((0, 256), dtype=np.int32), np.zeros(0, dtype=bool))
    keep = np.flatnonzero(live)
    remap = np.full(n, DEAD, dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    t = trans[keep]
    t = np.where(t >= 0, remap[np.where(t >= 0, t, 0)], DEAD).astype(np.int32)
    acc = accepting[keep]
    s = int(remap[start])
    t, acc, s = _minimize(t, acc, s)
    return _canonical(t, acc, s)


def _minimize(trans: np.ndarray, acc: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Moore partition refinement, vectorised over the 256 bytes."""
    n = trans.shape[0]
    block = acc.astype(np.int64)
    n_blocks = len(np.unique(block))
    while True:
        tb = np.where(trans >= 0, block[np.where(trans >= 0, trans, 0)], -1)
        sig = np.concatenate([block[:, None], tb], axis=1)
        _, new_block = np.unique(sig, axis=0, return_inverse=True)
        new_block = new_block.reshape(-1)
        k = int(new_block.max()) + 1 if n else 0
        block = new_block
        if k == n_blocks:
            break
        n_blocks = k
    rep = np.zeros(n_blocks, dtype=np.int64)
    rep[block] = np.arange(n)
    t = trans[rep]
    t = np.where(t >= 0, block[np.where(t >= 0, t, 0)], DEAD).astype(np.int32)
    return t, acc[rep], int(block[start])


def _canonical(trans: np.ndarray, acc: np.ndarray, start: int) -> ByteDFA:
    """Renumber states in BFS order by byte so equal languages give equal tables."""
    n = trans.shape[0]
    order = [start]
    index = {start: 0}
    i = 0
    while i < len(order):
        q = order[i]
        i += 1
        for r in trans[q]:
            r = int(r)
            if r >= 0 and r not in index:
                index[r] = len(order)
                order.append(r)
    remap = np.full(n, DEAD, dtype=np.int64)
    for q, j in index.items():
        remap[q] = j
    t = trans[order]
    t = np.where(t >= 0, remap[np.where(t >= 0, t, 0)], DEAD).astype(np.int32)
    return _make(np.ascontiguousarray(t), acc[order].copy())


def _make(trans: np.ndarray, acc: np.ndarray) -> ByteDFA:
    trans.setflags(write=False)
    acc.setflags(write=False)
    h = hashlib.blake2b(digest_size=16)
    h.update(np.int64(trans.shape[0]).tobytes())
    h.update(trans.tobytes())
    h.update(acc.tobytes())
    return ByteDFA(trans, acc, h.digest())


_CO_ACCEPTING_LIMIT = 4096  # joint states explored at most (the sets found so far are returned)


def co_accepting(dfas: "list[ByteDFA] | tuple[ByteDFA, ...]") -> list[frozenset[int]]:
    """The sets of two or more DFAs (by index) that all accept one same string.

    Reading text that ends several terminals at once (``distinct`` as a keyword and as a name)
    leads a parser to the union of the columns after each. The DFAs are run jointly from their
    starts, only while two or more are alive. The walk stops after ``_CO_ACCEPTING_LIMIT``
    joint states, so the sets may be incomplete for large grammars (callers use them as hints).
    """
    start = tuple((i, 0) for i, d in enumerate(dfas) if d.n_states)
    found: set[frozenset[int]] = set()
    seen = {start}
    stack = [start]
    while stack and len(seen) <= _CO_ACCEPTING_LIMIT:
        joint = stack.pop()
        accepting = frozenset(i for i, q in joint if dfas[i].accepting[q])
        if len(accepting) > 1:
            found.add(accepting)
        by_byte: dict[int, list[tuple[int, int]]] = {}
        for i, q in joint:
            row = dfas[i].trans[q]
            for b in np.flatnonzero(row >= 0).tolist():
                by_byte.setdefault(b, []).append((i, int(row[b])))
        for nxt in by_byte.values():
            if len(nxt) > 1:
                key = tuple(nxt)
                if key not in seen:
                    seen.add(key)
                    stack.append(key)
    return sorted(found, key=sorted)
