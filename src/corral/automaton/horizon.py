"""Parser columns seen only to a fixed depth, so masks can be shared by columns that look alike.

A real Earley column refers to the columns its items started in, and those to
theirs: together they are the whole parse stack. Token masks rarely need all of
it. Whether ``")+"`` may follow an identifier depends on the innermost open
parenthesis, not on the thirty frames below it.

A ``Horizon`` of depth d copies a column's items and follows origin links d
times. Past that depth each origin becomes an *opaque* column, which remembers
only whether it is the first column. Columns whose stacks agree to depth d get
the same image. Completing an item that pops past the horizon reaches an opaque
column: it adds nothing there, and the column it was computing for is *open*,
holding only some of the real items. So on images, what is allowed is certain;
what an open column (or a lexer state reading from one) would refuse raises
``Truncated`` instead, and the caller settles it on the real column. (A horizon
made with ``open_columns=False`` raises ``Truncated`` at the pop itself.)
"""

from __future__ import annotations

import threading

from .lexer import ByteAutomaton
from .parser import SELF, EarleyParser, Truncated

__all__ = ["Horizon", "Truncated"]


_CUT_REACHED = True  # columns reached from an image are cut too ...
_CUT_EXTRA = 1  # ... this many origin links deeper than the horizon


class Horizon:
    """Images of one automaton's columns, cut ``depth`` origin links deep, in their own automaton."""

    def __init__(self, automaton: ByteAutomaton, depth: int, open_columns: bool = True) -> None:
        if depth < 1:
            raise ValueError("a horizon needs depth >= 1")
        self.depth = depth
        self.real = automaton.parser
        self.parser = EarleyParser(automaton.ir)
        self.parser.open_columns = open_columns
        self.automaton = ByteAutomaton(automaton.ir, parser=self.parser)
        self._opaque = (self.parser.add_opaque_column(False), self.parser.add_opaque_column(True))
        self._images: list[dict[int, int]] = [{} for _ in range(depth + 2)]  # and one link deeper (grammar's walk)
        self._cuts: list[dict[int, int]] = [{} for _ in range(depth + _CUT_EXTRA + 1)]
        self._lock = threading.Lock()
        if _CUT_REACHED:
            self.parser.cut = self._cut

    def image(self, cid: int, depth: int | None = None) -> int:
        """The image of real column ``cid`` (origins followed ``depth`` links, default the horizon's)."""
        d = self.depth if depth is None else depth
        memo = self._images[d]
        out = memo.get(cid)
        if out is not None:
            return out
        kernel, predicted = self._shallow(self.real, cid, d, self.image)
        with self.parser._lock:
            out = self.parser._intern(kernel, self.parser.predicted_part(predicted))
        memo[cid] = out
        return out

    def image_after(self, cid: int, terminal: int) -> int | None:
        """The image of the real column after ``terminal`` is read in real column ``cid``, found
        on images alone: read the terminal in the image of ``cid`` (images repeat, so this is
        mostly a lookup) and cut the result back to the horizon. None when what the terminal
        completes reaches past the image (the result is open): only the real column can tell."""
        try:
            after = self.parser.scan(self.image(cid), terminal)
        except Truncated:
            return None
        if after < 0 or self.parser.column(after).open:
            return None
        with self.parser._lock:
            return self._cut(after, self.depth)

    def shallow(self, cid: int) -> int:
        """Column ``cid`` of this horizon's own parser, cut one origin link deep."""
        with self.parser._lock:
            return self._cut(cid, 1)

    def _cut(self, cid: int, depth: int | None = None) -> int:
        """A column of this horizon's own parser, cut back to ``_CUT_EXTRA`` links past the horizon.

        Columns reached from an image by reading terminals grow new origin links; without a
        cut, a chain of prefix operators (a token of many ``-`` or ``(``) makes a new column per
        link, where all but the first few look alike to any computation that stays within
        the horizon. Cutting them keeps the view finite; a completion that reads past the cut
        opens its column, as on any image.
        """
        d = self.depth + _CUT_EXTRA if depth is None else depth
        if cid in self._opaque:
            return cid
        memo = self._cuts[d]
        out = memo.get(cid)
        if out is not None:
            return out
        kernel, predicted = self._shallow(self.parser, cid, d, self._cut)
        maybe = self.parser.column(cid).maybe
        out = self.parser._intern(kernel, self.parser.predicted_part(predicted), maybe)  # scan holds the lock
        memo[cid] = out
        return out

    def _shallow(self, source, cid: int, d: int, deeper) -> tuple[list, frozenset]:
        """Column ``cid`` of parser ``source`` seen ``d`` origin links deep: its kernel with
        each origin mapped by ``deeper`` (one link less) or, at the last link, to an opaque
        column; and its predicted items, which need no mapping."""
        col = source.column(cid)
        if d > 1:
            kernel = [(r, dot, deeper(o, d - 1)) for r, dot, o in col.kernel]
        else:
            # the first column has no origins of its own (nothing lies below it): it is kept
            # as it is, so a computation at the bottom of the stack never reads past the cut
            opaque = self._opaque
            columns = source._columns
            kernel = [(r, dot, deeper(o, 1) if not columns[o].kernel else opaque[source._starts_here(o)])
                      for r, dot, o in col.kernel]
        return kernel, col.predicted
