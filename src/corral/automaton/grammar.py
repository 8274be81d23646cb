"""The compiled grammar (immutable, shared) and the matcher (one cheap cursor per sequence)."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CompileLimitError, CorralError, ValidationError
from .ir import GrammarIR, terminal_follow
from .horizon import Horizon, Truncated
from .lexer import DEAD, ByteAutomaton
from .dfa import co_accepting
from .masks import (TerminalStateMasks, record_keys, run_successor, set_token_ranges, terminal_state_masks,
                    walk_crossing_keys)
from .trie import trie_for, trie_lists
from .regularize import regularize
from .memo import BoundedCache

if TYPE_CHECKING:  # pragma: no cover
    from ..vocab import Vocabulary

TERMINATED = -2
_GENERATIONS = itertools.count()  # tells apart the automata a grammar renews (Matcher.state_key)
_EXACT_WALK_TOKENS = 256  # up to this many crossing tokens, a byte walk may beat per-terminal trie walks:
_OPEN_WALK_TOKENS = 256  # on an open column (horizon.py), up to this many crossing tokens are walked byte by byte
_EXACT_TOKENS_PER_ROLE = 16  # it does when they are fewer than this many per terminal that may come next
_EAGER_STATE_LIMIT = 256  # grammars with at most this many terminal states walk them all at compile time
_EAGER_STARTS = True  # bigger grammars: each terminal's states up to _EAGER_START_DEPTH bytes in, at compile time
_EAGER_START_FANOUT = 4  # ... while at most this many states are that many bytes in
_EAGER_START_DEPTH = 2
_EAGER_RUN_STEPS = 64  # ... and this many states along each run of broad counted characters from them (a bounded string)
_EAGER_CROSSINGS = True  # the states walked at compile time walk their crossing tokens through every terminal that may follow
_EAGER_CROSS_DEEPER = 256  # ... and the crossing tokens of those walks, when this many, through what may follow
_EAGER_INITIAL = True  # the first state's mask, at compile time
_EAGER_IMAGES = 1024  # column images reached from the first column at compile time, at most (0: none)
_EAGER_SETTLES = True  # ... and the settles through images of what their crossing sets leave undecided
_EAGER_UNIONS = True  # ... and the unions of columns after terminals that accept the same text
_EAGER_IMAGE_CROSSINGS = 4096  # ... computing at most this many crossing sets on them
_EAGER_IMAGE_SECONDS = 0.35  # ... for at most this long (a whole walk: SQL 0.25 s; big grammars such as Go would take more)
_SETTLE_THROUGH_VIEW = True  # records that pop past the horizon go through the image of the column they reach first
_SHALLOW_FIRST = True  # on a view, the column after a terminal is read first cut one origin link deep
_MASK_CACHE_BYTES = 256 << 20  # each per-state (and per-column) mask cache keeps about this much (16,000 masks at 128k tokens)
_RENEW_STATES = 100_000  # an automaton past this many states (2-3 KB each with its columns) starts afresh for new matchers
_EAGER_DEEPER_SECONDS = 0.02  # then, until this long after the walk began, one real column per image one link deeper
_HORIZON = 1  # origin depth of the column images whose crossing masks are shared (horizon.py)
_TRUNCATED = -2


def _as_vocab(tokenizer_or_vocab: Any) -> "Vocabulary | None":
    if tokenizer_or_vocab is None:
        return None
    if hasattr(tokenizer_or_vocab, "token_bytes") and hasattr(tokenizer_or_vocab, "fingerprint"):
        return tokenizer_or_vocab
    from ..vocab import Vocabulary

    return Vocabulary.from_tokenizer(tokenizer_or_vocab)


class Grammar:
    """A grammar compiled to a byte automaton, with token masks for one vocabulary.

    Immutable from the outside and safe to share across threads and matchers;
    its caches fill as matchers explore it. Build one with a ``from_*`` constructor.
    In a long-lived process the automaton grows with every new sentence; past
    ``_RENEW_STATES`` states, new matchers start on a fresh one (``_renewed``).
    """

    def __init__(
        self,
        ir: GrammarIR,
        vocab: "Vocabulary | Any | None" = None,
        *,
        collapse_regular: bool | None = None,
        _automaton: ByteAutomaton | None = None,
    ) -> None:
        self.source_ir = ir
        # JSON Schema grammars arrive with coarse, shared terminals (merging them would trade
        # shared per-terminal masks for large grammar-specific DFAs), and are compiled per
        # request (their compile time is a goal of its own, so no image walk)
        from_schema = ir.source == "json_schema"
        try:
            if _automaton is not None:
                self.ir = _automaton.ir
            else:
                if collapse_regular is None:
                    collapse_regular = not from_schema
                self.ir = regularize(ir) if collapse_regular else ir
            self.automaton = _automaton or ByteAutomaton(self.ir)
        except RecursionError:
            raise CompileLimitError("grammar nesting too deep to compile (Python recursion limit)") from None
        self.vocab = _as_vocab(vocab)
        self._image_walk = not from_schema
        self._renew_lock = threading.Lock()
        self._masker = None
        if self.vocab is not None:
            self._masker = _Masker(self.automaton, self.vocab, images=self._image_walk)

    # -- constructors -------------------------------------------------------------
    @classmethod
    def from_ir(cls, ir: GrammarIR, tokenizer: Any = None) -> "Grammar":
        return cls(ir, tokenizer)

    @classmethod
    def from_lark(cls, text: str, tokenizer: Any = None, *, start: str = "start") -> "Grammar":
        """A grammar in Lark's EBNF (the language of Lark's Earley parser, dynamic_complete lexer)."""
        from ..sources.lark import lark_to_ir

        return cls(lark_to_ir(text, start=start), tokenizer)

    @classmethod
    def from_ebnf(cls, text: str, tokenizer: Any = None, *, start: str = "root") -> "Grammar":
        """A grammar in the GBNF dialect of llama.cpp and transformers-CFG."""
        from ..sources.ebnf import ebnf_to_ir

        return cls(ebnf_to_ir(text, start=start), tokenizer)

    @classmethod
    def from_regex(cls, pattern: str, tokenizer: Any = None, *, flags: str = "") -> "Grammar":
        """The language of a regular expression (full match)."""
        from ..sources.regex import regex_to_ir

        return cls(regex_to_ir(pattern, flags=flags), tokenizer)

    @classmethod
    def from_json_schema(cls, schema: Any, tokenizer: Any = None, **options: Any) -> "Grammar":
        """JSON documents that validate against ``schema`` (see ``json_schema_to_ir`` for options)."""
        from ..sources.json_schema import json_schema_to_ir

        return cls(json_schema_to_ir(schema, **options), tokenizer)

    def with_vocabulary(self, tokenizer_or_vocab: Any) -> "Grammar":
        """The same language with masks for another tokenizer (the byte automaton is shared)."""
        return Grammar(self.ir, tokenizer_or_vocab, _automaton=self.automaton)

    def _renewed(self) -> None:
        """Start a fresh automaton (and masker) once the current one has grown past
        ``_RENEW_STATES`` states.

        The automaton interns every state any sequence reaches, so in a long-lived process it
        grows with every new sentence. Matchers keep the automaton they started on (their state
        ids mean something there only), so it is freed when the last of them goes; new
        matchers and text queries use the fresh one. Compile-time work is done again.
        """
        if self.automaton.n_states <= _RENEW_STATES:
            return
        with self._renew_lock:
            if self.automaton.n_states <= _RENEW_STATES:
                return  # another thread renewed it
            automaton = ByteAutomaton(self.ir)
            masker = None if self.vocab is None else _Masker(automaton, self.vocab, images=self._image_walk)
            self._masker = masker
            self.automaton = automaton

    # -- text-level queries ---------------------------------------------------------
    def _walk(self, text: str | bytes) -> tuple[int, int]:
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        self._renewed()
        a = self.automaton
        sid = a.initial
        for i, b in enumerate(data):
            nxt = a.step(sid, b)
            if nxt < 0:
                return sid, i
            sid = nxt
        return sid, len(data)

    def accepts(self, text: str | bytes) -> bool:
        """Whether the whole text is a sentence of the grammar."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        sid, n = self._walk(data)
        return n == len(data) and self.automaton.is_accepting(sid)

    def is_viable_prefix(self, text: str | bytes) -> bool:
        """Whether the text can still be extended into a sentence."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        return self._walk(data)[1] == len(data)

    def check(self, text: str | bytes) -> None:
        """Raise ``ValidationError`` (byte offset, context, what was expected) unless ``text`` is a sentence."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        sid, n = self._walk(data)
        if n == len(data) and self.automaton.is_accepting(sid):
            return
        context = data[max(0, n - 20) : n + 20].decode("utf-8", "replace")
        expected = _describe_bytes(self.automaton.live_bytes(sid))
        if n == len(data):
            msg = f"text ends at byte {n} before the grammar can end; expected {expected}"
        else:
            msg = f"unexpected {data[n:n+1]!r} at byte {n}; expected {expected}"
        raise ValidationError(f"{msg}; near {context!r}", offset=n, context=context, expected=expected)

    # -- matching -------------------------------------------------------------------
    def matcher(self) -> "Matcher":
        """A fresh matcher at the start of a sentence (needs a vocabulary)."""
        if self._masker is None:
            raise CorralError("this grammar has no vocabulary: build it with a tokenizer, or use with_vocabulary()")
        self._renewed()
        masker = self._masker
        return Matcher(self, [masker.A.initial], masker)

    def precompute(self) -> None:
        """Compute the inside/cross masks of every terminal state now (done lazily otherwise)."""
        if self._masker is not None:
            self._masker.precompute()


class _Masker:
    """Token masks of a grammar's automaton states for one vocabulary."""

    def __init__(self, automaton: ByteAutomaton, vocab: "Vocabulary", horizon: int | None = _HORIZON,
                 eager: bool = True, images: bool = True) -> None:
        self.A = automaton
        self.generation = next(_GENERATIONS)
        self.vocab = vocab
        self.n_words = vocab.n_words
        self.eos = frozenset(vocab.eos_ids)
        self._eos_mask = np.zeros(self.n_words, dtype=np.uint32)
        for e in vocab.eos_ids:
            self._eos_mask[e >> 5] |= np.uint32(1 << (e & 31))
        self._eos_mask.setflags(write=False)
        # per real state and column: these grow with every new sequence, so the oldest are dropped
        limit = max(64, _MASK_CACHE_BYTES // (4 * self.n_words))
        self._state_masks: dict[int, np.ndarray] = BoundedCache(limit)
        self._state_tensors: dict[int, torch.Tensor] = BoundedCache(limit)
        self._term_masks: dict[tuple[int, int, int], np.ndarray] = BoundedCache(limit)
        self._image_term_masks: dict[tuple[int, int, int], np.ndarray] = {}
        self._crossings: dict[tuple[int, Any], tuple[np.ndarray, list]] = {}
        self._crossing_keys: dict[tuple[int, int], np.ndarray] = {}
        # Open columns decide more on the images but build more of them: that pays where the
        # compile-time walk has warmed the images, not on a JSON Schema grammar compiled per
        # request (MaskBench p99 +8% with them), which reads a pop past an image as Truncated.
        self._horizon = Horizon(automaton, horizon, open_columns=images) if horizon else None
        # the masker of column images: it only serves this one, which does the compile-time work
        self._view = _Masker(self._horizon.automaton, vocab, horizon=None, eager=False) if horizon else None
        self._shallow: Any = None  # on a view: a column of its automaton cut one origin link deep
        if self._view is not None and _SHALLOW_FIRST:
            self._view._shallow = self._horizon.shallow
        self._token_step: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        self.token_bytes = vocab.token_bytes
        if eager:
            self._precompute_at_compile_time(images)

    def _precompute_at_compile_time(self, images: bool) -> None:
        walked: list[tuple[int, int]] = []
        if sum(d.n_states for d in self.A.ir.terminals) <= _EAGER_STATE_LIMIT:
            walked = self.precompute()  # small grammars: every terminal state now, so no mask waits on a walk
        elif _EAGER_STARTS:
            walked = self.precompute_starts()
        if _EAGER_CROSSINGS:
            self.precompute_crossings(walked)
        if images and _EAGER_IMAGES and self._horizon is not None:
            self.precompute_images(walked)
        if _EAGER_INITIAL:
            self.state_mask(self.A.initial)  # every sequence starts there

    def precompute(self) -> list[tuple[int, int]]:
        """Every (terminal, state) pair's masks, now; returns the pairs."""
        done = []
        for t, dfa in enumerate(self.A.ir.terminals):
            for q in range(dfa.n_states):
                terminal_state_masks(self.vocab, dfa, q)
                done.append((t, q))
        return done

    def precompute_crossings(self, states: list[tuple[int, int]]) -> None:
        """Walk the crossing tokens of these terminal states (whitespace before a word, an
        identifier's end before ``)``, ...) through every terminal that may follow, now: the
        first column after a terminal needs these walks whatever the parse stack, and a big
        set costs milliseconds at 128k tokens."""
        terms = self.A.ir.terminals
        follow = terminal_follow(self.A.ir)
        trie = trie_lists(self.vocab)
        for t, q in states:
            tsm = terminal_state_masks(self.vocab, terms[t], q)
            if follow[t] and tsm.has_crossing:
                records = self._records(t, q, tsm)
                for u in follow[t]:
                    _, deeper = walk_crossing_keys(self.vocab, terms[u], records)
                    if _EAGER_CROSS_DEEPER and len(deeper) and _n_tokens(trie, deeper) >= _EAGER_CROSS_DEEPER:
                        for v in follow[u]:
                            walk_crossing_keys(self.vocab, terms[v], deeper)

    def precompute_images(self, states: list[tuple[int, int]]) -> None:
        """The crossing sets of these terminal states on the column images that reading terminals
        from the first column reaches, breadth first, one real column per image (at most
        ``_EAGER_IMAGES`` images, for at most ``_EAGER_IMAGE_SECONDS``: what it leaves is
        computed when first met, as without it).

        A state's crossing tokens are read from the image of the column after its terminal
        (``_term_mask``), and images repeat across sentences (the image after ``(`` is the same
        at any depth). An image's first visit costs a millisecond or more at 128k tokens; here
        it happens once per grammar. The walk reads real columns, so a read that pops several
        levels (a name that ends a list item in SQL) leads where it leads in a sentence. The
        records an image leaves undecided are settled through the image of the column their
        pops lead to, as ``_settle`` does. Where text ends several terminals at once (``distinct``
        as a keyword and as a name: ``dfa.co_accepting``), the walk also goes on from the union
        of the columns after them, as the lexer does.
        """
        A, horizon = self.A, self._horizon
        crossing: dict[int, list[tuple[int, np.ndarray]]] = {}
        for t, q in states:
            tsm = terminal_state_masks(self.vocab, A.ir.terminals[t], q)
            if tsm.has_crossing:
                crossing.setdefault(t, []).append((q, self._records(t, q, tsm)))
        together = co_accepting(A.ir.terminals) if _EAGER_UNIONS else []
        first = A.parser.initial
        start = time.perf_counter()
        budget = _EAGER_IMAGE_CROSSINGS
        for depth, seconds in ((horizon.depth, _EAGER_IMAGE_SECONDS), (horizon.depth + 1, _EAGER_DEEPER_SECONDS)):
            deadline = start + seconds
            budget = self._walk_images(first, depth, crossing, together, budget, deadline)

    def _walk_images(self, first: int, depth: int, crossing: dict, together: list, budget: int, deadline: float) -> int:
        A, horizon = self.A, self._horizon
        nt = A.n_terminals
        seen, queue = {horizon.image(first, depth)}, deque([first])
        while queue and budget > 0 and time.perf_counter() < deadline:
            column = queue.popleft()
            roles = A.roles_at(column)
            nexts = []
            for role in roles:
                after = A.after(column, role)
                if after >= 0:
                    budget -= self._image_crossings(after, crossing.get(role % nt, ()), role % nt)
                    nexts.append(after)
            for group in _role_groups(roles, nt, together):
                afters = frozenset(A.after(column, r) for r in group) - {DEAD}
                if len(afters) > 1:
                    nexts.append(A.parser.union(afters))
            for after in nexts:
                image = horizon.image(after, depth)
                if image not in seen and len(seen) < _EAGER_IMAGES:
                    seen.add(image)
                    queue.append(after)
        return budget

    def _image_crossings(self, after: int, states: list[tuple[int, np.ndarray]], term: int) -> int:
        """What ``_term_mask`` computes on the image of real column ``after`` for these states of
        ``term`` (and the settles through images of what it leaves undecided, where
        ``_EAGER_SETTLES``); returns how many crossing sets it asked for."""
        for q, records in states:
            _, (_, undecided) = self._on_image(after, records, (term, q))
            if _EAGER_SETTLES:
                for path, rest in undecided:
                    col = _after_path(self.A, after, path)
                    if col >= 0 and path:
                        self._on_image(col, rest, rest.tobytes())
        return len(states)

    def _on_image(self, column: int, records: np.ndarray, records_id: Any) -> tuple[int, tuple[np.ndarray, list]]:
        """(the image of real ``column``, the crossing set of ``records`` on it): the one place masks
        and the compile-time walk read crossing sets, so the walk fills the entries masks look up."""
        image = self._horizon.image(column)
        return image, self._view.crossing(image, records, records_id)

    def _records(self, term: int, q: int, tsm) -> np.ndarray:
        records = self._crossing_keys.get((term, q))
        if records is None:
            records = record_keys((tsm.rec_node, tsm.rec_ds, tsm.rec_dn, tsm.cuts))
            self._crossing_keys[(term, q)] = records
        return records

    def precompute_starts(self) -> list[tuple[int, int]]:
        """The first states of every terminal: its start, and the states a few bytes in while
        they stay few (an object key's opening bytes). A step that may start many terminals at
        once (after ``{"`` or ``,"``) would otherwise walk each of them then. Returns those
        first (terminal, state) pairs."""
        firsts = []
        for t, dfa in enumerate(self.A.ir.terminals):
            level = [0]
            walked = []
            for _ in range(_EAGER_START_DEPTH + 1):
                for q in level:
                    terminal_state_masks(self.vocab, dfa, q)
                walked += level
                rows = dfa.trans[level]
                level = np.unique(rows[rows >= 0]).tolist()
                if len(level) > _EAGER_START_FANOUT:
                    break
            firsts += [(t, q) for q in walked]
            if _EAGER_RUN_STEPS:
                for q in walked:
                    for _ in range(_EAGER_RUN_STEPS):
                        q = run_successor(dfa, q)
                        if q < 0:
                            break
                        terminal_state_masks(self.vocab, dfa, q)
        return firsts

    def token_step(self, sid: int, tid: int) -> int:
        key = (sid, tid)
        out = self._token_step.get(key)
        if out is None:
            tb = self.token_bytes[tid] if 0 <= tid < len(self.token_bytes) else None
            out = self.A.walk(sid, tb) if tb else DEAD
            self._token_step[key] = out
        return out

    def _role_mask(self, col: int, role: int, q: int) -> np.ndarray:
        """Tokens allowed from state q of a terminal in ``role`` that started in column ``col``."""
        term = role % self.A.n_terminals
        tsm = terminal_state_masks(self.vocab, self.A.ir.terminals[term], q)
        if not tsm.has_crossing:
            return tsm.inside  # no token goes past the terminal: the column after it is not needed
        if self._horizon is not None and role == term:
            # most often the image of the column after the terminal, and what it decides, need
            # no real column: only records it leaves undecided are settled on one
            image = self._horizon.image_after(col, term)
            if image is not None:
                certain, uncertain = self._view.crossing(image, self._records(term, q, tsm), (term, q))
                if not uncertain:
                    return self._image_term_mask(image, term, q, tsm.inside, certain)
        return self._term_mask(self.A.after(col, role), term, q, tsm)

    def _term_mask(self, after_col: int, term: int, q: int, tsm: TerminalStateMasks) -> np.ndarray:
        """Tokens allowed from state q of ``term`` (its masks ``tsm``), given the column once
        ``term`` completes."""
        key = (after_col, term, q)
        m = self._term_masks.get(key)
        if m is not None:
            return m
        m = tsm.inside
        if after_col >= 0:
            records = self._records(term, q, tsm)
            if self._horizon is None:
                m = m.copy()
                self._cross_keys(after_col, records, m, {})
            else:
                # Most crossing tokens only look at the top of the parse stack: take them from
                # the column's image (shared by every column that looks the same that deep),
                # then settle the few that pop past the horizon on the real column.
                image, (certain, uncertain) = self._on_image(after_col, records, (term, q))
                if uncertain:
                    m = m | certain
                    self._settle(after_col, uncertain, m, settle=_SETTLE_THROUGH_VIEW)
                else:  # decided on the image alone: one array serves every column with that image
                    m = self._image_term_mask(image, term, q, tsm.inside, certain)
        m.setflags(write=False)
        self._term_masks[key] = m
        return m

    def _image_term_mask(self, image: int, term: int, q: int, inside: np.ndarray, certain: np.ndarray) -> np.ndarray:
        """The mask of state q of ``term`` before a column whose ``image`` decides every crossing token."""
        key = (image, term, q)
        m = self._image_term_masks.get(key)
        if m is None:
            m = inside | certain
            m.setflags(write=False)
            self._image_term_masks[key] = m
        return m

    def _cross_through_view(self, column: int, records: np.ndarray, records_id: Any, out: np.ndarray,
                            settle: bool) -> None:
        """OR into ``out`` the crossing tokens viable from real ``column``: most from the column's
        image (shared by every column that looks the same that deep), the few that pop past
        the horizon from the real column, each set of those through its own image again
        when ``settle`` (the column after a pop is often one seen before, at the same depth)."""
        _, (certain, uncertain) = self._on_image(column, records, records_id)
        np.bitwise_or(out, certain, out=out)
        self._settle(column, uncertain, out, settle)

    def _settle(self, column: int, uncertain: list, out: np.ndarray, settle: bool) -> None:
        """OR into ``out`` the records an image left ``uncertain``, read from real ``column``."""
        visited: dict = {}
        A = self.A
        for path, rest in uncertain:
            col = _after_path(A, column, path)
            if col < 0:
                continue
            if settle and path:
                self._cross_through_view(col, rest, rest.tobytes(), out, settle=False)
            else:
                self._cross_keys(col, rest, out, visited)

    def crossing(self, column: int, records: np.ndarray, records_id: Any) -> tuple[np.ndarray, list]:
        """(bits of the crossing tokens known viable, [(roles path, records) left undecided]).

        Used on a horizon's automaton, whose columns are images: where a walk needs a column
        beyond the horizon, the tokens involved are returned undecided with the terminal
        roles that lead there, for the caller to settle on the real column. Memoised per
        column and ``records_id`` (what identifies the records).
        """
        key = (column, records_id)
        out = self._crossings.get(key)
        if out is None:
            bits = np.zeros(self.n_words, dtype=np.uint32)
            uncertain: list = []
            self._cross_keys(column, records, bits, {}, (), uncertain)
            bits.setflags(write=False)
            out = (bits, _merge_by_path(uncertain))
            self._crossings[key] = out
        return out

    def _cross_keys(self, column: int, keys: np.ndarray, out: np.ndarray, visited: dict,
                    path: tuple = (), uncertain: list | None = None) -> None:
        """OR into ``out`` the crossing tokens (sorted unique (node << 20 | cut) keys) viable
        from a boundary at ``column``.

        ``visited`` maps a column to the keys already resolved there, so ambiguous splits
        (e.g. whitespace that may end anywhere) are explored once. On a horizon's automaton
        (``uncertain`` given) ``path`` is the terminal roles read since the first column, and
        undecided records are appended to ``uncertain``.
        """
        # images of different real columns may coincide, so a horizon tells paths apart
        where = column if uncertain is None else (column, path)
        prev = visited.get(where)
        if prev is not None:
            keys = keys[~np.isin(keys, prev, assume_unique=True)]
            visited[where] = np.union1d(prev, keys)
        else:
            visited[where] = keys
        if not len(keys):
            return
        trie = trie_lists(self.vocab)
        n_tokens = _n_tokens(trie, keys)
        A = self.A
        roles = A.roles_at(column)
        col = A.parser.column(column)
        is_open = uncertain is not None and col.open
        # A byte walk in Python costs per token, a compiled walk per next terminal. On an open
        # column (only some of its items known) a byte walk also tells token by token what the
        # known items allow for certain, and leaves undecided what the lacking ones may allow.
        exact = _OPEN_WALK_TOKENS if is_open else min(_EXACT_WALK_TOKENS, _EXACT_TOKENS_PER_ROLE * len(roles))
        if n_tokens <= exact:
            self._resolve_exact(out, column, (keys >> 20).tolist(), (keys & 0xFFFFF).tolist(), trie, path, uncertain)
            return
        if is_open:
            # Many tokens: the walks below decide what the known items expect; the records that
            # may start a terminal only the lacking items expect are left undecided.
            lacking = col.maybe.difference(r % A.n_terminals for r in roles)
            if lacking:
                may = _may_start(keys, lacking, A.ir.terminals, trie_for(self.vocab))
                if may.any():
                    uncertain.append((path, keys[may]))
                    keys = keys[~may]
                    if not len(keys):
                        return
        records = keys  # walk_crossing_keys memoises on (terminal, these keys)
        nt = A.n_terminals
        terms = A.ir.terminals
        seen: set[tuple[int, int]] = set()
        for role in roles:
            t = role % nt
            # Tokens that end inside ``t`` need nothing more: an expected terminal always
            # leads to a live column. Only tokens that cross it need that column.
            bits, deeper = walk_crossing_keys(self.vocab, terms[t], records)
            np.bitwise_or(out, bits, out=out)
            if not len(deeper):
                continue
            try:
                nxt = A.after(column, role)
            except Truncated:
                nxt = _TRUNCATED
            if (role if nxt == _TRUNCATED else t, nxt) in seen:
                continue
            seen.add((role if nxt == _TRUNCATED else t, nxt))
            # an ignored terminal leaves the column as it is, so it is not part of a path
            step_path = path if role >= nt else path + (role,)
            if nxt == _TRUNCATED:
                uncertain.append((step_path, deeper))
            elif nxt >= 0:
                if self._shallow is not None and nxt != column:
                    self._cross_shallow(nxt, deeper, out, visited, step_path, uncertain)
                else:
                    self._cross_keys(nxt, deeper, out, visited, step_path, uncertain)

    def _cross_shallow(self, column: int, keys: np.ndarray, out: np.ndarray, visited: dict,
                       path: tuple, uncertain: list) -> None:
        """``_cross_keys`` on a horizon's automaton, read first from the column cut one origin link
        deep: the columns reached by one terminal from different images mostly agree that deep,
        so they share that work. What the cut leaves undecided is read from the column itself."""
        shallow = self._shallow(column)
        if shallow == column:
            self._cross_keys(column, keys, out, visited, path, uncertain)
            return
        certain, undecided = self.crossing(shallow, keys, keys.tobytes())
        np.bitwise_or(out, certain, out=out)
        A = self.A
        for more, rest in undecided:
            try:
                col = _after_path(A, column, more)
            except Truncated:
                uncertain.append((path + more, rest))
                continue
            if col >= 0:
                self._cross_keys(col, rest, out, visited, path + more, uncertain)

    def _resolve_exact(self, out: np.ndarray, column: int, nodes: list[int], cuts: list[int], t,
                       path: tuple = (), uncertain: list | None = None) -> None:
        """Few crossing tokens left: walk them byte by byte from the boundary (DFS, dead branches pruned)."""
        start = self.A.boundary_state(column)
        walk, step, lives = self.A.walk, self.A.step, self.A.lives
        tb = self.token_bytes
        child_ptr, child_byte, child_node = t.child_ptr, t.child_byte, t.child_node
        tok_lo, tok_hi, sorted_ids, depth = t.tok_lo, t.tok_hi, t.sorted_ids, t.depth
        ranges: list[tuple[int, int]] = []  # trie positions of the tokens found viable
        for node, cut in zip(nodes, cuts):
            first = tb[sorted_ids[tok_lo[node]]]
            leaf = child_ptr[node] == child_ptr[node + 1] and depth[node] > cut
            try:
                # a token that ends the walk only needs its last byte to live (no state built)
                sid = walk(start, first[cut : depth[node] - 1] if leaf else first[cut : depth[node]])
                if leaf:
                    if lives(sid, first[depth[node] - 1]):
                        ranges.append((tok_lo[node], tok_hi[node]))
                    continue
            except Truncated:
                uncertain.append((path, _record_key(node, cut)))
                continue
            if sid < 0:
                continue
            stack = [(node, sid)]
            while stack:
                nd, sid = stack.pop()
                if tok_hi[nd] > tok_lo[nd]:
                    ranges.append((tok_lo[nd], tok_hi[nd]))
                for e in range(child_ptr[nd], child_ptr[nd + 1]):
                    ch = child_node[e]
                    try:
                        if child_ptr[ch] == child_ptr[ch + 1]:
                            if lives(sid, child_byte[e]):
                                ranges.append((tok_lo[ch], tok_hi[ch]))
                            continue
                        nxt = step(sid, child_byte[e])
                    except Truncated:
                        uncertain.append((path, _record_key(ch, cut)))
                        continue
                    if nxt >= 0:
                        stack.append((ch, nxt))
        set_token_ranges(out, self.vocab, ranges)

    def has_mask(self, sid: int) -> bool:
        """Whether ``state_mask(sid)`` is already computed (a lookup)."""
        return sid == TERMINATED or sid in self._state_masks

    def state_mask(self, sid: int) -> np.ndarray:
        m = self._state_masks.get(sid)
        if m is not None:
            return m
        if sid == TERMINATED:
            return self._eos_mask
        A = self.A
        boundary, partial = A.state(sid)
        found = {}  # by identity: terminals without crossing tokens share their inside masks
        for col, role, q in partial:
            m = self._role_mask(col, role, q)
            found[id(m)] = m
        for col in boundary:
            for role in A.roles_at(col):
                m = self._role_mask(col, role, 0)
                found[id(m)] = m
        if A.is_accepting(sid):
            found[id(self._eos_mask)] = self._eos_mask
        parts = list(found.values())
        if not parts:
            m = np.zeros(self.n_words, dtype=np.uint32)
        elif len(parts) == 1:
            m = parts[0]
        else:
            m = _or_all(parts)  # in place: stacking them first allocated (and faulted in) a fresh block each time
        m.setflags(write=False)
        self._state_masks[sid] = m
        return m

    def state_tensor(self, sid: int) -> torch.Tensor:
        t = self._state_tensors.get(sid)
        if t is None:
            m = self.state_mask(sid)
            t = torch.from_numpy(m.view(np.int32).copy())
            self._state_tensors[sid] = t
        return t


def _role_groups(roles: tuple[int, ...], n_terminals: int, together: list[frozenset]) -> list[tuple[int, ...]]:
    """The sets of two or more of ``roles`` whose terminals all accept some common text."""
    groups = set()
    for terms in together:
        group = tuple(r for r in roles if r % n_terminals in terms)
        if len(group) > 1:
            groups.add(group)
    return sorted(groups)


def _after_path(automaton: ByteAutomaton, column: int, path: tuple) -> int:
    """The column after the terminal roles ``path`` are read from ``column`` (negative: dead)."""
    for role in path:
        column = automaton.after(column, role)
        if column < 0:
            break
    return column


def _n_tokens(trie, keys: np.ndarray) -> int:
    """How many tokens the crossing records ``keys`` cover."""
    nodes = keys >> 20
    return int((trie.sub_hi_np[nodes] - trie.tok_lo_np[nodes]).sum())


def _record_key(node: int, cut: int) -> np.ndarray:
    """One crossing record: the tokens under trie ``node``, read from byte ``cut`` on."""
    return np.array([(int(node) << 20) | int(cut)], dtype=np.int64)


def _may_start(keys: np.ndarray, terminals: frozenset, dfas, trie) -> np.ndarray:
    """Which crossing records (sorted (node << 20 | cut) keys) may start one of ``terminals``:
    the byte at their cut can start one (a record cut at its node's end may start anything)."""
    starts = np.zeros(256, dtype=bool)
    for t in terminals:
        starts |= dfas[t].trans[0] >= 0
    nodes, cuts = keys >> 20, keys & 0xFFFFF
    inside = trie.depth[nodes] > cuts
    byte = trie.flat[np.where(inside, trie.offs[trie.tok_lo[nodes]] + cuts, 0)]
    return ~inside | starts[byte]


def _merge_by_path(uncertain: list) -> list:
    """Undecided records grouped by the path that leads to them (one real walk per path)."""
    by_path: dict[tuple, list] = {}
    for path, keys in uncertain:
        by_path.setdefault(path, []).append(keys)
    return [(p, np.unique(np.concatenate(ks))) for p, ks in by_path.items()]


def _or_all(parts: list[np.ndarray]) -> np.ndarray:
    out = parts[0] | parts[1]
    for p in parts[2:]:
        np.bitwise_or(out, p, out=out)
    return out


def _describe_bytes(bs: list[int]) -> str:
    if not bs:
        return "the end of the text"
    shown = [repr(bytes([b]))[2:-1] for b in bs[:12]]
    more = f" and {len(bs) - 12} more" if len(bs) > 12 else ""
    return "one of " + " ".join(shown) + more


def _host_view(bitmask: torch.Tensor) -> tuple:
    """(tensor, its data pointer, a uint32 numpy view of it or None when it is not in host memory).

    Writing a mask through numpy costs a third of what ``Tensor.copy_`` does at 128k tokens, which
    is most of a cached step; the data pointer tells when the tensor's storage moved.
    """
    view = None
    on_host = bitmask.device.type == "cpu" and bitmask.dtype == torch.int32
    if on_host and bitmask.dim() == 2 and bitmask.stride(-1) == 1 and not bitmask.requires_grad:
        view = bitmask.numpy().view(np.uint32)
    return (bitmask, bitmask.data_ptr(), view)


class Matcher:
    """A cursor over one sequence: which tokens may come next, and consuming them.

    Methods that change state: ``consume_token``, ``consume_bytes``, ``rollback``.
    Everything else only reads. Not thread-safe itself (use one per sequence);
    the grammar it comes from is shared safely.
    """

    __slots__ = ("grammar", "_m", "_hist", "_host")

    def __init__(self, grammar: Grammar, history: list[int], masker: "_Masker") -> None:
        self.grammar = grammar
        self._m = masker  # and its automaton: the state ids in history are theirs
        self._hist = history
        self._host: tuple | None = None

    @property
    def state(self) -> int:
        """The interned automaton state id: equal ids mean equal futures among matchers that
        started on the same automaton (see ``state_key``)."""
        return self._hist[-1]

    @property
    def state_key(self) -> tuple[int, int]:
        """A hashable key of the state: equal keys mean equal futures, for any two matchers of
        the grammar (a grammar renews its automaton once it grows large, see ``Grammar``)."""
        return (self._m.generation, self._hist[-1])

    @property
    def num_tokens(self) -> int:
        return len(self._hist) - 1

    def is_terminated(self) -> bool:
        return self._hist[-1] == TERMINATED

    def is_accepting(self) -> bool:
        s = self._hist[-1]
        return s != TERMINATED and self._m.A.is_accepting(s)

    def next_token_mask(self) -> np.ndarray:
        """The packed mask (uint32 words, bit i%32 of word i//32); read-only, shared."""
        return self._m.state_mask(self._hist[-1])

    def fill_next_token_bitmask(self, bitmask: torch.Tensor, row: int = 0) -> None:
        """Write the mask into ``bitmask[row]`` (int32, XGrammar/llguidance layout)."""
        host = self._host
        if host is None or host[0] is not bitmask or host[1] != bitmask.data_ptr():
            host = self._host = _host_view(bitmask)
        if host[2] is None:  # not in host memory: copy through torch
            t = self._m.state_tensor(self._hist[-1])
            n = t.shape[0]
            bitmask[row, :n].copy_(t)
            if bitmask.shape[1] > n:
                bitmask[row, n:] = 0
            return
        words = self._m.state_mask(self._hist[-1])
        out = host[2][row]
        n = words.shape[0]
        out[:n] = words
        if out.shape[0] > n:
            out[n:] = 0

    def mask_is_cached(self) -> bool:
        """Whether this state's mask is already computed, so that reading it costs a lookup."""
        return self._m.has_mask(self._hist[-1])

    def allowed_token_ids(self) -> torch.Tensor:
        m = self.next_token_mask()
        bits = np.unpackbits(m.view(np.uint8), bitorder="little")[: self._m.vocab.size]
        return torch.from_numpy(np.flatnonzero(bits).astype(np.int64))

    def is_token_allowed(self, tid: int) -> bool:
        s = self._hist[-1]
        if s == TERMINATED:
            return False
        if tid in self._m.eos:
            return self._m.A.is_accepting(s)
        return self._m.token_step(s, tid) >= 0

    def consume_token(self, tid: int) -> bool:
        """Advance by one token; False (state unchanged) when it is not allowed. EOS terminates."""
        s = self._hist[-1]
        if s == TERMINATED:
            return False
        tid = int(tid)
        if tid in self._m.eos:
            if self._m.A.is_accepting(s):
                self._hist.append(TERMINATED)
                return True
            return False
        nxt = self._m.token_step(s, tid)
        if nxt < 0:
            return False
        self._hist.append(nxt)
        return True

    def consume_tokens(self, tids: list[int]) -> int:
        """Consume tokens in order until one is refused; returns how many were taken."""
        for i, t in enumerate(tids):
            if not self.consume_token(t):
                return i
        return len(tids)

    def consume_bytes(self, data: bytes) -> bool:
        """Advance by raw bytes (counts as one step for ``rollback``)."""
        s = self._hist[-1]
        if s == TERMINATED:
            return False
        nxt = self._m.A.walk(s, data)
        if nxt < 0:
            return False
        self._hist.append(nxt)
        return True

    def rollback(self, n: int = 1) -> None:
        """Undo the last ``n`` consumed tokens."""
        if n < 0 or n > len(self._hist) - 1:
            raise ValueError(f"cannot roll back {n} tokens: only {len(self._hist) - 1} consumed")
        if n:
            del self._hist[-n:]

    def reset(self) -> None:
        del self._hist[1:]

    def copy(self) -> "Matcher":
        """An independent matcher in the same state (shares the grammar's caches)."""
        return Matcher(self.grammar, list(self._hist), self._m)

    fork = copy

    def forced_bytes(self, limit: int = 4096) -> bytes:
        """The bytes every continuation must start with (empty when EOS or a choice is possible)."""
        s = self._hist[-1]
        if s == TERMINATED:
            return b""
        a = self._m.A
        out = bytearray()
        while len(out) < limit and not a.is_accepting(s):
            live = a.live_bytes(s)
            if len(live) != 1:
                break
            out.append(live[0])
            s = a.step(s, live[0])
        return bytes(out)

    def forced_tokens(self, limit: int = 256) -> list[int]:
        """Tokens that are the only way forward from here, in order (not consumed)."""
        out: list[int] = []
        s = self._hist[-1]
        m = self._m
        while s != TERMINATED and len(out) < limit:
            mask = m.state_mask(s)
            if int(np.bitwise_count(mask).sum()) != 1:
                break
            w = int(np.flatnonzero(mask)[0])
            tid = w * 32 + int(mask[w]).bit_length() - 1
            if tid in m.eos:
                break
            out.append(tid)
            s = m.token_step(s, tid)
        return out
