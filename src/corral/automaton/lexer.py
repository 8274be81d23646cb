"""The byte-level automaton: Earley columns plus the terminals being read.

A state is a pair (boundary, partial):
- ``boundary``: parser columns at which a new terminal may start at this byte;
- ``partial``: triples (column, role, q): a terminal started in ``column`` and is
  in state ``q`` of its DFA. ``role`` is the terminal id, or ``n_terminals + id``
  for an ignored terminal (``%ignore``), whose completion leaves the column as is.

Lexing is nondeterministic (every split of the bytes into terminals is kept), so
the language is exactly the scannerless one of the IR. States are interned to
ints and byte transitions memoised: after warm-up, reading a byte is one
dictionary lookup.
"""

from __future__ import annotations

import threading

from .parser import EarleyParser, Truncated
from .ir import GrammarIR

DEAD = -1
_TRUNCATED = -3  # memoised steps that raise ``Truncated``


class ByteAutomaton:
    """Interned byte-level states of one grammar; shared by all its matchers."""

    def __init__(self, ir: GrammarIR, parser: EarleyParser | None = None) -> None:
        self.ir = ir
        self.parser = parser or EarleyParser(ir)
        nt = ir.n_terminals
        self.n_terminals = nt
        dfas = list(ir.terminals)
        self.role_dfa = dfas + [dfas[t] for t in range(nt)]
        self._trans = [d.trans.tolist() for d in dfas]
        self._accept = [d.accepting.tolist() for d in dfas]
        self._first = [[(b, q) for b, q in enumerate(row[0]) if q >= 0] if row else [] for row in self._trans]
        self._first_bytes = [frozenset(b for b, _ in moves) for moves in self._first]
        self.ignore_roles = tuple(nt + t for t in ir.ignore)
        self._states: list[tuple[frozenset, frozenset]] = []
        self._index: dict[tuple[frozenset, frozenset], int] = {}
        self._step_memo: dict[tuple[int, int], int] = {}
        self._start_moves: dict[int, dict[int, tuple[tuple[int, int], ...]]] = {}
        self._moves_by_roles: dict[tuple[int, ...], dict[int, tuple[tuple[int, int], ...]]] = {}
        self._accepting: list[bool] = []
        # states reading from an open column (a horizon's, see ``parser.Column.open``): a byte
        # they refuse may still be allowed by the items the column lacks
        self._open: list[bool] = []
        self._lock = threading.Lock()
        self.initial = self.intern(frozenset([self.parser.initial]), frozenset())

    # -- states ---------------------------------------------------------------
    def intern(self, boundary: frozenset, partial: frozenset) -> int:
        key = (boundary, partial)
        sid = self._index.get(key)
        if sid is not None:
            return sid
        with self._lock:
            sid = self._index.get(key)
            if sid is not None:
                return sid
            sid = len(self._states)
            cols = self.parser._columns
            self._accepting.append(any(cols[c].accepting for c in boundary))
            self._open.append(bool(self.parser._opaque) and (any(cols[c].open for c in boundary)
                                                             or any(cols[c].open for c, _, _ in partial)))
            self._states.append(key)
            self._index[key] = sid
            return sid

    def state(self, sid: int) -> tuple[frozenset, frozenset]:
        return self._states[sid]

    def is_accepting(self, sid: int) -> bool:
        return self._accepting[sid]

    @property
    def n_states(self) -> int:
        return len(self._states)

    def boundary_state(self, column: int) -> int:
        """The state with one parser column and no terminal in progress."""
        return self.intern(frozenset([column]), frozenset())

    def roles_at(self, column: int) -> tuple[int, ...]:
        """Terminal roles that may start in ``column``."""
        return self.parser.column(column).expected + self.ignore_roles

    def after(self, column: int, role: int) -> int:
        """The parser column once a terminal in ``role`` completes."""
        if role >= self.n_terminals:
            return column
        return self.parser.scan(column, role)

    def _starts(self, column: int) -> dict[int, tuple[tuple[int, int], ...]]:
        """First-byte moves of every terminal that may start at ``column`` (shared per set of roles)."""
        moves = self._start_moves.get(column)
        if moves is None:
            roles = self.roles_at(column)
            moves = self._moves_by_roles.get(roles)
            if moves is None:
                acc: dict[int, list[tuple[int, int]]] = {}
                nt = self.n_terminals
                first = self._first
                for role in roles:
                    for b, q in first[role % nt]:
                        acc.setdefault(b, []).append((role, q))
                moves = {b: tuple(v) for b, v in acc.items()}
                self._moves_by_roles[roles] = moves
            self._start_moves[column] = moves
        return moves

    # -- transitions ----------------------------------------------------------
    def step(self, sid: int, byte: int) -> int:
        """The state after one byte, or DEAD."""
        key = (sid, byte)
        out = self._step_memo.get(key)
        if out is None:
            out = self._compute_step(sid, byte)
            self._step_memo[key] = out
        if out == _TRUNCATED:
            raise Truncated
        return out

    def walk(self, sid: int, data: bytes) -> int:
        memo = self._step_memo
        for b in data:
            nxt = memo.get((sid, b))
            if nxt is None:
                nxt = self._compute_step(sid, b)
                memo[(sid, b)] = nxt
            if nxt < 0:
                if nxt == _TRUNCATED:
                    raise Truncated
                return DEAD
            sid = nxt
        return sid

    def lives(self, sid: int, byte: int) -> bool:
        """Whether ``step(sid, byte)`` is not DEAD, without building that state: some terminal
        in progress reads the byte, or one that may start here does. (A live state always
        has a continuation that completes a sentence, so this is what a token ending on
        ``byte`` needs.)"""
        out = self._step_memo.get((sid, byte))
        if out is not None:
            if out == _TRUNCATED:
                raise Truncated
            return out >= 0
        if sid < 0:
            return False
        boundary, partial = self._states[sid]
        if any(byte in self._starts(col) for col in boundary):
            return True
        nt = self.n_terminals
        trans = self._trans
        if any(trans[role % nt][q][byte] >= 0 for _col, role, q in partial):
            return True
        if self._open[sid] and self._may_live(boundary, partial, byte):
            raise Truncated
        return False

    def _compute_step(self, sid: int, byte: int) -> int:
        if sid < 0:
            return DEAD
        boundary, partial = self._states[sid]
        nt = self.n_terminals
        trans = self._trans
        new_partial = set()
        starts = self._start_moves
        for col in boundary:
            moves = starts.get(col)
            if moves is None:
                moves = self._starts(col)
            for role, q in moves.get(byte, ()):
                new_partial.add((col, role, q))
        for col, role, q in partial:
            q2 = trans[role % nt][q][byte]
            if q2 >= 0:
                new_partial.add((col, role, q2))
        if not new_partial:
            return _TRUNCATED if self._open[sid] and self._may_live(boundary, partial, byte) else DEAD
        accept = self._accept
        new_boundary = set()
        for col, role, q in new_partial:
            if accept[role % nt][q]:
                c2 = self.after(col, role)
                if c2 >= 0:
                    new_boundary.add(c2)
        if len(new_boundary) > 1:
            new_boundary = {self.parser.union(frozenset(new_boundary))}
        return self.intern(frozenset(new_boundary), frozenset(new_partial))

    def _may_live(self, boundary: frozenset, partial: frozenset, byte: int) -> bool:
        """Whether ``byte``, which the known items of an open state refuse, may be read by the
        items its open columns lack: a terminal they started may be part-way through, or one
        they may expect may start with ``byte``."""
        cols = self.parser._columns
        if any(cols[c].open for c, _, _ in partial):
            return True
        first = self._first_bytes
        return any(byte in first[t] for c in boundary if cols[c].open for t in cols[c].maybe)

    def live_bytes(self, sid: int) -> list[int]:
        """Every byte that does not kill state ``sid`` (exact: live triples stay viable)."""
        boundary, partial = self._states[sid]
        nt = self.n_terminals
        out: set[int] = set()
        for col in boundary:
            out.update(self._starts(col).keys())
        for _col, role, q in partial:
            row = self._trans[role % nt][q]
            out.update(b for b in range(256) if row[b] >= 0)
        return sorted(out)
