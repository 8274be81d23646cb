"""Faithful sampling from ``P(x | x in L)``: ASAp, AWRS and SMC (plus GCD, the biased baseline).

* :class:`ASApSampler` -- Park et al. 2024: a persistent trie of explored prefixes with an
  over-approximation of each prefix's expected future grammaticality; converges to the exact
  conditional as samples accumulate.
* :func:`awrs_step` / :class:`AWRSSampler` -- Lipkin et al. 2025: exact draws from the locally
  masked distribution with a few single-token checks, and an unbiased estimate of the allowed
  mass (the importance weight).
* :func:`smc` -- sequential Monte Carlo with AWRS proposals: weighted particles and an unbiased
  estimate of ``P(L)``; ``twist=`` gives twisted SMC (a :class:`Lookahead` twist, or an
  :class:`ASApSampler` trie that learns across calls).
* :func:`run_sampler` -- one entry point by name (``"gcd"``, ``"awrs"``, ``"smc"``, ``"asap"``),
  used by ``corral.generate(..., sampler=...)``.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any

from .asap import ASApSampler
from .awrs import AWRSSampler, AWRSStep, awrs_step
from .base import Sample
from .exact import enumerate_language, kl_divergence, tv_distance
from .gcd import GCDSampler
from .lm import as_prompt_ids
from .smc import Lookahead, SMCResult, smc

__all__ = [
    "ASApSampler",
    "AWRSSampler",
    "AWRSStep",
    "GCDSampler",
    "Sample",
    "SMCResult",
    "Lookahead",
    "awrs_step",
    "smc",
    "run_sampler",
    "SAMPLER_NAMES",
    "enumerate_language",
    "tv_distance",
    "kl_divergence",
]

SAMPLER_NAMES = ("gcd", "awrs", "smc", "asap")

_ASAP_CACHE: "OrderedDict[tuple, ASApSampler]" = OrderedDict()
_ASAP_LOCK = threading.Lock()
_ASAP_CACHE_MAX = 8


def _asap_for(model: Any, tokenizer: Any, grammar: Any, prompt: list[int], **kw: Any) -> ASApSampler:
    """ASAp samplers persist per (model, grammar, prompt, settings) so repeated calls converge."""
    key = (id(model), id(grammar), tuple(prompt), kw.get("max_new_tokens"), kw.get("temperature"))
    with _ASAP_LOCK:
        s = _ASAP_CACHE.get(key)
        if s is None or s.lm.model is not model or s.grammar is not grammar:
            s = ASApSampler(model, tokenizer, grammar, prompt, **kw)
            _ASAP_CACHE[key] = s
        _ASAP_CACHE.move_to_end(key)
        while len(_ASAP_CACHE) > _ASAP_CACHE_MAX:
            _ASAP_CACHE.popitem(last=False)
        return s


def run_sampler(
    name: str,
    model: Any,
    tokenizer: Any,
    prompt_ids: Any,
    grammar: Any,
    *,
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    seed: Any = None,
    n_particles: int = 10,
    ess_threshold: float = 0.5,
    max_checks: int | None = 256,
    asap_sampler: ASApSampler | None = None,
    twist: Any = None,
    twist_top_k: int | None = None,
    **_ignored: Any,
) -> Sample:
    """Draw one sequence with sampler ``name`` and return it as a :class:`Sample`.

    ``"gcd"``: masked sampling (biased baseline).  ``"awrs"``: per-step AWRS (distributed like
    GCD, few checks, with an importance ``log_weight``).  ``"smc"``: SMC with ``n_particles``
    AWRS particles; the returned particle is drawn by weight, ``info["smc"]`` holds the full
    :class:`SMCResult` and ``info["log_z"]`` its ``P(L)`` estimate.  ``twist`` (SMC only):
    ``None`` / ``"none"`` (default), ``"trie"`` (the ASAp trie that persists across calls for the
    same model, grammar and prompt -- the one ``"asap"`` uses, or ``asap_sampler`` -- learns from
    every run), ``"lookahead"`` or an int ``k`` (``k``-token lookahead; ``twist_top_k``: only for
    the most probable candidates), or a :class:`Lookahead` / :class:`ASApSampler` object.  ``"asap"``: one ASAp sample
    from a sampler that persists across calls for the same model, grammar and prompt (or from
    ``asap_sampler``); ``info["estimate_pl"]`` is its bound on ``P(L)``.
    """
    if grammar.vocab is None:
        if tokenizer is None:
            raise ValueError("the grammar needs a vocabulary")
        grammar = grammar.with_vocabulary(tokenizer)
    prompt = as_prompt_ids(prompt_ids)
    temperature = float(temperature) if temperature and temperature > 0 else 1.0
    if name == "gcd":
        return GCDSampler(model, grammar, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed).sample_one()
    if name == "awrs":
        return AWRSSampler(
            model, grammar, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, max_checks=max_checks
        ).sample_one()
    if name == "smc":
        tw = _resolve_twist(
            twist, twist_top_k, asap_sampler, model, tokenizer, grammar, prompt, max_new_tokens, temperature, seed
        )
        res = smc(
            model,
            tokenizer,
            grammar,
            prompt,
            n_particles=n_particles,
            ess_threshold=ess_threshold,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            max_checks=max_checks,
            twist=tw,
        )
        if res.log_z == float("-inf"):
            best = res.particles[0]
        else:
            best = res.draw(seed)
        out = Sample(**{**best.__dict__, "info": {"smc": res, "log_z": res.log_z}})
        return out
    if name == "asap":
        s = asap_sampler or _asap_for(
            model, tokenizer, grammar, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
        )
        return s.sample_one()
    raise ValueError(f"unknown sampler {name!r}; available: {', '.join(SAMPLER_NAMES)}")


def _resolve_twist(
    twist: Any,
    top_k: int | None,
    asap_sampler: ASApSampler | None,
    model: Any,
    tokenizer: Any,
    grammar: Any,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float,
    seed: Any,
) -> Any:
    """A twist named by a string (``"none"``, ``"trie"``, ``"lookahead"``, ``"lookaheadK"``) or an
    int depth with ``top_k``, as the object :func:`smc` takes; anything else goes to it as is."""
    if isinstance(twist, str):
        if twist == "none":
            return None
        if twist == "trie":
            return asap_sampler or _asap_for(
                model, tokenizer, grammar, prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed
            )
        depth = re.fullmatch(r"lookahead(\d*)", twist)
        if depth is None:
            raise ValueError(
                f"unknown twist {twist!r}: use 'none', 'trie', 'lookahead', 'lookaheadK', an int, or an object"
            )
        return Lookahead(int(depth.group(1) or 1), top_k=top_k)
    if isinstance(twist, int) and not isinstance(twist, bool) and twist > 0:
        return Lookahead(twist, top_k=top_k)
    return twist
