"""Draft sources for the speculative loop.

Deterministic drafters propose token runs from the current sequence and matcher (they may
read the matcher, never change it):

- :class:`GrammarDrafter`: tokens the grammar forces (singleton masks), else the grammar's
  forced bytes tokenized canonically (the way the tokenizer would encode that text), minus the
  last ``backoff`` tokens so that a longer token reaching past the forced text can still win.
- :class:`LookupDrafter`: prompt lookup: the continuation of the latest earlier occurrence of
  the trailing n-gram in prompt (+ extra text such as the schema) + output so far.
- :class:`RecycleDrafter`: token recycling (Luo et al. 2024): an adjacency table of each
  token's most recent top-k successors, refreshed from the verification logits; drafts follow
  the best successor the grammar allows.

:class:`ModelDrafter` samples drafts from a small model sharing the tokenizer, masked by the
same grammar; its drafts come with the distributions they were drawn from.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..models import forward_cached

FORCED = "forced"  # source name of singleton-mask tokens (accepted with probability 1)


class GrammarDrafter:
    name = "grammar"

    def __init__(self, vocab: Any, tokenizer: Any = None, backoff: int = 1) -> None:
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.backoff = max(0, int(backoff))
        self._cache: dict[bytes, list[int]] = {}
        self._by_bytes: dict[bytes, int] | None = None
        self._max_len = 0

    # -- canonical tokenization of forced text --------------------------------------------
    def _longest_match(self, data: bytes) -> list[int]:
        """Greedy longest-match tokenization over the vocabulary (fallback without a tokenizer)."""
        if self._by_bytes is None:
            eos = set(self.vocab.eos_ids)
            by: dict[bytes, int] = {}
            for i, b in enumerate(self.vocab.token_bytes):
                if b and i not in eos and i not in self.vocab.special_ids and b not in by:
                    by[b] = i
            self._by_bytes = by
            self._max_len = max((len(b) for b in by), default=0)
        out: list[int] = []
        i = 0
        while i < len(data):
            for n in range(min(self._max_len, len(data) - i), 0, -1):
                tid = self._by_bytes.get(data[i : i + n])
                if tid is not None:
                    out.append(tid)
                    i += n
                    break
            else:
                break
        return out

    def tokenize(self, data: bytes) -> list[int]:
        """Canonical token ids of ``data`` (its longest valid UTF-8 prefix), cached."""
        hit = self._cache.get(data)
        if hit is not None:
            return hit
        ids: list[int] = []
        text = None
        for cut in range(len(data), max(len(data) - 4, -1), -1):
            try:
                text = data[:cut].decode("utf-8")
                break
            except UnicodeDecodeError:
                continue
        if text:
            raw = text.encode("utf-8")
            if self.tokenizer is not None:
                try:
                    ids = list(self.tokenizer.encode(text, add_special_tokens=False))
                except Exception:  # noqa: BLE001 - any tokenizer failure: fall back
                    ids = []
                if ids and self.vocab.decode_bytes(ids) != raw:
                    ids = []  # e.g. a prepended space marker: not the same text
            if not ids:
                ids = self._longest_match(raw)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[data] = ids
        return ids

    def propose(self, seq: Sequence[int], matcher: Any, k: int) -> tuple[list[int], str]:
        if k <= 0:
            return [], self.name
        forced = matcher.forced_tokens(limit=k)
        if forced:
            return forced, FORCED
        fb = matcher.forced_bytes(limit=256)
        if not fb:
            return [], self.name
        ids = self.tokenize(fb)
        if self.backoff:
            ids = ids[: max(0, len(ids) - self.backoff)]
        return ids[:k], self.name


class LookupDrafter:
    """Prompt lookup: n-gram index over the committed tokens (most recent occurrence wins)."""

    name = "lookup"

    def __init__(self, ngram_max: int = 4, ngram_min: int = 1, extra_ids: Sequence[int] = ()) -> None:
        self.nmax = max(1, int(ngram_max))
        self.nmin = max(1, min(int(ngram_min), self.nmax))
        self.tokens: list[int] = []
        self.index: dict[tuple[int, ...], int] = {}
        if extra_ids:
            self.extend(list(extra_ids))

    def extend(self, new: Sequence[int]) -> None:
        toks = self.tokens
        idx = self.index
        for t in new:
            j = len(toks)  # ngrams ending (exclusive) at j now have a continuation toks[j]
            for n in range(1, self.nmax + 1):
                if j - n < 0:
                    break
                idx[tuple(toks[j - n : j])] = j
            toks.append(int(t))

    def propose(self, seq: Sequence[int], matcher: Any, k: int) -> tuple[list[int], str]:
        if k <= 0:
            return [], self.name
        toks = self.tokens
        for n in range(min(self.nmax, len(seq)), self.nmin - 1, -1):
            pos = self.index.get(tuple(seq[len(seq) - n :]))
            if pos is not None:
                return toks[pos : pos + k], self.name
        return [], self.name


class RecycleDrafter:
    """Token recycling: ``succ[t]`` = the top-k next tokens the target last predicted after ``t``."""

    name = "recycle"

    def __init__(self, vocab_size: int, topk: int = 8) -> None:
        self.topk = max(1, int(topk))
        self.succ = np.full((int(vocab_size), self.topk), -1, dtype=np.int64)

    def observe(self, inputs: Sequence[int], masked_logits: torch.Tensor) -> None:
        """Row ``i`` of ``masked_logits`` is the target's prediction after token ``inputs[i]``."""
        n = min(len(inputs), masked_logits.shape[0])
        if n == 0:
            return
        k = min(self.topk, masked_logits.shape[-1])
        vals, idx = torch.topk(masked_logits[:n], k, dim=-1)
        idx = idx.cpu().numpy()
        idx[~torch.isfinite(vals).cpu().numpy()] = -1
        rows = np.asarray(inputs[:n], dtype=np.int64)
        ok = (rows >= 0) & (rows < self.succ.shape[0])
        self.succ[rows[ok], :k] = idx[ok]

    def propose(self, seq: Sequence[int], matcher: Any, k: int) -> tuple[list[int], str]:
        if k <= 0 or not seq:
            return [], self.name
        last = seq[-1]
        if not 0 <= last < self.succ.shape[0]:
            return [], self.name
        for c in self.succ[last]:
            if c < 0:
                break
            if matcher.is_token_allowed(int(c)):
                return [int(c)], self.name
        return [], self.name


def crop_cache(cache: Any, keep: int) -> Any:
    """Shorten a KV cache to its first ``keep`` positions.

    ``DynamicCache.crop(n)``: in transformers 5 a positive ``n`` is rejected and ``-n`` removes
    ``n`` tokens; in 4.x a positive ``n`` is the new length and ``-n`` removes ``n`` tokens.
    Removing by a negative count works in both.
    """
    if cache is None:
        return None
    cur = int(cache.get_seq_length())
    drop = cur - int(keep)
    if drop > 0:
        if hasattr(cache, "crop"):
            cache.crop(-drop)
        else:  # legacy tuple cache
            cache = tuple(tuple(t[..., :keep, :] for t in layer) for layer in cache)
    return cache


class ModelDrafter:
    """Draft tokens from a small model (same tokenizer), masked by the grammar, with their q."""

    name = "model"

    def __init__(self, model: Any, max_len: int = 6) -> None:
        self.model = model
        self.max_len = int(max_len)
        self.cache: Any = None
        self.fed: list[int] = []  # tokens whose keys/values are in self.cache

    def _next_logits(self, seq: Sequence[int]) -> torch.Tensor:
        common = 0
        fed = self.fed
        lim = min(len(fed), len(seq) - 1)
        while common < lim and fed[common] == seq[common]:
            common += 1
        self.cache = crop_cache(self.cache, common)
        del fed[common:]
        new = list(seq[common:])
        dev = _device(self.model)
        out, self.cache = forward_cached(self.model, torch.tensor([new], dtype=torch.long, device=dev), self.cache)
        fed.extend(new)
        return out.logits[0, -1, :].float()

    def draft(
        self,
        seq: list[int],
        walker: Any,
        k: int,
        bitmask: torch.Tensor,
        mask_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        dist_fn: Callable[[torch.Tensor], torch.Tensor],
        pick_fn: Callable[[torch.Tensor], int],
    ) -> tuple[list[int], list[torch.Tensor]]:
        """Up to ``k`` tokens; ``walker`` (a matcher copy) advances over them and ``bitmask``
        rows ``0..len-1`` receive the mask before each.  Returns tokens and their q (probs)."""
        toks: list[int] = []
        qs: list[torch.Tensor] = []
        cur = list(seq)
        while len(toks) < k and not walker.is_terminated():
            row = len(toks)
            walker.fill_next_token_bitmask(bitmask, row)
            logits = self._next_logits(cur)
            masked = mask_fn(logits.unsqueeze(0), bitmask[row : row + 1])[0]
            q = dist_fn(masked)
            tid = pick_fn(q)
            if not walker.consume_token(tid):
                break
            toks.append(tid)
            qs.append(q)
            cur.append(tid)
        return toks, qs


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")
