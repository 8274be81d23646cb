"""The normal form schemas compile to: a ``Shape`` per JSON type, nested values by node id.

A Shape is the set of JSON values it accepts, split by type: null, booleans, a
number language (byte DFA over exponent-free texts, plus ``exp`` for texts with an
exponent: NONE = none of them, ALL = all of them, DROP = unknown, never emitted),
a string language (code points), and unions (tuples) of array and object shapes.
Array and object shapes refer to the values they contain by node id, so recursive
schemas stay finite; the compiler (``compiler.py``) owns the nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...automaton.dfa import ByteDFA
from .strings import StrLang

ANY_NODE = 0
NEVER_NODE = 1

EXP_NONE, EXP_ALL, EXP_DROP = 0, 1, 2


def exp_and(a: int, b: int) -> int:
    if a == EXP_NONE or b == EXP_NONE:
        return EXP_NONE
    if a == EXP_ALL:
        return b
    if b == EXP_ALL:
        return a
    return EXP_DROP


def exp_or(a: int, b: int) -> int:
    if a == EXP_ALL or b == EXP_ALL:
        return EXP_ALL
    if a == EXP_NONE:
        return b
    if b == EXP_NONE:
        return a
    return EXP_DROP


def exp_not(a: int) -> int:
    return {EXP_NONE: EXP_ALL, EXP_ALL: EXP_NONE, EXP_DROP: EXP_DROP}[a]


@dataclass(frozen=True)
class ObjShape:
    props: tuple = ()  # ((name, node), ...) listed names in output order; NEVER_NODE = forbidden
    required: frozenset = frozenset()
    rest: tuple = ((StrLang.any(), ANY_NODE),)  # ((StrLang keys, node), ...) disjoint classes for other keys
    minp: int = 0
    maxp: int | None = None
    deps: tuple = ()  # ((name, frozenset(names required when name present)), ...)
    promoted: frozenset = frozenset()  # listed only because required/dependencies name them (ordered last)
    # ((StrLang keys, node), ...): for each entry, at least one present key in `keys` (listed or not) has a
    # value accepted by `node` (what the complement of a rest restriction needs)
    needs: tuple = ()

    def value_for(self, name: str) -> int:
        for n, v in self.props:
            if n == name:
                return v
        for k, v in self.rest:
            if k.accepts(name):
                return v
        return NEVER_NODE

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.props]


@dataclass(frozen=True)
class ArrShape:
    prefix: tuple = ()  # node per leading position
    items: int = ANY_NODE  # node for positions after the prefix (NEVER_NODE: none allowed)
    minI: int = 0
    maxI: int | None = None
    contains: tuple = ()  # ((node, min, max|None, from_index), ...)
    unique: bool = False

    def item_at(self, i: int) -> int:
        return self.prefix[i] if i < len(self.prefix) else self.items


@dataclass(frozen=True)
class Shape:
    null: bool = False
    bools: frozenset = frozenset()
    num: ByteDFA | None = None  # None: no exponent-free number
    exp: int = EXP_NONE
    str: StrLang | None = None  # None: no string
    arrs: tuple = ()
    objs: tuple = ()
    relaxed: tuple = field(default=(), compare=False)

    @property
    def scalar_empty(self) -> bool:
        return (not self.null and not self.bools and self.num is None and self.exp != EXP_ALL
                and self.str is None)

    @property
    def is_empty(self) -> bool:
        return self.scalar_empty and not self.arrs and not self.objs
