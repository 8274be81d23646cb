"""Adaptive weighted rejection sampling (AWRS) for one decoding step.

After Lipkin et al., "Fast Controlled Generation from Language Models with Adaptive Weighted
Rejection Sampling" (2025).  Target of one step: ``pi(t) = p(t) * allowed(t) / Z`` with
``Z = sum_{allowed} p(t)``.

**Sampling.**  Perturb the log-probabilities with independent Gumbel noise and visit tokens in
decreasing key order (that order is a draw *without replacement* from ``p``).  The first visited
token the grammar allows is an exact draw from ``pi``; rejected tokens are never re-checked.
Usually a handful of single-token checks (``Matcher.is_token_allowed``) replace a full mask.

**Weight.**  Imagine rejection sampling *with* replacement until two tokens are accepted after
``N`` draws: ``1 / (N - 1)`` is an unbiased estimate of ``Z`` (negative binomial), and the
identity of the first accepted token is independent of ``N``.  That process is simulated
exactly from two without-replacement rounds: before every real draw, a draw with replacement
would have landed ``Geometric(1 - R) - 1`` times on the already-rejected set (mass ``R``) --
"phantom" rejections that cost nothing to check.  Round 1 ends at the first accepted token (the
sample), round 2 (fresh Gumbel keys, rejected tokens excluded) at the next acceptance.  The
returned weight ``1 / (rejections + 1)`` is unbiased for ``Z`` and independent of the sampled
token, so ``(token, weight)`` is properly weighted for ``p * allowed``.

**Budget.**  When ``max_checks`` distinct checks have been made, the step computes the full
mask once: the token is then drawn from ``pi`` exactly (still exact, by the same
order-independence), and the weight is the conditional expectation of ``1 / (N - 1)`` given the
draws so far, computed exactly from ``Z`` (future rejections are negative binomial) -- a
Rao-Blackwellisation, so the estimator stays unbiased while the number of checks is bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .base import Sample, allowed_ids, decode_text, make_rng
from .lm import PrefixLM

__all__ = ["AWRSStep", "AWRSSampler", "awrs_step", "expected_inverse_count", "gumbel_order"]


@dataclass
class AWRSStep:
    token: int  # -1 when no token with positive probability is allowed
    log_weight: float  # log of the unbiased estimate of Z (exactly log Z after a fallback at the start)
    n_checks: int  # distinct single-token grammar checks
    fallback: bool = False  # the full mask was computed
    n_rejections: int = 0  # with-replacement rejections simulated (real + phantom)


def gumbel_order(logp: np.ndarray, rng: np.random.Generator, excluded: Iterable[int] = (), chunk: int = 64) -> Iterator[int]:
    """Token ids in decreasing order of ``logp + Gumbel`` (a draw without replacement from
    ``softmax(logp)``), skipping ``excluded`` and zero-probability tokens.  Sorts lazily."""
    keys = logp + rng.gumbel(size=logp.shape[0])
    ex = list(excluded)
    if ex:
        keys[ex] = -np.inf
    n = keys.shape[0]
    k = min(chunk, n)
    top = np.argpartition(-keys, k - 1)[:k] if k < n else np.arange(n)
    top = top[np.argsort(-keys[top], kind="stable")]
    for i in top:
        if keys[i] == -np.inf:
            return
        yield int(i)
    if k >= n:
        return
    rest = np.argsort(-keys, kind="stable")[k:]
    for i in rest:
        if keys[i] == -np.inf:
            return
        yield int(i)


_GL_X, _GL_W = np.polynomial.legendre.leggauss(20)


def expected_inverse_count(z: float, a: int, accepts_needed: int) -> float:
    """``E[1 / (a + 1 + F)]`` where ``F`` counts the failures before ``accepts_needed`` (1 or 2)
    successes of probability ``z``.

    Equals ``integral_0^1 (1-s)^a (z / (z + (1-z) s))^r ds`` (sum the series under the
    integral), computed by Gauss-Legendre quadrature on a geometric grid of ``s`` (the integrand
    is smooth on each dyadic piece), to about 1e-12 relative accuracy.
    """
    if not 0.0 < z <= 1.0:
        return 0.0
    r = int(accepts_needed)
    if z == 1.0:
        return 1.0 / (a + 1)
    q = 1.0 - z
    lo = min(1e-18, z * 1e-10)
    pieces = int(math.ceil(math.log2(1.0 / lo)))
    edges = np.concatenate([[0.0], np.geomspace(lo, 1.0, pieces + 1)])
    left, right = edges[:-1], edges[1:]
    mid, half = (left + right) / 2, (right - left) / 2
    s = mid[:, None] + half[:, None] * _GL_X[None, :]
    f = np.exp(a * np.log1p(-s)) * (z / (z + q * s)) ** r
    return float(np.sum(half[:, None] * _GL_W[None, :] * f))


def awrs_step(
    logp: np.ndarray,
    is_allowed: Callable[[int], bool],
    rng: np.random.Generator,
    *,
    proper_weights: bool = True,
    max_checks: int | None = 256,
    full_mask: Callable[[], np.ndarray] | None = None,
    _orders: Callable[[int, set[int]], Iterable[int]] | None = None,
) -> AWRSStep:
    """One AWRS step over next-token log-probs ``logp`` (float64, normalised).

    ``is_allowed(tid)``: the grammar's single-token check.  ``full_mask()``: allowed ids (used
    only when ``max_checks`` distinct checks are exhausted; without it the budget is ignored).
    ``proper_weights=False``: one round only, weight 0 (the sample is still exact).
    ``_orders(round, excluded)`` replaces the Gumbel orders (tests enumerate them).
    """
    p = np.exp(logp)
    checked: dict[int, bool] = {}
    rejected: set[int] = set()
    rej_mass = 0.0
    n_rej = 0
    budget = max_checks if (max_checks is not None and full_mask is not None) else None

    def order(rnd: int) -> Iterable[int]:
        if _orders is not None:
            return _orders(rnd, set(rejected))
        return gumbel_order(logp, rng, rejected)

    def phantoms() -> int:
        if rej_mass <= 0.0:
            return 0
        remaining = 1.0 - rej_mass
        if remaining <= 1e-300:
            return 1 << 62
        return int(rng.geometric(min(1.0, remaining))) - 1

    def fallback(x: int | None) -> AWRSStep:
        ids = np.asarray(full_mask(), dtype=np.int64)  # type: ignore[misc]
        ids = ids[ids < p.shape[0]]
        pa = p[ids]
        z = float(pa.sum())
        if z <= 0.0:
            return AWRSStep(-1, -math.inf, len(checked), True, n_rej)
        if x is None:
            x = int(ids[int(np.searchsorted(np.cumsum(pa), rng.random() * z, side="right").clip(0, len(ids) - 1))])
            need = 2
        else:
            need = 1
        if not proper_weights:
            return AWRSStep(x, 0.0, len(checked), True, n_rej)
        w = expected_inverse_count(min(1.0, z), n_rej, need)
        return AWRSStep(x, math.log(w) if w > 0 else -math.inf, len(checked), True, n_rej)

    def check(t: int) -> bool:
        r = checked.get(t)
        if r is None:
            r = bool(is_allowed(t))
            checked[t] = r
        return r

    def run_round(rnd: int) -> int | None | AWRSStep:
        nonlocal rej_mass, n_rej
        for t in order(rnd):
            if t in rejected or p[t] <= 0.0:
                continue
            if budget is not None and t not in checked and len(checked) >= budget:
                return fallback(first)
            n_rej += phantoms()
            if check(t):
                return t
            rejected.add(t)
            rej_mass += float(p[t])
            n_rej += 1
        return None

    first: int | None = None
    r1 = run_round(1)
    if isinstance(r1, AWRSStep):
        return r1
    if r1 is None:
        return AWRSStep(-1, -math.inf, len(checked), False, n_rej)
    first = r1
    if not proper_weights:
        return AWRSStep(first, 0.0, len(checked), False, n_rej)
    r2 = run_round(2)
    if isinstance(r2, AWRSStep):
        r2.token = first
        return r2
    if r2 is None:  # cannot happen: `first` is allowed and never excluded
        raise AssertionError("AWRS round 2 found no allowed token")
    return AWRSStep(first, -math.log(n_rej + 1), len(checked), False, n_rej)


class AWRSSampler:
    """Sequences from per-step AWRS (one particle, no resampling).

    Each sample is distributed exactly like GCD (the locally masked distribution) but costs a few
    single-token checks per step instead of a mask; its ``log_weight`` (sum of the steps' log
    weight estimates) makes ``(sample, weight)`` properly weighted for ``P(x | x in L)``:
    averaging ``weight * f(x)`` estimates ``P(L) E[f | L]`` without bias.
    """

    def __init__(
        self,
        model: Any,
        grammar: Any,
        prompt_ids: Any,
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        seed: Any = None,
        proper_weights: bool = True,
        max_checks: int | None = 256,
    ) -> None:
        if grammar.vocab is None:
            raise ValueError("the grammar needs a vocabulary (compile it with the model's tokenizer)")
        self.grammar = grammar
        self.lm = PrefixLM(model, prompt_ids, temperature=temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.rng = make_rng(seed)
        self.eos = set(grammar.vocab.eos_ids)
        self.proper_weights = proper_weights
        self.max_checks = max_checks

    def sample_one(self) -> Sample:
        m = self.grammar.matcher()
        path: list[int] = []
        lp = lw = 0.0
        checks = 0
        finish = "max_new_tokens"
        while len(path) < self.max_new_tokens:
            logp = self.lm.logprobs(path)
            st = awrs_step(
                logp,
                m.is_token_allowed,
                self.rng,
                proper_weights=self.proper_weights,
                max_checks=self.max_checks,
                full_mask=lambda: allowed_ids(m),
            )
            checks += st.n_checks
            if st.token < 0:
                finish = "dead_end"
                break
            lw += st.log_weight
            lp += float(logp[st.token])
            path.append(st.token)
            m.consume_token(st.token)
            if st.token in self.eos:
                finish = "eos"
                break
        complete = finish == "eos"
        return Sample(
            path,
            decode_text(self.grammar.vocab, path),
            lp,
            log_weight=lw if complete else -math.inf,
            complete=complete,
            finish_reason=finish,
            n_checks=checks,
            n_steps=len(path),
        )

    def sample(self, n: int = 1) -> list[Sample]:
        return [self.sample_one() for _ in range(int(n))]
