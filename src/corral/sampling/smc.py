"""Sequential Monte Carlo with AWRS proposals.

Target: ``P(x | x in L)`` over complete sequences (EOS included) of at most ``max_new_tokens``
tokens.  Each particle extends by one AWRS step per round -- an exact draw from the locally
masked distribution -- and multiplies its weight by the step's unbiased estimate of the local
allowed mass ``Z_t``, so ``(particle, weight)`` stays properly weighted for ``P(x) 1[x in L]``.
Where the state's mask is already cached, the step draws from it directly and its weight is
``Z_t`` itself (the AWRS estimate's expectation, a Rao-Blackwellisation: same proposal, exact
weight, no single-token checks). When the effective sample size falls
below ``ess_threshold * N`` the particles are resampled (systematically) and their weights set to
the mean weight, which keeps

    log Z-hat = log mean(final weights)

an unbiased estimate (in exp-space) of ``P(L)``.  Particles decode in one batch through the
model's KV cache; resampling reorders the cache rows (``Cache.reorder_cache``: ancestors' caches
are copied), and finished particles leave the batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .asap import _encode
from .awrs import AWRSStep, awrs_step
from .base import Sample, allowed_ids, decode_text, log_mean_exp, logsumexp, make_rng
from .lm import ParticleLM

__all__ = ["SMCResult", "smc"]


@dataclass
class SMCResult:
    """Weighted particles.  ``log_weights``: final log-weights (``-inf`` for particles that died
    or ran out of tokens); ``log_z``: the log normalising-constant estimate (of ``P(L)``)."""

    particles: list[Sample]
    log_weights: np.ndarray
    log_z: float
    n_resamples: int = 0
    ess_history: list[float] = field(default_factory=list)
    n_checks: int = 0  # AWRS single-token checks, all particles
    n_token_steps: int = 0  # AWRS steps, all particles
    forward_calls: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def weights(self) -> np.ndarray:
        """Normalised weights (all zero when every particle died)."""
        lz = logsumexp(self.log_weights)
        if lz == -math.inf:
            return np.zeros(len(self.log_weights))
        return np.exp(self.log_weights - lz)

    @property
    def ess(self) -> float:
        w = self.weights
        s = float((w**2).sum())
        return 1.0 / s if s > 0 else 0.0

    def posterior(self, by: str = "tokens") -> dict:
        """Weighted distribution over outputs, keyed by token tuple (``by="tokens"``) or text."""
        out: dict = {}
        for s, w in zip(self.particles, self.weights):
            if w > 0:
                k = s.key() if by == "tokens" else s.text
                out[k] = out.get(k, 0.0) + float(w)
        return out

    def draw(self, seed: Any = None) -> Sample:
        """One particle drawn in proportion to its weight."""
        w = self.weights
        if w.sum() <= 0:
            raise ValueError("every particle has weight zero (no grammatical sequence found)")
        rng = make_rng(seed)
        return self.particles[int(rng.choice(len(w), p=w / w.sum()))]

    def best(self) -> Sample:
        """The particle of largest weight."""
        return self.particles[int(np.argmax(self.log_weights))]


class _Particle:
    __slots__ = ("tokens", "matcher", "logw", "logp", "done", "finish", "checks")

    def __init__(self, matcher: Any) -> None:
        self.tokens: list[int] = []
        self.matcher = matcher
        self.logw = 0.0
        self.logp = 0.0
        self.done = False
        self.finish = ""
        self.checks = 0

    def clone(self) -> "_Particle":
        c = _Particle(self.matcher.copy())
        c.tokens = list(self.tokens)
        c.logw, c.logp, c.done, c.finish, c.checks = self.logw, self.logp, self.done, self.finish, self.checks
        return c


def _systematic(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: ancestor indices with E[copies of i] = n w_i, less variance than
    multinomial draws (one uniform shared by n evenly spaced points)."""
    n = w.shape[0]
    points = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(w), points, side="right"), n - 1)


def _masked_step(logp: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> AWRSStep:
    ids = ids[ids < logp.shape[0]]
    pa = np.exp(logp[ids])
    z = float(pa.sum())
    if z <= 0.0:
        return AWRSStep(-1, -math.inf, 0, True)
    i = min(int(np.searchsorted(np.cumsum(pa), rng.random() * z, side="right")), len(ids) - 1)
    while pa[i] <= 0.0:
        i -= 1
    return AWRSStep(int(ids[i]), math.log(z), 0, True)


def smc(
    model: Any,
    tokenizer: Any,
    grammar: Any,
    prompt: Any,
    *,
    n_particles: int = 10,
    ess_threshold: float = 0.5,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: Any = None,
    max_checks: int | None = 256,
    proposal: str = "awrs",
    chat: bool | None = None,
) -> SMCResult:
    """Run SMC with AWRS proposals; see the module docstring.

    ``prompt``: text / chat messages (encoded like ``corral.generate``) or token ids.
    ``ess_threshold``: resample when ESS < ``ess_threshold * n_particles`` (0: never, 1: always).
    ``proposal``: ``"awrs"`` (few single-token checks, estimated local weights; where the
    state's mask is already cached, the ``"mask"`` step) or ``"mask"`` (the full mask each step:
    same proposal distribution, exact local weights, less variance).
    """
    if proposal not in ("awrs", "mask"):
        raise ValueError(f"proposal must be 'awrs' or 'mask', not {proposal!r}")
    t0 = time.perf_counter()
    if grammar.vocab is None:
        if tokenizer is None:
            raise ValueError("the grammar needs a vocabulary (compile it with the model's tokenizer)")
        grammar = grammar.with_vocabulary(tokenizer)
    vocab = grammar.vocab
    eos = set(vocab.eos_ids)
    n = int(n_particles)
    if n < 1:
        raise ValueError("n_particles must be >= 1")
    rng = make_rng(seed)
    lm = ParticleLM(model, _encode(tokenizer, prompt, chat), temperature=temperature)
    logps = lm.start(n)
    parts = [_Particle(grammar.matcher()) for _ in range(n)]
    rows = list(range(n))  # rows[i]: cache row of live particle i (None when finished)
    n_resamples, ess_hist, checks, steps = 0, [], 0, 0
    t_lm = time.perf_counter() - t0
    for _ in range(max_new_tokens):
        live = [i for i, p in enumerate(parts) if not p.done]
        if not live:
            break
        for i in live:
            p = parts[i]
            logp = logps[rows[i]]
            m = p.matcher
            if proposal == "mask" or m.mask_is_cached():
                st = _masked_step(logp, allowed_ids(m), rng)
            else:
                st = awrs_step(logp, m.is_token_allowed, rng, max_checks=max_checks, full_mask=lambda m=m: allowed_ids(m))
            p.checks += st.n_checks
            checks += st.n_checks
            steps += 1
            if st.token < 0:
                p.logw, p.done, p.finish = -math.inf, True, "dead_end"
                continue
            p.logw += st.log_weight
            p.logp += float(logp[st.token])
            p.tokens.append(st.token)
            m.consume_token(st.token)
            if st.token in eos:
                p.done, p.finish = True, "eos"
            elif len(p.tokens) >= max_new_tokens:
                p.logw, p.done, p.finish = -math.inf, True, "max_new_tokens"
            if p.logw == -math.inf:
                p.done = True
        lw = np.array([p.logw for p in parts])
        if logsumexp(lw) == -math.inf:
            break
        w = np.exp(lw - logsumexp(lw))
        ess = 1.0 / float((w**2).sum())
        ess_hist.append(ess)
        if ess < ess_threshold * n:
            anc = _systematic(w / w.sum(), rng)
            mean = log_mean_exp(lw)
            new = []
            for a in anc:
                c = parts[int(a)].clone()
                c.logw = mean
                new.append(c)
            old_rows = rows
            parts = new
            rows = [old_rows[int(a)] for a in anc]
            n_resamples += 1
        # advance the model for the live particles (finished ones leave the batch)
        live = [i for i, p in enumerate(parts) if not p.done]
        if not live:
            break
        tl = time.perf_counter()
        lm.select([rows[i] for i in live])
        logps = lm.step([parts[i].tokens[-1] for i in live])
        t_lm += time.perf_counter() - tl
        new_rows: list[Any] = [None] * n
        for r, i in enumerate(live):
            new_rows[i] = r
        rows = new_rows
    for p in parts:
        if not p.done:
            p.logw, p.done, p.finish = -math.inf, True, "max_new_tokens"
    lw = np.array([p.logw for p in parts])
    samples = [
        Sample(
            p.tokens,
            decode_text(vocab, p.tokens),
            p.logp,
            log_weight=p.logw,
            complete=p.finish == "eos",
            finish_reason=p.finish,
            n_checks=p.checks,
            n_steps=len(p.tokens),
        )
        for p in parts
    ]
    total = time.perf_counter() - t0
    return SMCResult(
        samples,
        lw,
        log_mean_exp(lw),
        n_resamples,
        ess_hist,
        checks,
        steps,
        lm.forward_calls,
        {"model": t_lm, "total": total},
    )
