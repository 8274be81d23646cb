"""A transformers ``LogitsProcessor`` that constrains ``model.generate`` to a grammar.

Usage::

    from corral import Grammar
    from corral.integrations.hf import LogitsProcessor

    g = Grammar.from_json_schema(schema, tokenizer)
    out = model.generate(**inputs, logits_processor=[LogitsProcessor(g)], max_new_tokens=64)

How each row's grammar state is found
-------------------------------------
transformers calls logits processors with prefixes that jump around: beam search reorders and
forks rows, assisted generation (``assistant_model=``, ``prompt_lookup_num_tokens=``) calls the
processor on draft prefixes of several lengths and then on shorter ones after a rejection, and
the assistant model's own ``generate`` reuses this very processor.  So the processor never relies
on the order of calls: the matcher state of a row is a function of (grammar of the row, the
row's *generated* tokens), and it is recomputed from those.

* **Prompt length.**  Every ``generate()`` mode makes its first processor call with exactly the
  prompt (``input_ids.shape[1]`` = prompt length, rows already expanded for beams /
  ``num_return_sequences``).  The processor records that length and the prompt columns at the
  first call.  A later call whose rows, length or prompt columns do not match the recorded
  prompt starts a new session (a new ``generate()``); a call with the same prompt keeps the
  cache, which is correct because states only depend on generated tokens.  Every mode extends
  a prefix it has shown the processor by at most one token per call (assisted generation scores
  drafts one prefix at a time), so a call that jumps further ahead is also a new ``generate()``
  (e.g. a chat continuation whose prompt extends the previous prompt and output) and restarts
  the session.  To force a fresh start, call :meth:`LogitsProcessor.reset`; to feed arbitrary
  prefixes yourself, pass ``prompt_length=`` (then nothing is detected).
* **Tracks.**  Per grammar, the processor keeps a pool of *tracks* (a matcher plus the token
  sequence it has consumed).  For each row it picks the track with the longest common prefix
  with the row's generated tokens (preferring the track that served the same row last call),
  rolls it back to that common prefix and consumes the rest.  When two rows need the same track
  (a beam forks), the second gets ``matcher.copy()``.  Rows sharing a grammar share the pool, so
  a beam that moves to another row index still finds its state.  In steady state this is one
  ``consume_token`` per row per step.
* **Finished and dead rows.**  Once a row's matcher has consumed EOS, later tokens (padding) are
  ignored and only EOS ids (and ``pad_token_id`` if given) stay allowed, so a finished row never
  gets an all ``-inf`` row (which would make sampling produce NaNs).  A row whose prefix the
  grammar refuses (beam search may pick ``-inf`` candidates when fewer tokens are allowed than
  it keeps; a caller may feed anything) is marked *dead*: it never raises, everything except EOS
  is masked, and the row's score is already ``-inf`` so it does not win.  ``dead_rows`` of the
  last call is available for inspection.

The mask is applied with vectorised torch ops: the packed int32 bitmask ``[rows, words]`` is
turned into an additive bias (0 or ``-inf``, one table lookup per mask byte) and added out of
place (transformers' prompt-lookup check reuses its input tensor).  A row's bias depends only
on its grammar and matcher state, so biases are kept per (grammar, state) in one LRU shared by
all processors (bounded in bytes, like the grammar's own mask memo it is derived from): a state
met again, in this generation or a later one, costs one addition, not an unpacking.
Columns past the grammar's vocabulary (models whose logits are wider than the tokenizer) are
always masked.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import CorralError

logger = logging.getLogger("corral")

try:  # transformers is a dependency, but keep the module importable without it
    from transformers import LogitsProcessor as _HFLogitsProcessor
except Exception:  # pragma: no cover
    _HFLogitsProcessor = object  # type: ignore[assignment,misc]

__all__ = ["LogitsProcessor", "unpack_bitmask", "apply_bitmask"]

_SHIFTS = torch.arange(32, dtype=torch.int32)
_LITTLE_ENDIAN = sys.byteorder == "little"
# byte value -> its 8 bits (bit j of byte k of the int32 row is token 8k + j on little-endian hosts)
_BYTE_BITS = ((torch.arange(256).unsqueeze(1) >> torch.arange(8)) & 1).bool()
_BIAS_LUT: dict[tuple[torch.dtype, str], torch.Tensor] = {}
_BIAS_CACHE_BYTES = 128 << 20  # all processors together: ~680 rows of a 49k vocabulary in float32


class _BiasCache:
    """Additive bias rows keyed by (grammar, state, width, dtype, device); LRU bounded in bytes."""

    def __init__(self) -> None:
        self._rows: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._grammar_ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._next_id = itertools.count()

    def grammar_id(self, grammar: Any) -> int:
        """A number for ``grammar`` that is never reused (``id()`` is, once it is collected)."""
        with self._lock:
            gid = self._grammar_ids.get(grammar)
            if gid is None:
                gid = self._grammar_ids[grammar] = next(self._next_id)
            return gid

    def get(self, key: tuple) -> torch.Tensor | None:
        with self._lock:
            row = self._rows.get(key)
            if row is not None:
                self._rows.move_to_end(key)
            return row

    def put(self, key: tuple, row: torch.Tensor) -> None:
        with self._lock:
            if key in self._rows:
                return
            self._rows[key] = row
            self._bytes += row.numel() * row.element_size()
            while self._bytes > _BIAS_CACHE_BYTES and len(self._rows) > 1:
                _, old = self._rows.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()


_BIASES = _BiasCache()


def unpack_bitmask(bitmask: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """int32 ``[rows, words]`` (bit i%32 of word i//32) -> bool ``[rows, width]`` (allowed).

    Ids at or past ``32 * words`` are not allowed.
    """
    if _LITTLE_ENDIAN and bitmask.is_contiguous():
        lut = _BYTE_BITS if _BYTE_BITS.device == bitmask.device else _BYTE_BITS.to(bitmask.device)
        allowed = lut[bitmask.view(torch.uint8).long()].reshape(bitmask.shape[0], -1)
    else:
        shifts = _SHIFTS if _SHIFTS.device == bitmask.device else _SHIFTS.to(bitmask.device)
        allowed = ((bitmask.unsqueeze(-1) >> shifts) & 1).reshape(bitmask.shape[0], -1).bool()
    if width is None:
        return allowed
    have = allowed.shape[1]
    if have >= width:
        return allowed[:, :width]
    pad = torch.zeros((allowed.shape[0], width - have), dtype=torch.bool, device=allowed.device)
    return torch.cat([allowed, pad], dim=1)


def bitmask_bias(bitmask: torch.Tensor, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive bias ``[rows, width]``: 0 where the bitmask allows a token, ``-inf`` elsewhere.

    One table lookup per mask byte (no ``[rows, V, 32]`` intermediate); ids past the mask: ``-inf``.
    """
    bitmask = bitmask.to(device).contiguous()
    if not _LITTLE_ENDIAN:  # pragma: no cover - big-endian hosts
        allowed = unpack_bitmask(bitmask, width)
        return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill_(~allowed, float("-inf"))
    key = (dtype, str(device))
    lut = _BIAS_LUT.get(key)
    if lut is None:
        lut = torch.zeros(_BYTE_BITS.shape, dtype=dtype).masked_fill_(~_BYTE_BITS, float("-inf")).to(device)
        _BIAS_LUT[key] = lut
    bias = lut[bitmask.view(torch.uint8).long()].reshape(bitmask.shape[0], -1)
    have = bias.shape[1]
    if have >= width:
        return bias[:, :width]
    pad = torch.full((bias.shape[0], width - have), float("-inf"), dtype=dtype, device=device)
    return torch.cat([bias, pad], dim=1)


def apply_bitmask(scores: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Return ``scores`` with every token whose bit is 0 set to ``-inf`` (out of place)."""
    return scores + bitmask_bias(bitmask, scores.shape[-1], scores.dtype, scores.device)


@dataclass(eq=False)
class _Track:
    matcher: Any
    tokens: list[int] = field(default_factory=list)
    consumed: int = 0  # how many of `tokens` the matcher consumed (the rest: after EOS, or dead)
    dead_at: int = -1  # index of the first refused token, -1 if none

    def fork(self) -> "_Track":
        return _Track(self.matcher.copy(), list(self.tokens), self.consumed, self.dead_at)

    def common_prefix(self, seq: list[int]) -> int:
        t = self.tokens
        n = min(len(t), len(seq))
        if t[:n] == seq[:n]:
            return n
        lo = 0
        while lo < n and t[lo] == seq[lo]:
            lo += 1
        return lo

    def advance(self, seq: list[int], lcp: int) -> None:
        """Move this track from its tokens to ``seq`` (which shares ``lcp`` tokens with them)."""
        if lcp < len(self.tokens):
            if self.dead_at >= 0 and lcp <= self.dead_at:
                self.dead_at = -1
            if lcp < self.consumed:
                self.matcher.rollback(self.consumed - lcp)
                self.consumed = lcp
            del self.tokens[lcp:]
        m = self.matcher
        for tid in seq[len(self.tokens) :]:
            if self.dead_at < 0 and self.consumed == len(self.tokens) and not m.is_terminated():
                if m.consume_token(tid):
                    self.consumed += 1
                else:
                    self.dead_at = len(self.tokens)
            self.tokens.append(tid)

    @property
    def dead(self) -> bool:
        return self.dead_at >= 0

    @property
    def finished(self) -> bool:
        return self.matcher.is_terminated()


class LogitsProcessor(_HFLogitsProcessor):  # type: ignore[misc,valid-type]
    """Constrain ``model.generate`` to one grammar, or one grammar per prompt.

    ``grammars``: a :class:`corral.Grammar` for every row, or a list with one grammar per
    prompt of the batch.  With ``num_return_sequences=n`` or ``num_beams=n`` transformers
    expands each prompt into ``n`` consecutive rows; row ``i`` uses grammar
    ``i // (rows // len(grammars))``.

    ``tokenizer``: used to attach a vocabulary to grammars compiled without one.
    ``prompt_length``: fix the prompt length instead of detecting it at the first call.
    ``pad_token_id``: additionally allowed on finished rows (EOS ids always are).
    """

    def __init__(
        self,
        grammars: Any | Sequence[Any],
        tokenizer: Any = None,
        *,
        prompt_length: int | None = None,
        pad_token_id: int | None = None,
    ) -> None:
        gs = list(grammars) if isinstance(grammars, (list, tuple)) else [grammars]
        if not gs:
            raise ValueError("LogitsProcessor needs at least one grammar")
        fixed = []
        for g in gs:
            if getattr(g, "vocab", None) is None:
                if tokenizer is None:
                    raise CorralError(
                        "the grammar has no vocabulary: compile it with a tokenizer or pass tokenizer="
                    )
                g = g.with_vocabulary(tokenizer)
            fixed.append(g)
        self.grammars = fixed
        self._grammar_ids = [_BIASES.grammar_id(g) for g in fixed]
        self._fixed_prompt_length = prompt_length
        self.pad_token_id = pad_token_id
        v0 = fixed[0].vocab
        for g in fixed[1:]:
            if g.vocab.size != v0.size:
                raise CorralError("all grammars of one LogitsProcessor must share one vocabulary width")
        self.vocab_size = v0.size
        self.n_words = v0.n_words
        eos = set()
        for g in fixed:
            eos.update(int(i) for i in g.vocab.eos_ids)
        self._eos_ids = sorted(eos)
        self.dead_rows: list[int] = []
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget all cached state; the next call starts a new generation."""
        self._prompt: torch.Tensor | None = None
        self._prompt_length: int | None = self._fixed_prompt_length
        self._pools: list[list[_Track]] = [[] for _ in self.grammars]
        self._row_track: dict[int, _Track] = {}
        self._bitmask: torch.Tensor | None = None
        self._finished_row: dict[int, torch.Tensor] = {}
        self._row_keys: list[Any] = []
        self._finished_bias: dict[tuple, torch.Tensor] = {}

    def _start_session(self, input_ids: torch.Tensor) -> None:
        fixed = self._fixed_prompt_length
        p = fixed if fixed is not None else input_ids.shape[1]
        self._prompt_length = p
        self._prompt = input_ids[:, :p].detach().clone()
        self._pools = [[] for _ in self.grammars]
        self._row_track = {}

    def _same_session(self, input_ids: torch.Tensor) -> bool:
        prompt = self._prompt
        if prompt is None:
            return False
        p = prompt.shape[1]
        if input_ids.shape[0] != prompt.shape[0] or input_ids.shape[1] < p:
            return False
        return bool(torch.equal(input_ids[:, :p], prompt.to(input_ids.device)))

    def _grammar_index(self, row: int, rows: int) -> int:
        n = len(self.grammars)
        if n == 1:
            return 0
        if rows % n:
            raise CorralError(f"{rows} rows cannot be split among {n} grammars")
        return row // (rows // n)

    # ------------------------------------------------------------------ tracks
    def _plan(self, input_ids: torch.Tensor) -> tuple[list[list[int]], list[tuple[_Track, int, bool]], int]:
        """For each row: (track to continue, common prefix length, needs a fork); and the largest jump."""
        rows = input_ids.shape[0]
        p = self._prompt_length or 0
        seqs = input_ids[:, p:].tolist()
        claimed: set[int] = set()
        plan: list[tuple[_Track, int, bool]] = []
        jump = 0
        for r in range(rows):
            gi = self._grammar_index(r, rows)
            seq = seqs[r]
            pool = self._pools[gi]
            best: _Track | None = None
            best_lcp = -1
            own = self._row_track.get(r)
            if own is not None and any(t is own for t in pool):
                best, best_lcp = own, own.common_prefix(seq)
            if best is None or best_lcp < len(best.tokens) or id(best) in claimed:
                for t in pool:
                    if t is best:
                        continue
                    lcp = t.common_prefix(seq)
                    better = lcp > best_lcp or (
                        lcp == best_lcp and best is not None and id(best) in claimed and id(t) not in claimed
                    )
                    if better:
                        best, best_lcp = t, lcp
            if best is None:
                best = _Track(self.grammars[gi].matcher())
                best_lcp = 0
                pool.append(best)
            jump = max(jump, len(seq) - best_lcp)
            plan.append((best, best_lcp, id(best) in claimed))
            claimed.add(id(best))
        return seqs, plan, jump

    def _tracks_for(self, input_ids: torch.Tensor) -> list[_Track]:
        seqs, plan, jump = self._plan(input_ids)
        if jump > 1 and self._fixed_prompt_length is None:
            # Every generate() mode extends a known prefix by at most one token per call (assisted
            # generation included: drafts are scored one prefix at a time).  A bigger jump means a
            # new generate() whose prompt extends the previous one: start over with this prompt.
            self._start_session(input_ids)
            seqs, plan, jump = self._plan(input_ids)
        rows = input_ids.shape[0]
        # fork before anything is mutated, then advance
        sources = [t.fork() if fork else t for (t, _, fork) in plan]
        new_pools: list[list[_Track]] = [[] for _ in self.grammars]
        for r, (track, (_, lcp, _f)) in enumerate(zip(sources, plan)):
            track.advance(seqs[r], lcp)
            new_pools[self._grammar_index(r, rows)].append(track)
        self._pools = new_pools
        self._row_track = dict(enumerate(sources))
        return sources

    # ------------------------------------------------------------------ call
    def compute_bitmask(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """The int32 bitmask ``[rows, words]`` for these prefixes, and the rows that are finished/dead."""
        if self._fixed_prompt_length is not None and self._prompt is None:
            self._start_session(input_ids)
        elif not self._same_session(input_ids):
            self._start_session(input_ids)
        tracks = self._tracks_for(input_ids)
        rows = len(tracks)
        bm = self._bitmask
        if bm is None or bm.shape[0] != rows:
            bm = torch.zeros((rows, self.n_words), dtype=torch.int32)
            self._bitmask = bm
        special: list[int] = []
        dead: list[int] = []
        keys: list[Any] = []
        for r, t in enumerate(tracks):
            if t.dead:
                dead.append(r)
                special.append(r)
                keys.append(None)
            elif t.finished:
                special.append(r)
                keys.append(None)
            else:
                t.matcher.fill_next_token_bitmask(bm, r)
                keys.append((self._grammar_ids[self._grammar_index(r, rows)], t.matcher.state_key))
        self.dead_rows = dead
        self._row_keys = keys
        if dead:
            logger.debug("rows %s hold prefixes the grammar refuses; only EOS allowed", dead)
        return bm, special

    def _finished_words(self) -> torch.Tensor:
        """int32 ``[words]``: the bitmask row of a finished / dead row (EOS ids, and pad)."""
        row = self._finished_row.get("words")
        if row is None:
            row = torch.zeros(self.n_words, dtype=torch.int32)
            ids = list(self._eos_ids)
            if self.pad_token_id is not None and 0 <= self.pad_token_id < self.vocab_size:
                ids.append(int(self.pad_token_id))
            for i in ids:
                w, b = divmod(int(i), 32)
                v = (int(row[w]) & 0xFFFFFFFF) | (1 << b)
                row[w] = v - (1 << 32) if v >= (1 << 31) else v
            self._finished_row["words"] = row
        return row

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bm, special = self.compute_bitmask(input_ids)
        if special:
            bm[special] = self._finished_words()
        width = scores.shape[-1]
        rows = [self._row_bias(bm, r, key, width, scores) for r, key in enumerate(self._row_keys)]
        return scores + (rows[0] if len(rows) == 1 else torch.cat(rows))

    def _row_bias(self, bm: torch.Tensor, row: int, key: Any, width: int, scores: torch.Tensor) -> torch.Tensor:
        """The additive bias ``[1, width]`` of one row (``key`` None: a finished or dead row)."""
        full = (key, width, scores.dtype, scores.device)
        bias = self._finished_bias.get(full) if key is None else _BIASES.get(full)
        if bias is not None:
            return bias
        bias = bitmask_bias(bm[row : row + 1], min(width, self.vocab_size), scores.dtype, scores.device)
        if width > bias.shape[1]:
            extra = torch.full((1, width - bias.shape[1]), float("-inf"), dtype=scores.dtype, device=scores.device)
            bias = torch.cat([bias, extra], dim=1)
        bias = bias.contiguous()
        if key is None:  # the EOS (and pad) row depends on this processor's settings
            self._finished_bias[full] = bias
        else:
            _BIASES.put(full, bias)
        return bias
