"""Shared types and helpers of the faithful samplers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Sample", "make_rng", "decode_text", "allowed_ids", "logsumexp", "log_mean_exp"]


@dataclass
class Sample:
    """One generated sequence.

    ``token_ids``: generated ids (EOS included when ``complete`` and the sequence ended by EOS);
    ``text``: the decoded text (EOS excluded); ``logprob``: ``log P_model(token_ids | prompt)``
    at the sampler's temperature (the target's unnormalised log-density);
    ``proposal_logprob``: log-probability of the sequence under the distribution it was drawn
    from (GCD / ASAp; NaN when not tractable); ``log_weight``: importance log-weight (SMC / AWRS:
    log of the product of the local allowed-mass estimates; 0 for exact samplers);
    ``complete``: a sentence of the grammar ended by EOS; ``n_checks``: single-token grammar
    checks made (AWRS), or mask evaluations (GCD / ASAp).
    """

    token_ids: list[int]
    text: str
    logprob: float
    log_weight: float = 0.0
    proposal_logprob: float = float("nan")
    complete: bool = True
    finish_reason: str = "eos"
    n_checks: int = 0
    n_steps: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def weight(self) -> float:
        return math.exp(self.log_weight) if self.log_weight > -math.inf else 0.0

    def key(self) -> tuple[int, ...]:
        return tuple(self.token_ids)


def make_rng(seed: Any = None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def decode_text(vocab: Any, ids: list[int]) -> str:
    return vocab.decode_bytes(ids).decode("utf-8", "replace")


def allowed_ids(matcher: Any) -> np.ndarray:
    """Allowed token ids of a matcher's current state (int64, ascending)."""
    m = matcher.next_token_mask()
    bits = np.unpackbits(m.view(np.uint8), bitorder="little")[: matcher.grammar.vocab.size]
    return np.flatnonzero(bits).astype(np.int64)


def logsumexp(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return -math.inf
    m = float(np.max(x))
    if m == -math.inf:
        return -math.inf
    return m + math.log(float(np.sum(np.exp(x - m))))


def log_mean_exp(x: np.ndarray) -> float:
    return logsumexp(x) - math.log(len(x))
