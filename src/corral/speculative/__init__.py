"""Speculative constrained decoding: grammar / n-gram / recycled / draft-model drafts, verified
losslessly against the masked target distribution in one forward pass per round.

``speculative_generate(model, tokenizer, prompt_ids, grammar, *, config, ...)`` is the loop;
importing this package registers it with :func:`corral.api.register_speculative`, so
``corral.generate(..., speculative=True | SpeculativeConfig(...) | dict)`` uses it.
"""

from __future__ import annotations

from typing import Any

from .config import DEFAULT_DRAFTERS, SpeculativeConfig
from .drafters import GrammarDrafter, LookupDrafter, ModelDrafter, RecycleDrafter, crop_cache
from .loop import SpecStats, speculative_generate

__all__ = [
    "SpeculativeConfig",
    "DEFAULT_DRAFTERS",
    "speculative_generate",
    "SpecStats",
    "GrammarDrafter",
    "LookupDrafter",
    "RecycleDrafter",
    "ModelDrafter",
    "crop_cache",
    "decode_context_adapter",
]


def decode_context_adapter(ctx: Any) -> Any:
    """``fn(DecodeContext) -> DecodeOutput`` for :func:`corral.api.register_speculative`.

    The config comes from ``ctx.options["speculative"]`` (``True``, a :class:`SpeculativeConfig`
    or a dict); the sampler from ``ctx.options["sampler"]``.
    """
    from ..api import DecodeOutput

    spec = ctx.options.get("speculative", True)
    cfg = SpeculativeConfig.coerce(spec)
    ids, finish, lp, stats = speculative_generate(
        ctx.model,
        ctx.tokenizer,
        ctx.prompt_ids,
        ctx.grammar,
        config=cfg,
        max_new_tokens=ctx.max_new_tokens,
        temperature=ctx.temperature,
        top_p=ctx.top_p,
        top_k=ctx.top_k,
        sampler=ctx.options.get("sampler"),
        generator=ctx.generator,
    )
    complete = finish == "eos"
    if not complete:
        # accepting prefix at max_new_tokens counts as complete (as in the plain loop)
        m = ctx.grammar.matcher()
        complete = m.consume_tokens(ids) == len(ids) and m.is_accepting()
    t = stats.timings
    timings = {
        "prompt": t.get("prompt", 0.0),
        "decode": t.get("total", 0.0) - t.get("prompt", 0.0),
        "mask": t.get("mask", 0.0),
        "total": t.get("total", 0.0),
        "draft": t.get("draft", 0.0),
        "forward": t.get("forward", 0.0),
        "verify": t.get("verify", 0.0),
        "n_forwards": float(stats.n_forwards),
        "acceptance_rate": stats.acceptance_rate,
    }
    return DecodeOutput(list(ids), finish, float(lp), complete, timings)


def _register() -> None:
    try:
        from ..api import register_speculative
    except ImportError:  # pragma: no cover - api not available
        return
    register_speculative(decode_context_adapter)


_register()
