"""Collapse the regular parts of a grammar into terminals.

A nonterminal whose language is regular and small enough (it does not reach
itself, or reaches itself only as ``X -> a X | b`` or ``X -> X a | b``) becomes
one terminal DFA. Character-level grammars (GBNF, Lark rules over single
characters) thus turn into a few coarse terminals, so token masks come from
per-state precomputation instead of run-time parsing, and parser columns shrink.
The language is unchanged: ``%ignore`` terminals are woven in between the parts.
"""

from __future__ import annotations

from ..errors import BudgetError, CompileLimitError
from . import dfa_ops
from .dfa import ByteDFA
from .ir import GrammarIR

DEFAULT_MAX_STATES = 400


def regularize(ir: GrammarIR, max_states: int = DEFAULT_MAX_STATES) -> GrammarIR:
    """An equivalent IR in which small regular nonterminals are terminals."""
    nt = ir.n_terminals
    rules_of: dict[int, list[tuple[int, ...]]] = {}
    for lhs, rhs in ir.rules:
        rules_of.setdefault(lhs, []).append(rhs)
    ignore = None
    if ir.ignore:
        ignore = dfa_ops.star(dfa_ops.union(*(ir.terminals[t] for t in ir.ignore)))

    def join(parts: list[ByteDFA]) -> ByteDFA:
        if ignore is not None and len(parts) > 1:
            woven: list[ByteDFA] = []
            for i, p in enumerate(parts):
                if i:
                    woven.append(ignore)
                woven.append(p)
            parts = woven
        return dfa_ops.concat(*parts, max_states=max_states)

    memo: dict[int, ByteDFA | None] = {}
    visiting: set[int] = set()

    def dfa_of(sym: int) -> ByteDFA | None:
        if sym < nt:
            return ir.terminals[sym]
        if sym in memo:
            return memo[sym]
        if sym in visiting:
            return None
        visiting.add(sym)
        try:
            out = _collapse(sym)
        except BudgetError:
            raise
        except CompileLimitError:
            out = None
        visiting.discard(sym)
        memo[sym] = out
        return out

    def seq_dfa(rhs: tuple[int, ...]) -> ByteDFA | None:
        parts = []
        for s in rhs:
            d = dfa_of(s)
            if d is None:
                return None
            parts.append(d)
        return join(parts) if parts else ByteDFA.literal(b"")

    def _collapse(sym: int) -> ByteDFA | None:
        rules = rules_of.get(sym, [])
        right = [r[:-1] for r in rules if r and r[-1] == sym and sym not in r[:-1]]
        left = [r[1:] for r in rules if r and r[0] == sym and sym not in r[1:]]
        base = [r for r in rules if sym not in r]
        if len(base) + len(right) == len(rules) and right:
            loop, end = _alts(right), _alts(base)
            if loop is None or end is None:
                return None
            body = join([loop, ignore]) if ignore is not None else loop
            return _limit(join([dfa_ops.star(body, max_states=max_states), end]))
        if len(base) + len(left) == len(rules) and left:
            loop, first = _alts(left), _alts(base)
            if loop is None or first is None:
                return None
            body = join([ignore, loop]) if ignore is not None else loop
            return _limit(join([first, dfa_ops.star(body, max_states=max_states)]))
        if len(base) != len(rules):
            return None
        return _alts(base)

    def _alts(seqs: list[tuple[int, ...]]) -> ByteDFA | None:
        ds = []
        for rhs in seqs:
            d = seq_dfa(rhs)
            if d is None:
                return None
            ds.append(d)
        if not ds:
            return ByteDFA.empty()
        return _limit(dfa_ops.union(*ds, max_states=max_states))

    def _limit(d: ByteDFA) -> ByteDFA:
        if d.n_states > max_states:
            raise CompileLimitError("regular part too large to collapse")
        return d

    nonterminals = sorted({lhs for lhs, _ in ir.rules})
    for x in nonterminals:
        dfa_of(x)
    collapsed = {x for x in nonterminals if memo.get(x) is not None}
    if not collapsed:
        return ir

    from .ir import IRBuilder

    b = IRBuilder()
    handle: dict[int, int] = {}

    def h(sym: int) -> int:
        if sym in handle:
            return handle[sym]
        if sym < nt:
            out = b.terminal(ir.terminals[sym], ir.terminal_names[sym])
        elif sym in collapsed:
            d = memo[sym]
            assert d is not None
            out = b.literal(b"") if d.n_states == 1 and d.accepting[0] and not d.trans[0].max() >= 0 else b.terminal(d, ir.name(sym))
            if d.accepts_empty and out % 2 == 0:
                pass  # IRBuilder.build rewrites terminals that match the empty string
        else:
            out = b.nonterminal(ir.name(sym))
        handle[sym] = out
        return out

    start = ir.start
    if start in collapsed:
        top = b.nonterminal(ir.name(start) + "'")
        b.rule(top, [h(start)])
        start_h = top
    else:
        start_h = h(start)
    for lhs, rhs in ir.rules:
        if lhs in collapsed:
            continue
        b.rule(h(lhs), [h(s) for s in rhs])
    for t in ir.ignore:
        b.ignore(h(t))
    meta = dict(ir.meta)
    meta["collapsed"] = len(collapsed)
    return b.build(start_h, source=ir.source, meta=meta)
