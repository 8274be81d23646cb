"""Grammar-constrained decoding (GCD): sample each token from the masked, renormalised
next-token distribution.  Every output is grammatical, but the distribution over outputs is
``prod_t p(x_t | x_<t) / Z_t`` rather than the conditional ``P(x | x in L)`` -- the bias that
ASAp and AWRS + SMC remove.  Kept here as the baseline (and the negative control of the tests).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .base import Sample, allowed_ids, decode_text, make_rng
from .lm import PrefixLM

__all__ = ["GCDSampler"]


class GCDSampler:
    """``GCDSampler(model, grammar, prompt_ids).sample(n)`` -> list of :class:`Sample`.

    ``log_weight`` of a sample is ``sum_t log Z_t`` (its importance weight for the conditional:
    averaging ``exp(log_weight)`` estimates ``P(L)`` without bias).
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
    ) -> None:
        if grammar.vocab is None:
            raise ValueError("the grammar needs a vocabulary (compile it with the model's tokenizer)")
        self.grammar = grammar
        self.lm = PrefixLM(model, prompt_ids, temperature=temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.rng = make_rng(seed)
        self.eos = set(grammar.vocab.eos_ids)

    def sample_one(self) -> Sample:
        m = self.grammar.matcher()
        path: list[int] = []
        lp = lq = lw = 0.0
        finish = "max_new_tokens"
        while len(path) < self.max_new_tokens:
            ids = allowed_ids(m)
            logp = self.lm.logprobs(path)
            ids = ids[ids < logp.shape[0]]
            pa = np.exp(logp[ids])
            z = float(pa.sum())
            if z <= 0:
                finish = "dead_end"
                break
            i = int(np.searchsorted(np.cumsum(pa), self.rng.random() * z, side="right"))
            i = min(i, len(ids) - 1)
            t = int(ids[i])
            path.append(t)
            lp += float(logp[t])
            lq += math.log(pa[i] / z)
            lw += math.log(z)
            m.consume_token(t)
            if t in self.eos:
                finish = "eos"
                break
        complete = finish == "eos"
        return Sample(
            path,
            decode_text(self.grammar.vocab, path),
            lp,
            log_weight=lw if complete else -math.inf,
            proposal_logprob=lq,
            complete=complete,
            finish_reason=finish,
            n_checks=0,
            n_steps=len(path),
        )

    def sample(self, n: int = 1) -> list[Sample]:
        return [self.sample_one() for _ in range(int(n))]
