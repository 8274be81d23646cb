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
