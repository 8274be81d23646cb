"""Next-token log-probabilities from a causal LM, reusing its KV cache.

Two access patterns:

* :class:`PrefixLM` -- one sequence at a time, arbitrary continuations of the prompt (GCD, AWRS,
  ASAp, exact enumeration).  One KV cache is kept; a request for another continuation crops the
  cache back to the longest common prefix (``Cache.crop``) and feeds only the new tokens.  Models
  whose cache cannot be cropped fall back to recomputing from the prompt's cache.
* :class:`ParticleLM` -- N sequences in lock step (SMC).  The prompt is prefilled once and its
  cache repeated N times; each step feeds one token per live particle as a batch; resampling
  reorders the batch (``Cache.reorder_cache``), i.e. copies the ancestors' caches; ``fork``
  evaluates continuations of some rows on a copy of the cache (twisted SMC's lookahead).

Log-probabilities are float64 numpy arrays over the model's logit width, at ``temperature``.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import numpy as np
import torch

from ..models import forward_cached

__all__ = ["PrefixLM", "ParticleLM", "as_prompt_ids"]


def as_prompt_ids(prompt_ids: Any) -> list[int]:
    if isinstance(prompt_ids, torch.Tensor):
        return [int(t) for t in prompt_ids.reshape(-1).tolist()]
    return [int(t) for t in prompt_ids]


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def _log_softmax(logits: torch.Tensor, temperature: float) -> np.ndarray:
    # numpy, not torch: torch's CPU kernels have a large fixed cost on tiny (toy) tensors
    x = logits.detach().to("cpu", torch.float64).numpy()
    if temperature != 1.0:
        x = x / max(float(temperature), 1e-5)
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    z = x - m
    with np.errstate(divide="ignore"):
        return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def _seq_len(cache: Any) -> int:
    return int(cache.get_seq_length()) if cache is not None else 0


def _crop_to(cache: Any, n: int) -> bool:
    """Shrink ``cache`` to its first ``n`` positions; False if the cache cannot be cropped."""
    cur = _seq_len(cache)
    if cur <= n:
        return True
    if getattr(cache, "is_croppable", True) is False or not hasattr(cache, "crop"):
        return False
    try:
        cache.crop(n - cur)  # negative: remove that many tokens (all transformers versions)
    except Exception:
        return False
    return _seq_len(cache) == n


class PrefixLM:
    """``logprobs(continuation)``: next-token log-probs after ``prompt + continuation``."""

    def __init__(self, model: Any, prompt_ids: Any, *, temperature: float = 1.0) -> None:
        self.model = model
        self.prompt = as_prompt_ids(prompt_ids)
        if not self.prompt:
            raise ValueError("the prompt must contain at least one token (e.g. BOS)")
        self.temperature = float(temperature)
        self.device = _device(model)
        self._cache: Any = None
        self._tokens: list[int] = []  # tokens whose keys/values are in _cache
        self.forward_calls = 0
        self.forward_tokens = 0

    def _forward(self, ids: list[int]) -> torch.Tensor:
        x = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out, self._cache = forward_cached(self.model, x, self._cache)
        self.forward_calls += 1
        self.forward_tokens += len(ids)
        return out.logits[0, -1, :]

    def logprobs(self, continuation: Sequence[int]) -> np.ndarray:
        full = self.prompt + [int(t) for t in continuation]
        lcp = 0
        for a, b in zip(self._tokens, full):
            if a != b:
                break
            lcp += 1
        lcp = min(lcp, len(full) - 1)  # always feed at least one token to get its logits
        if self._cache is not None and not _crop_to(self._cache, lcp):
            self._cache = None  # uncroppable cache: recompute from the start
        if self._cache is None:
            lcp = 0
        self._tokens = full[:lcp]
        logits = self._forward(full[lcp:])
        self._tokens = full
        return _log_softmax(logits, self.temperature)


class ParticleLM:
    """Lock-step batched decoding of particles that share a prompt.

    ``start(n)`` prefills the prompt once and returns its next-token log-probs ``[n, V]``;
    ``step(tokens)`` feeds one token per live row and returns ``[rows, V]``; ``select(rows)``
    keeps / duplicates rows (resampling, dropping finished particles).
    """

    def __init__(self, model: Any, prompt_ids: Any, *, temperature: float = 1.0) -> None:
        self.model = model
        self.prompt = as_prompt_ids(prompt_ids)
        if not self.prompt:
            raise ValueError("the prompt must contain at least one token (e.g. BOS)")
        self.temperature = float(temperature)
        self.device = _device(model)
        self.cache: Any = None
        self.forward_calls = 0
        self.fork_calls = 0  # lookahead batches (fork)
        self.fork_rows = 0  # rows evaluated by them
        self.rows = 0

    def start(self, n: int) -> np.ndarray:
        x = torch.tensor([self.prompt], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out, self.cache = forward_cached(self.model, x, None)
        self.forward_calls += 1
        self.cache.batch_repeat_interleave(n)
        self.rows = n
        lp = _log_softmax(out.logits[0, -1, :], self.temperature)
        return np.broadcast_to(lp, (n, lp.shape[0]))

    def select(self, rows: Sequence[int]) -> None:
        rows = [int(r) for r in rows]
        if rows == list(range(self.rows)):
            return
        if not rows:
            self.cache, self.rows = None, 0
            return
        self.cache.reorder_cache(torch.tensor(rows, dtype=torch.long, device=self.device))
        self.rows = len(rows)

    def fork(self, rows: Sequence[int], paths: Sequence[Sequence[int]]) -> np.ndarray:
        """Next-token log-probs ``[len(rows), V]`` after ``paths[i]`` appended to row ``rows[i]``
        (all paths of one length >= 1), computed in one batch on a copy of the cache: the
        particles' own rows are left as they are (twisted SMC's lookahead)."""
        if not rows:
            return np.zeros((0, 0))
        k = len(paths[0])
        if k < 1 or any(len(q) != k for q in paths):
            raise ValueError("fork: paths must share one length >= 1")
        cache = copy.deepcopy(self.cache)
        cache.reorder_cache(torch.tensor([int(r) for r in rows], dtype=torch.long, device=self.device))
        x = torch.tensor([[int(t) for t in q] for q in paths], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out, _ = forward_cached(self.model, x, cache)
        self.fork_calls += 1
        self.fork_rows += len(rows)
        return _log_softmax(out.logits[:, -1, :], self.temperature)

    def step(self, tokens: Sequence[int]) -> np.ndarray:
        if len(tokens) != self.rows:
            raise ValueError(f"{len(tokens)} tokens for {self.rows} rows")
        x = torch.tensor([[int(t)] for t in tokens], dtype=torch.long, device=self.device)
        with torch.no_grad():
            out, self.cache = forward_cached(self.model, x, self.cache)
        self.forward_calls += 1
        return _log_softmax(out.logits[:, -1, :], self.temperature)
