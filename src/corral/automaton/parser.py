"""An Earley parser over terminals whose columns are interned, so parser states are hashable.

An Earley item is (rule, dot, origin). Here an origin is a reference to an
interned earlier column (or SELF for the column the item lives in), so a column
together with the columns it references is a complete, finite description of
everything the parse can still do. Interning columns by content makes equal
parser situations the same integer id, whatever the path that led to them:
``scan(column, terminal)`` is then a pure function and is memoised.

This handles every context-free grammar (ambiguous, left-recursive, with empty
rules) in the usual Earley bounds, and the memo tables turn repeated structure
(JSON objects, lists, expression chains) into dictionary lookups.
"""

from __future__ import annotations

import threading
from typing import Any

from .ir import GrammarIR, nullable_symbols, terminal_follow

SELF = -1
DEAD = -1


class Truncated(Exception):
    """A computation on column images needed a column beyond the horizon (see ``horizon``)."""


class Column:
    """One interned Earley column: its items and what the parser expects next.

    The items split by origin: ``kernel`` holds those that started in earlier columns,
    ``predicted`` those that start here (origin SELF). The predicted part depends only on
    which nonterminals the kernel expects, so few distinct ones exist and each is built
    once (``_Predicted``); a new column only pays for its kernel.
    """

    __slots__ = ("kernel", "predicted", "waiting", "expected", "accepting", "maybe", "open")

    def __init__(self, kernel: frozenset, predicted: frozenset, waiting: dict,
                 expected: tuple[int, ...], accepting: bool, maybe: frozenset | None = None) -> None:
        self.kernel = kernel  # frozenset of (rule, dot, origin) with origin an earlier column
        self.predicted = predicted  # frozenset of (rule, dot, SELF)
        self.waiting = waiting  # symbol -> tuple of items whose dot is before it
        self.expected = expected  # terminals that may come next
        self.accepting = accepting  # the start symbol is complete from column 0
        # An open column (a horizon's, whose completions reached past the horizon) holds only
        # some of the real column's items: what it allows is certain, what it refuses may be
        # allowed by the rest, which may only expect the terminals in ``maybe`` (None: closed).
        self.maybe = maybe
        self.open = maybe is not None


class _Predicted:
    """The origin-SELF part of columns, shared by every column that predicts the same items."""

    __slots__ = ("items", "waiting", "terminals", "accepting")

    def __init__(self, items: frozenset, waiting: dict, terminals: frozenset, accepting: bool) -> None:
        self.items = items
        self.waiting = waiting
        self.terminals = terminals
        self.accepting = accepting


class EarleyParser:
    """The interned-column Earley automaton of one GrammarIR (thread-safe, grows lazily)."""

    def __init__(self, ir: GrammarIR) -> None:
        self.ir = ir
        nt = ir.n_terminals
        self.n_terminals = nt
        rules = list(ir.rules)
        # augmented start rule S' -> start, always rule index len(rules)
        self.start_rule = len(rules)
        rules.append((-2, (ir.start,)))
        self.rule_lhs = [lhs for lhs, _ in rules]
        self.rule_rhs = [rhs for _, rhs in rules]
        self.rules_of: dict[int, list[int]] = {}
        for i, (lhs, _) in enumerate(rules):
            self.rules_of.setdefault(lhs, []).append(i)
        self.nullable = nullable_symbols(ir)  # the augmented start rule is in no right side
        # next_sym[r][d]: the symbol after the dot of item (r, d, _), -1 when complete
        self.next_sym = [tuple(rhs) + (-1,) for rhs in self.rule_rhs]
        self._predictions: dict[int, frozenset] = {}
        self._columns: list[Column] = []
        self._index: dict[tuple[frozenset, frozenset], int] = {}
        self._predicted: dict[frozenset, _Predicted] = {}
        self._predicted_by_symbols: dict[frozenset, _Predicted] = {}
        self._completions: dict[tuple[int, int], tuple[frozenset, frozenset, bool]] = {}
        self._scan_memo: dict[tuple[int, int], int] = {}
        self._union_memo: dict = {}
        self._opaque: set[int] = set()  # columns that stand for unknown ones (``add_opaque_column``)
        self.open_columns = True  # a completion that reaches an opaque column opens its column (False: Truncated)
        self._follow: list[frozenset] | None = None  # terminals that may follow each terminal (open columns)
        self._lock = threading.Lock()
        self.cut: Any = None  # a horizon's parser cuts each column it reaches (see ``horizon``)
        items, part, _ = self._closure([(self.start_rule, 0, SELF)])
        self.initial = self._intern(items, part)

    def predictions(self, x: int) -> frozenset:
        """Every item predicted (origin SELF) when nonterminal ``x`` is expected: a static set."""
        out = self._predictions.get(x)
        if out is not None:
            return out
        nt = self.n_terminals
        items: set = set()
        agenda = [(r, 0, SELF) for r in self.rules_of.get(x, ())]
        while agenda:
            it = agenda.pop()
            if it in items:
                continue
            items.add(it)
            r, d, _ = it
            rhs = self.rule_rhs[r]
            if d < len(rhs) and rhs[d] >= nt:
                y = rhs[d]
                agenda.extend((r3, 0, SELF) for r3 in self.rules_of.get(y, ()))
                if y in self.nullable:
                    agenda.append((r, d + 1, SELF))
        out = frozenset(items)
        self._predictions[x] = out
        return out

    def column(self, cid: int) -> Column:
        return self._columns[cid]

    @property
    def n_columns(self) -> int:
        return len(self._columns)

    def scan(self, cid: int, terminal: int) -> int:
        """The column after ``terminal`` is read in column ``cid``; DEAD if it is not expected."""
        key = (cid, terminal)
        out = self._scan_memo.get(key)
        if out is not None:
            return out
        col = self._columns[cid]
        waiting = col.waiting.get(terminal)
        if not waiting:
            if col.open and terminal in col.maybe:
                raise Truncated  # the items the column lacks may expect it
            out = DEAD
        else:
            kernel = [(r, d + 1, cid if o == SELF else o) for (r, d, o) in waiting]
            with self._lock:
                items, part, opened = self._closure(kernel)
                # what the lacking items expect next may only be what can follow ``terminal``
                out = self._intern(items, part, self.follow(terminal) if opened or col.open else None)
                if self.cut is not None:
                    out = self.cut(out)
        self._scan_memo[key] = out
        return out

    def union(self, cids: frozenset) -> int:
        """One column for several columns at the same input position.

        Their item sets are closed and their SELF origins all mean "here", so the
        union is closed too and stands for all of them: ambiguity in where the
        previous terminals ended collapses into one parser state.
        """
        key = ("union", cids)
        out = self._union_memo.get(key)
        if out is None:
            kernel: set = set()
            predicted: set = set()
            for c in cids:
                kernel.update(self._columns[c].kernel)
                predicted.update(self._columns[c].predicted)
            lacking = [self._columns[c].maybe for c in cids if self._columns[c].open]
            with self._lock:
                out = self._intern(kernel, self.predicted_part(frozenset(predicted)),
                                   frozenset().union(*lacking) if lacking else None)
            self._union_memo[key] = out
        return out

    def _closure(self, kernel: list) -> tuple[set, "_Predicted", bool]:
        """Complete, then add the static prediction sets (Aycock-Horspool style for empty rules).

        Returns the items that started in earlier columns, the shared predicted part, and
        whether a completion reached an opaque column (the items are then only some).
        """
        items: set = set()
        predicted: set[int] = set()
        opened = self._complete(list(kernel), items, predicted, True)
        key = frozenset(predicted)
        part = self._predicted_by_symbols.get(key)
        if part is None:
            union: set = set()
            for x in predicted:
                union.update(self.predictions(x))
            part = self._predicted_by_symbols[key] = self.predicted_part(frozenset(union))
        own = [it for it in items if it[2] == SELF]  # only the first column starts the start rule
        if own:
            items.difference_update(own)
            part = self.predicted_part(part.items.union(own))
        return items, part, opened

    def _complete(self, agenda: list, items: set, predicted: set, outer: bool) -> bool:
        """Close ``items`` under completion from ``agenda``; collect the nonterminals to predict.

        Completing a nonterminal that started in column o reads only o, so what follows
        from it is memoised per (o, nonterminal). The outer closure fills that memo; a
        memo entry's own computation reads it but expands misses in place, so no entry
        waits on itself. Returns whether a completion reached an opaque column, whose
        items are unknown (the closure then lacks what they would have added).
        """
        opaque = self._opaque
        opened = False
        rhs_of = self.rule_rhs
        lhs_of = self.rule_lhs
        nullable = self.nullable
        nt = self.n_terminals
        memo = self._completions
        while agenda:
            it = agenda.pop()
            if it in items:
                continue
            items.add(it)
            r, d, o = it
            rhs = rhs_of[r]
            if d == len(rhs):
                if o == SELF:
                    continue  # an empty derivation: its parents were advanced at prediction
                if o in opaque:
                    if not self.open_columns:
                        raise Truncated
                    opened = True
                    continue
                lhs = lhs_of[r]
                done = memo.get((o, lhs))
                if done is None and outer:
                    sub_items: set = set()
                    sub_predicted: set = set()
                    sub_opened = self._complete(self._advanced(o, lhs), sub_items, sub_predicted, False)
                    done = memo[(o, lhs)] = (frozenset(sub_items), frozenset(sub_predicted), sub_opened)
                if done is None:
                    agenda.extend(self._advanced(o, lhs))
                else:
                    items.update(done[0])
                    predicted.update(done[1])
                    opened = opened or done[2]
                continue
            x = rhs[d]
            if x >= nt:
                predicted.add(x)
                if x in nullable:
                    agenda.append((r, d + 1, o))
        return opened

    def _advanced(self, o: int, lhs: int) -> list:
        """The items of column ``o`` waiting for ``lhs``, moved past it."""
        return [(r2, d2 + 1, o if o2 == SELF else o2) for (r2, d2, o2) in self._columns[o].waiting.get(lhs, ())]

    def _live(self, items: Any) -> frozenset:
        """``items`` without the completed ones: those have advanced their parents (in the
        closure) and can do nothing more, so dropping them merges columns with equal futures.
        Completed start items stay: they make a column accepting."""
        next_sym = self.next_sym
        start = self.start_rule
        return frozenset(it for it in items if next_sym[it[0]][it[1]] >= 0 or it[0] == start)

    def predicted_part(self, items: frozenset) -> "_Predicted":
        """The shared column part made of ``items`` (all of origin SELF)."""
        part = self._predicted.get(items)
        if part is not None:
            return part
        kept = self._live(items)
        part = self._predicted.get(kept)
        if part is None:
            next_sym = self.next_sym
            waiting: dict[int, list] = {}
            accepting = False
            for it in kept:
                x = next_sym[it[0]][it[1]]
                if x >= 0:
                    waiting.setdefault(x, []).append(it)
                else:
                    accepting = True  # the start rule complete from here: this is column 0
            terminals = frozenset(x for x in waiting if x < self.n_terminals)
            part = _Predicted(kept, {x: tuple(v) for x, v in waiting.items()}, terminals, accepting)
            self._predicted[kept] = part
        self._predicted[items] = part
        return part

    def add_opaque_column(self, starts_here: bool) -> int:
        """A column that stands for an unknown one (see ``horizon``): never interned by content.

        A completion that reaches it adds nothing and marks its column open; ``starts_here``
        says whether it stands for the first column (which decides acceptance).
        """
        predicted = frozenset([(self.start_rule, 0, SELF)]) if starts_here else frozenset()
        with self._lock:
            self._columns.append(Column(frozenset(), predicted, {}, (), False))
            self._opaque.add(len(self._columns) - 1)
            return len(self._columns) - 1

    def _starts_here(self, cid: int) -> bool:
        return (self.start_rule, 0, SELF) in self._columns[cid].predicted

    def follow(self, terminal: int) -> frozenset:
        """The terminals, not ignored ones, that may come right after ``terminal`` in a sentence."""
        if self._follow is None:
            ignored = frozenset(self.ir.ignore)
            self._follow = [f - ignored for f in terminal_follow(self.ir)]
        return self._follow[terminal]

    def _intern(self, kernel: Any, part: "_Predicted", maybe: frozenset | None = None) -> int:
        """The id of the column made of ``kernel`` (items of earlier origins) and ``part``
        (``maybe``: of an open column, see ``Column.maybe``)."""
        kept = self._live(kernel)
        key = (kept, part.items, maybe)
        cid = self._index.get(key)
        if cid is not None:
            return cid
        cid = len(self._columns)
        next_sym = self.next_sym
        waiting = dict(part.waiting)
        terminals = set(part.terminals)
        nt = self.n_terminals
        accepting = part.accepting
        for it in kept:
            x = next_sym[it[0]][it[1]]
            if x >= 0:
                waiting[x] = waiting.get(x, ()) + (it,)
                if x < nt:
                    terminals.add(x)
            elif self._starts_here(it[2]):
                # Only column 0 predicts the start rule; a column holding that prediction
                # is column 0 reached through ignored text alone (or a union with it).
                accepting = True
        col = Column(kept, part.items, waiting, tuple(sorted(terminals)), accepting, maybe)
        self._columns.append(col)
        self._index[key] = cid
        return cid
