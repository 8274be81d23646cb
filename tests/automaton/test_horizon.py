"""Column images (horizon.py) against the real columns they stand for.

An image keeps a column's stack only a few origin links deep. What it allows must be
allowed by the real column; what it refuses must be refused there too, or be undecided
(``Truncated``) when the image is open, i.e. a completion reached past the horizon.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from corral import Grammar
from corral.automaton.horizon import Horizon, Truncated
from corral.automaton.lexer import DEAD
from corral.testing import random_sentence

GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"


def _grammar(name: str) -> Grammar:
    return Grammar.from_lark((GRAMMARS / f"{name}.lark").read_text())


def _outcome(call):
    try:
        return call()
    except Truncated:
        return "undecided"


def test_a_pop_past_the_horizon_opens_the_column_and_leaves_only_what_needs_it_undecided():
    g = _grammar("arithmetic")
    A = g.automaton
    horizon = Horizon(A, 1)
    (column,) = A.state(A.walk(A.initial, b"((x + y"))[0]
    rpar = A.ir.terminal_names.index("RPAR")
    image = horizon.image(column)
    after = horizon.parser.scan(image, rpar)  # pops past the image: no longer an error
    assert horizon.parser.column(after).open
    assert not A.parser.column(A.parser.scan(column, rpar)).open
    state = horizon.automaton.boundary_state(after)
    assert horizon.automaton.step(state, ord(";")) == DEAD  # no terminal starts with ';'
    for byte in b")*":  # what follows the inner ')' depends on what lies below it
        with pytest.raises(Truncated):
            horizon.automaton.step(state, byte)


@pytest.mark.parametrize("name", ["arithmetic", "json", "sql_select", "config"])
def test_images_allow_only_what_the_real_column_allows(name):
    g = _grammar(name)
    A = g.automaton
    horizon = Horizon(A, 1)
    view = horizon.automaton
    rng = random.Random(7)
    checked = opened = 0
    for seed in range(12):
        text = random_sentence(g.ir, seed)
        for cut in sorted(rng.sample(range(len(text) + 1), min(6, len(text) + 1))):
            sid = A.walk(A.initial, text[:cut])
            assert sid >= 0
            for column in A.state(sid)[0]:
                image = horizon.image(column)
                assert set(view.parser.column(image).expected) == set(A.parser.column(column).expected)
                for term in range(A.n_terminals):
                    real = A.parser.scan(column, term)
                    seen = _outcome(lambda: view.parser.scan(image, term))
                    if seen == "undecided":
                        continue
                    if real == DEAD:
                        assert seen == DEAD
                        continue
                    assert seen != DEAD
                    known, full = view.parser.column(seen), A.parser.column(real)
                    opened += known.open
                    assert set(known.expected) <= set(full.expected)
                    if not known.open:
                        assert set(known.expected) == set(full.expected)
                    real_state, seen_state = A.boundary_state(real), view.boundary_state(seen)
                    for byte in range(256):
                        step = _outcome(lambda: view.step(seen_state, byte))
                        if step != "undecided":
                            assert (step == DEAD) == (A.step(real_state, byte) == DEAD), (text[:cut], term, byte)
                            checked += 1
    assert checked > 1000
    if name in ("arithmetic", "json"):
        assert opened > 0  # some pops went past the image and were still decided


@pytest.mark.parametrize("name", ["arithmetic", "json", "sql_select"])
def test_the_image_after_a_terminal_found_on_images_is_the_image_of_the_real_column(name):
    g = _grammar(name)
    A = g.automaton
    horizon = Horizon(A, 1)
    found = missed = 0
    for seed in range(12):
        text = random_sentence(g.ir, seed)
        for cut in range(0, len(text) + 1, max(1, len(text) // 8)):
            for column in A.state(A.walk(A.initial, text[:cut]))[0]:
                for term in A.parser.column(column).expected:
                    image = horizon.image_after(column, term)
                    if image is None:
                        missed += 1
                    else:
                        assert image == horizon.image(A.parser.scan(column, term))
                        found += 1
    assert found > 50
    if name != "json":
        assert missed > 0  # pops past the image: only the real column tells


def test_without_open_columns_a_pop_past_the_horizon_is_undecided():
    g = _grammar("arithmetic")
    A = g.automaton
    horizon = Horizon(A, 1, open_columns=False)
    (column,) = A.state(A.walk(A.initial, b"((x + y"))[0]
    with pytest.raises(Truncated):
        horizon.parser.scan(horizon.image(column), A.ir.terminal_names.index("RPAR"))
    assert horizon.image_after(column, A.ir.terminal_names.index("RPAR")) is None
