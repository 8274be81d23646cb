"""The grammar IR every front end produces: a context-free grammar over byte-DFA terminals.

Symbols are ints: terminal ``i`` is ``i`` (``0 <= i < n_terminals``), nonterminal
``j`` is ``n_terminals + j``. Front ends build an IR through ``IRBuilder``; the
builder removes useless symbols, rewrites terminals that match the empty string,
and checks the result, so the parser may assume a clean grammar: every
nonterminal is productive and reachable, no terminal matches ``b""``.

The language is the scannerless one: a sentence is a sequence of byte strings,
one per terminal occurrence, concatenated, with any number of ``ignore``
terminals between (and around) them. Lark's Earley parser with
``lexer="dynamic_complete"`` defines the same language for Lark grammars.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import CompileLimitError, GrammarError
from .dfa import ByteDFA


@dataclass(frozen=True)
class GrammarIR:
    """An immutable context-free grammar over byte-DFA terminals."""

    terminals: tuple[ByteDFA, ...]
    terminal_names: tuple[str, ...]
    nonterminal_names: tuple[str, ...]
    rules: tuple[tuple[int, tuple[int, ...]], ...]  # (lhs symbol, rhs symbols)
    start: int  # a nonterminal symbol
    ignore: tuple[int, ...] = ()  # terminal ids that may appear between any two terminals
    source: str = ""  # what kind of source produced it: "lark", "ebnf", "regex", "json_schema"
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def n_terminals(self) -> int:
        return len(self.terminals)

    def is_terminal(self, sym: int) -> bool:
        return sym < len(self.terminals)

    def name(self, sym: int) -> str:
        if self.is_terminal(sym):
            return self.terminal_names[sym]
        return self.nonterminal_names[sym - len(self.terminals)]

    def describe(self) -> str:
        """A readable BNF listing, for debugging and error messages."""
        lines = [f"start: {self.name(self.start)}"]
        for lhs, rhs in self.rules:
            body = " ".join(self.name(s) for s in rhs) or "<empty>"
            lines.append(f"{self.name(lhs)} -> {body}")
        if self.ignore:
            lines.append("ignore: " + ", ".join(self.name(t) for t in self.ignore))
        return "\n".join(lines)


def terminal_follow(ir: GrammarIR) -> list[frozenset[int]]:
    """For each terminal, the terminals that may come right after it in some sentence (ignored
    terminals included): the classic FOLLOW sets, over terminals.

    Both FIRST and FOLLOW are inclusion constraints (``FIRST(A) >= FIRST(B)``, ``FOLLOW(X) >=
    FOLLOW(A)``) solved by propagating along their edges from a worklist, so a grammar of
    thousands of rules (a big JSON Schema) costs milliseconds, not a fixed point over all rules.
    """
    nt = ir.n_terminals
    nullable = nullable_symbols(ir)
    n_symbols = nt + len(ir.nonterminal_names)
    # FIRST over nonterminals: the terminals a rule starts with, and the nonterminals it starts
    # with (up to the first symbol that cannot be empty), whose FIRST it includes
    first: list[set[int]] = [set() for _ in range(n_symbols)]
    first_edges: list[set[int]] = [set() for _ in range(n_symbols)]  # B -> {A: FIRST(A) >= FIRST(B)}
    for lhs, rhs in ir.rules:
        for s in rhs:
            if s < nt:
                first[lhs].add(s)
                break
            first_edges[s].add(lhs)
            if s not in nullable:
                break
    _propagate(first, first_edges)
    # FOLLOW over all symbols: what the rest of a rule starts with, and the FOLLOW of the rule's
    # left side where the rest may be empty
    follow: list[set[int]] = [set() for _ in range(n_symbols)]
    follow_edges: list[set[int]] = [set() for _ in range(n_symbols)]  # A -> {X: FOLLOW(X) >= FOLLOW(A)}
    for lhs, rhs in ir.rules:
        rest: set[int] = set()  # FIRST of what follows the symbol being looked at
        rest_empty = True
        for s in reversed(rhs):
            follow[s] |= rest
            if rest_empty:
                follow_edges[lhs].add(s)
            if s < nt:
                rest, rest_empty = {s}, False
            elif s in nullable:
                rest = rest | first[s]
            else:
                rest, rest_empty = set(first[s]), False
    _propagate(follow, follow_edges)
    follow_t = follow[:nt]
    ignore = set(ir.ignore)
    if ignore:
        anywhere = set().union(*follow_t, first[ir.start], ignore)
        for t in range(nt):
            follow_t[t] |= anywhere if t in ignore else ignore
    return [frozenset(f) for f in follow_t]


def nullable_symbols(ir: GrammarIR) -> set[int]:
    """The nonterminals that derive the empty string."""
    nullable: set[int] = set()
    changed = True
    while changed:
        changed = False
        for lhs, rhs in ir.rules:
            if lhs not in nullable and all(s in nullable for s in rhs):
                nullable.add(lhs)
                changed = True
    return nullable


def _propagate(sets: list[set[int]], edges: list[set[int]]) -> None:
    """Close ``sets`` under ``sets[b] >= sets[a]`` for every b in ``edges[a]``."""
    work = [a for a in range(len(sets)) if sets[a] and edges[a]]
    while work:
        a = work.pop()
        src = sets[a]
        for b in edges[a]:
            if not src <= sets[b]:
                sets[b] |= src
                work.append(b)


MAX_REPEAT = 100_000  # a bounded repetition costs O(bound) rules


class IRBuilder:
    """Builds a GrammarIR. Terminals are deduplicated by language; rules by content.

    Symbols handed out by ``terminal`` and ``nonterminal`` are opaque handles,
    renumbered by ``build``.
    """

    def __init__(self) -> None:
        self._terms: list[ByteDFA] = []
        self._term_names: list[str] = []
        self._term_index: dict[bytes, int] = {}
        self._nts: list[str] = []
        self._nt_index: dict[str, int] = {}
        self._rules: list[tuple[int, tuple[int, ...]]] = []
        self._rule_set: set[tuple[int, tuple[int, ...]]] = set()
        self._ignore: list[int] = []
        self._fresh = 0
        self._literal_cache: dict[bytes, int] = {}
        self._helper_cache: dict[tuple, int] = {}

    # Handles: terminals are ("t", i), nonterminals ("n", j) encoded as ints with a tag bit.
    @staticmethod
    def _t(i: int) -> int:
        return 2 * i

    @staticmethod
    def _n(j: int) -> int:
        return 2 * j + 1

    def terminal(self, dfa: ByteDFA, name: str | None = None) -> int:
        """A terminal symbol for the language of ``dfa`` (shared when the language repeats)."""
        k = dfa.key()
        if k in self._term_index:
            return self._t(self._term_index[k])
        i = len(self._terms)
        self._terms.append(dfa)
        self._term_names.append(name or f"T{i}")
        self._term_index[k] = i
        return self._t(i)

    def literal(self, data: bytes | str) -> int:
        """A terminal for one exact byte string (``b""`` gives an empty-body nonterminal)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if data in self._literal_cache:
            return self._literal_cache[data]
        if data == b"":
            sym = self.nonterminal("EMPTY")
            self.rule(sym, [])
        else:
            sym = self.terminal(ByteDFA.literal(data), repr(data.decode("utf-8", "replace")))
        self._literal_cache[data] = sym
        return sym

    def nonterminal(self, name: str | None = None, *, unique: bool = True) -> int:
        """A fresh nonterminal (``unique=False`` returns the existing one of that name)."""
        base = name or "_n"
        if not unique and base in self._nt_index:
            return self._n(self._nt_index[base])
        label = base
        if label in self._nt_index:
            self._fresh += 1
            label = f"{base}#{self._fresh}"
        j = len(self._nts)
        self._nts.append(label)
        self._nt_index[label] = j
        if base not in self._nt_index:
            self._nt_index[base] = j
        return self._n(j)

    def rule(self, lhs: int, rhs: Sequence[int]) -> None:
        """Add ``lhs -> rhs``; ``lhs`` must be a nonterminal handle."""
        if lhs % 2 == 0:
            raise GrammarError("the left side of a rule must be a nonterminal")
        r = (lhs, tuple(rhs))
        if r not in self._rule_set:
            self._rule_set.add(r)
            self._rules.append(r)

    def ignore(self, term: int) -> None:
        """Let ``term`` appear between any two terminals (Lark's ``%ignore``)."""
        if term % 2 == 1:
            raise GrammarError("%ignore needs a terminal")
        if term not in self._ignore:
            self._ignore.append(term)

    # EBNF helpers, each memoised so repeated use does not grow the grammar.
    def seq(self, items: Sequence[int], name: str = "_seq") -> int:
        """A nonterminal for the concatenation of ``items``."""
        key = ("seq", tuple(items))
        if key not in self._helper_cache:
            n = self.nonterminal(name)
            self.rule(n, items)
            self._helper_cache[key] = n
        return self._helper_cache[key]

    def choice(self, alternatives: Iterable[Sequence[int]], name: str = "_alt") -> int:
        """A nonterminal with one rule per alternative sequence."""
        alts = tuple(tuple(a) for a in alternatives)
        key = ("alt", alts)
        if key not in self._helper_cache:
            n = self.nonterminal(name)
            for a in alts:
                self.rule(n, a)
            self._helper_cache[key] = n
        return self._helper_cache[key]

    def optional(self, sym: int) -> int:
        return self.choice([(sym,), ()], "_opt")

    def star(self, sym: int) -> int:
        """``sym*``, left-recursive: an Earley parser keeps one item for it per column, with
        its origin where the list began, so the column after an item is the same whatever
        the number of items before it (right recursion stacks one origin per item, and a
        closing bracket after n items pops n levels)."""
        key = ("star", sym)
        if key not in self._helper_cache:
            n = self.nonterminal("_star")
            self._helper_cache[key] = n
            self.rule(n, ())
            self.rule(n, (n, sym))
        return self._helper_cache[key]

    def plus(self, sym: int) -> int:
        key = ("plus", sym)
        if key not in self._helper_cache:
            n = self.nonterminal("_plus")
            self._helper_cache[key] = n
            self.rule(n, (sym, self.star(sym)))
        return self._helper_cache[key]

    def repeat(self, sym: int, lo: int, hi: int | None) -> int:
        """``sym{lo,hi}`` (``hi=None`` for no upper bound), in O(lo + hi) rules."""
        if lo < 0 or (hi is not None and hi < lo):
            raise GrammarError(f"bad repetition bounds {{{lo},{hi}}}")
        if lo > MAX_REPEAT or (hi is not None and hi - lo > MAX_REPEAT):
            raise CompileLimitError(
                f"repetition {{{lo},{'' if hi is None else hi}}} exceeds the limit of {MAX_REPEAT} repeated items"
            )
        key = ("rep", sym, lo, hi)
        if key in self._helper_cache:
            return self._helper_cache[key]
        if hi is None:
            tail = self.star(sym)
        else:
            # at_most[k] = sym{0,k}, built right to left
            tail = self.literal(b"")
            for _ in range(hi - lo):
                tail = self.choice([(), (sym, tail)], "_upto")
        n = self.seq((sym,) * lo + (tail,), "_rep")
        self._helper_cache[key] = n
        return n

    def build(self, start: int, source: str = "", meta: dict | None = None) -> GrammarIR:
        """Clean and renumber: drop useless symbols, rewrite empty-matching terminals."""
        if start % 2 == 0:
            raise GrammarError("the start symbol must be a nonterminal")
        terms = list(self._terms)
        names = list(self._term_names)
        nts = list(self._nts)
        rules = list(self._rules)
        # A terminal that matches b"" becomes  X -> T' | <empty>  with T' its non-empty part.
        eps_fix: dict[int, int] = {}
        for i, dfa in enumerate(terms):
            if dfa.accepts_empty:
                nonempty = _without_empty(dfa)
                nt = len(nts)
                nts.append(f"{names[i]}?")
                if nonempty is None:
                    rules.append((self._n(nt), ()))
                else:
                    terms[i] = nonempty
                    rules.append((self._n(nt), (self._t(i),)))
                    rules.append((self._n(nt), ()))
                eps_fix[self._t(i)] = self._n(nt)
        for ig in self._ignore:
            if ig in eps_fix:
                raise GrammarError(f"ignored terminal {names[ig // 2]} matches the empty string")
        if eps_fix:
            rules = [
                (lhs, tuple(eps_fix.get(s, s) if lhs != eps_fix.get(s) else s for s in rhs))
                for lhs, rhs in rules
            ]
        # productive nonterminals
        productive: set[int] = set()
        changed = True
        while changed:
            changed = False
            for lhs, rhs in rules:
                if lhs not in productive and all(s % 2 == 0 or s in productive for s in rhs):
                    productive.add(lhs)
                    changed = True
        if start not in productive:
            raise GrammarError(f"the grammar's language is empty (rule {nts[start // 2]!r} derives no string)")
        rules = [r for r in rules if r[0] in productive and all(s % 2 == 0 or s in productive for s in r[1])]
        # reachable symbols
        by_lhs: dict[int, list[tuple[int, ...]]] = {}
        for lhs, rhs in rules:
            by_lhs.setdefault(lhs, []).append(rhs)
        reach = {start}
        stack = [start]
        while stack:
            s = stack.pop()
            for rhs in by_lhs.get(s, ()):
                for x in rhs:
                    if x not in reach:
                        reach.add(x)
                        if x % 2 == 1:
                            stack.append(x)
        reach.update(self._ignore)
        used_terms = sorted(s // 2 for s in reach if s % 2 == 0)
        used_nts = sorted(s // 2 for s in reach if s % 2 == 1)
        tmap = {self._t(i): k for k, i in enumerate(used_terms)}
        nt_base = len(used_terms)
        nmap = {self._n(j): nt_base + k for k, j in enumerate(used_nts)}
        sym = {**tmap, **nmap}
        out_rules = tuple((sym[lhs], tuple(sym[s] for s in rhs)) for lhs, rhs in rules if lhs in reach)
        return GrammarIR(
            terminals=tuple(terms[i] for i in used_terms),
            terminal_names=tuple(names[i] for i in used_terms),
            nonterminal_names=tuple(nts[j] for j in used_nts),
            rules=out_rules,
            start=sym[start],
            ignore=tuple(tmap[t] for t in self._ignore),
            source=source,
            meta=dict(meta or {}),
        )


def _without_empty(dfa: ByteDFA) -> ByteDFA | None:
    """The DFA of L(dfa) minus the empty string, or None when that is empty."""
    import numpy as np

    n = dfa.n_states
    # Add a fresh non-accepting copy of the start state.
    trans = np.vstack([dfa.trans, dfa.trans[0:1]]).astype(np.int32)
    acc = np.concatenate([dfa.accepting, [False]])
    out = ByteDFA.from_arrays(trans, acc, start=n)
    return None if out.is_empty else out
