"""Exact conditionals by enumeration, and distances between distributions.

``enumerate_language(model, grammar, prompt_ids)`` walks every token sequence the grammar allows
(depth-first over the matcher's masks), with its probability under the model, up to
``max_tokens`` tokens.  For a finite language this gives ``P(L)`` and the exact conditional
``P(x | x in L)`` over token sequences (EOS included).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .base import allowed_ids
from .lm import PrefixLM

__all__ = ["Enumeration", "enumerate_language", "tv_distance", "kl_divergence", "empirical", "tv_bound"]


class Enumeration:
    """``probs``: token tuple (EOS included) -> ``P_model``; ``total`` = ``P(L)`` (within
    ``max_tokens``); ``truncated_mass``: probability of allowed prefixes cut at ``max_tokens``;
    ``conditional``: normalised ``P(x | x in L)``; ``local_z``: per-prefix allowed mass (a dict
    from prefix tuple to the sum of allowed next-token probabilities)."""

    def __init__(self, probs: dict[tuple[int, ...], float], truncated_mass: float, local_z: dict, vocab: Any) -> None:
        self.probs = probs
        self.total = math.fsum(probs.values())
        self.truncated_mass = truncated_mass
        self.local_z = local_z
        self.vocab = vocab

    @property
    def conditional(self) -> dict[tuple[int, ...], float]:
        return {k: v / self.total for k, v in self.probs.items()}

    def gcd_distribution(self) -> dict[tuple[int, ...], float]:
        """What per-step masked sampling (GCD / unweighted AWRS) produces."""
        return dict(self._gcd)

    def text_of(self, key: tuple[int, ...]) -> str:
        return self.vocab.decode_bytes(key).decode("utf-8", "replace")


def enumerate_language(
    model: Any,
    grammar: Any,
    prompt_ids: Any,
    *,
    max_tokens: int = 32,
    temperature: float = 1.0,
    max_sequences: int = 200_000,
) -> Enumeration:
    """All grammatical token sequences with their model probabilities (depth-first)."""
    lm = PrefixLM(model, prompt_ids, temperature=temperature)
    eos = set(grammar.vocab.eos_ids)
    probs: dict[tuple[int, ...], float] = {}
    gcd: dict[tuple[int, ...], float] = {}
    local_z: dict[tuple[int, ...], float] = {}
    truncated = 0.0
    stack: list[tuple[list[int], Any, float, float]] = [([], grammar.matcher(), 0.0, 0.0)]
    while stack:
        path, m, lp, lq = stack.pop()
        ids = allowed_ids(m)
        if len(path) >= max_tokens:
            ids = np.array([t for t in ids if t in eos], dtype=np.int64)
            if not len(ids):
                truncated += math.exp(lp)
                continue
        logp = lm.logprobs(path)
        ids = ids[ids < logp.shape[0]]
        pa = np.exp(logp[ids])
        z = float(pa.sum())
        local_z[tuple(path)] = z
        if z <= 0:
            continue
        for t, pt in zip(ids.tolist(), pa.tolist()):
            if pt <= 0:
                continue
            np_, nq = lp + math.log(pt), lq + math.log(pt / z)
            if t in eos:
                probs[tuple(path + [t])] = math.exp(np_)
                gcd[tuple(path + [t])] = math.exp(nq)
                if len(probs) > max_sequences:
                    raise ValueError(f"more than {max_sequences} sequences: the language is too large to enumerate")
                continue
            m2 = m.copy()
            if not m2.consume_token(t):
                raise AssertionError("mask allowed a token the matcher refused")
            stack.append((path + [t], m2, np_, nq))
    out = Enumeration(probs, truncated, local_z, grammar.vocab)
    out._gcd = gcd
    return out


def empirical(keys: list) -> dict:
    out: dict = {}
    for k in keys:
        out[k] = out.get(k, 0) + 1
    n = len(keys)
    return {k: v / n for k, v in out.items()}


def tv_distance(p: Mapping, q: Mapping) -> float:
    keys = set(p) | set(q)
    return 0.5 * math.fsum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def kl_divergence(q: Mapping, p: Mapping) -> float:
    """``KL(q || p) = sum q log(q/p)`` (inf when q puts mass where p has none)."""
    s = 0.0
    for k, qk in q.items():
        if qk <= 0:
            continue
        pk = p.get(k, 0.0)
        if pk <= 0:
            return math.inf
        s += qk * math.log(qk / pk)
    return s


def tv_bound(p: "Mapping | int", n_samples: int, delta: float = 1e-4) -> float:
    """A level that the TV between the empirical distribution of ``n_samples`` i.i.d. draws from
    ``p`` and ``p`` itself exceeds with probability at most ``delta``.

    ``E[TV] = 0.5 * sum_i E|p^_i - p_i| <= 0.5 * sum_i sqrt(p_i (1 - p_i) / n)`` (Jensen); with
    only the number of outcomes ``K`` known (``p`` an int), ``<= 0.5 * sqrt(K / n)``.  TV moves
    by at most ``1/n`` when one draw changes, so McDiarmid gives
    ``P(TV > E[TV] + t) <= exp(-2 n t^2)``.
    """
    n = n_samples
    if isinstance(p, int):
        mean = 0.5 * math.sqrt(p / n)
    else:
        mean = 0.5 * math.fsum(math.sqrt(max(v * (1 - v), 0.0) / n) for v in p.values())
    return mean + math.sqrt(math.log(1 / delta) / (2 * n))
