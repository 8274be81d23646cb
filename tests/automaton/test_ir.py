"""The grammar IR's analyses, checked against the Earley parser that runs the grammar."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from corral.automaton.grammar import Grammar
from corral.automaton.ir import terminal_follow
from corral.automaton.lexer import ByteAutomaton

GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"


def _follow_by_parsing(automaton: ByteAutomaton, walks: int = 400, length: int = 40) -> list[set[int]]:
    """Which terminal may start right after each terminal, seen by the parser along random
    terminal sequences from the start (at every column, every expected terminal is tried)."""
    nt = automaton.n_terminals
    follow: list[set[int]] = [set() for _ in range(nt)]
    rng = random.Random(0)
    for _ in range(walks):
        column = automaton.parser.initial
        for _ in range(length):
            options = []
            for role in automaton.roles_at(column):
                nxt = automaton.after(column, role)
                if nxt >= 0:
                    follow[role % nt].update(r % nt for r in automaton.roles_at(nxt))
                    options.append(nxt)
            if not options:
                break
            column = rng.choice(options)
    return follow


GRAMMAR_TEXTS = {
    **{p.stem: p.read_text(encoding="utf-8") for p in sorted(GRAMMARS.glob("*.lark"))},
    # nullable symbols between terminals, left recursion, an ignored terminal that is also used
    "nullable": 'start: a b? c* "z"\na: "x" | a "x"\nb: "y"? "w"?\nc: "v" b\n%ignore " "\n',
    "ignored_and_used": 'start: WS? "a" (WS "b")*\nWS: " "+\n%ignore WS\n',
}


@pytest.mark.parametrize("name", sorted(GRAMMAR_TEXTS))
@pytest.mark.parametrize("collapse", [False, True])
def test_terminal_follow_matches_the_parser(name, collapse):
    grammar = Grammar.from_lark(GRAMMAR_TEXTS[name])
    automaton = grammar.automaton if collapse else ByteAutomaton(grammar.source_ir)
    follow = terminal_follow(automaton.ir)
    # random walks happen to meet every pair in these grammars, so the sets must be equal
    assert _follow_by_parsing(automaton) == [set(f) for f in follow]


@pytest.mark.parametrize("source, open_, nested_open, item, close", [
    ('root ::= "[" item ("," item)* "]"\nitem ::= [0-9]+ | root', "[", "[1,[", "1", "]"),
    ('root ::= "{" pair ("," pair)* "}"\npair ::= "\\"" [a-z]+ "\\":" value\nvalue ::= [0-9]+ | root',
     "{", '{"a":1,"b":{', '"k":1', "}"),
])
def test_repetition_items_share_one_parser_state_whatever_their_number(source, open_, nested_open, item, close):
    """``x*`` is left-recursive: the column after an item keeps one item for the list, with
    its origin where the list began, so after the second item every further one leads back to
    the same automaton state (and to the same cached masks). Right recursion stacked one origin
    per item: a new state after every item, and a closing bracket that popped one level per item."""
    g = Grammar.from_ebnf(source)
    a = g.automaton

    def state(text: str) -> int:
        sid = a.initial
        for b in text.encode():
            sid = a.step(sid, b)
            assert sid >= 0
        return sid

    states = [state(open_ + (item + ",") * k) for k in range(2, 7)]
    assert len(set(states)) == 1
    nested = [state(nested_open + (item + ",") * k) for k in range(2, 7)]
    assert len(set(nested)) == 1 and nested[0] != states[0]
    assert g.accepts(open_ + ",".join([item] * 40) + close)


def _follow_by_fixed_point(ir) -> list[set[int]]:
    """FOLLOW over terminals by the textbook fixed point (slow, obviously right): repeat every
    rule until nothing changes."""
    nt = ir.n_terminals
    nullable: set[int] = set()
    first: dict[int, set[int]] = {}
    follow: dict[int, set[int]] = {}

    def first_of(seq) -> tuple[set[int], bool]:
        out: set[int] = set()
        for s in seq:
            if s < nt:
                return out | {s}, False
            out |= first.get(s, set())
            if s not in nullable:
                return out, False
        return out, True

    changed = True
    while changed:
        changed = False
        for lhs, rhs in ir.rules:
            f, empty = first_of(rhs)
            if not f <= first.setdefault(lhs, set()) or (empty and lhs not in nullable):
                first[lhs] |= f
                if empty:
                    nullable.add(lhs)
                changed = True
            for i, s in enumerate(rhs):
                rest, rest_empty = first_of(rhs[i + 1:])
                add = rest | (follow.get(lhs, set()) if rest_empty else set())
                if not add <= follow.setdefault(s, set()):
                    follow[s] |= add
                    changed = True
    out = [set(follow.get(t, set())) for t in range(nt)]
    if ir.ignore:
        anywhere = set().union(*out, first.get(ir.start, set()), ir.ignore)
        for t in range(nt):
            out[t] |= anywhere if t in ir.ignore else set(ir.ignore)
    return out


def _nested_schema(depth: int) -> dict:
    leaf = {"type": "object", "properties": {"id": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}
    for k in range(depth):
        leaf = {"type": "object", "properties": {f"a{k}": leaf, f"b{k}": {"anyOf": [{"type": "null"}, leaf]},
                                                  f"c{k}": {"type": "array", "items": leaf}}, "required": [f"a{k}"]}
    return leaf


@pytest.mark.parametrize("name", ["arithmetic", "json", "sql_select", "config", "csv", "schema"])
def test_terminal_follow_equals_the_textbook_fixed_point(name):
    if name == "schema":
        ir = Grammar.from_json_schema(_nested_schema(4)).ir
    else:
        ir = Grammar.from_lark((Path(__file__).resolve().parents[2] / "grammars" / f"{name}.lark").read_text()).ir
    assert [set(f) for f in terminal_follow(ir)] == _follow_by_fixed_point(ir)
