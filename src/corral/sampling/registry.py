"""Adapters registering ``"asap"``, ``"awrs"`` and ``"smc"`` in ``corral.api.SAMPLERS``.

Importing this module makes ``corral.generate(..., sampler="asap" | "awrs" | "smc")`` work.
Extra ``generate`` keyword options reach the sampler through ``DecodeContext.options``
(``n_particles``, ``ess_threshold``, ``max_checks``, ``asap_sampler``, ``twist``, ``twist_top_k``;
see :func:`corral.sampling.run_sampler`).
"""

from __future__ import annotations

from typing import Any

import torch

from ..api import DecodeContext, DecodeOutput, register_sampler
from . import run_sampler

_OPTION_KEYS = ("n_particles", "ess_threshold", "max_checks", "asap_sampler", "twist", "twist_top_k")


def _adapter(name: str):
    def fn(ctx: DecodeContext) -> DecodeOutput:
        if ctx.top_k or (0.0 < ctx.top_p < 1.0):
            raise ValueError(f"sampler={name!r} samples the model's distribution: top_k / top_p are not supported")
        seed: Any = None
        if ctx.generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
        kw = {k: ctx.options[k] for k in _OPTION_KEYS if k in ctx.options}
        s = run_sampler(
            name,
            ctx.model,
            ctx.tokenizer,
            ctx.prompt_ids,
            ctx.grammar,
            max_new_tokens=ctx.max_new_tokens,
            temperature=ctx.temperature if ctx.temperature > 0 else 1.0,
            seed=seed,
            **kw,
        )
        timings = {}
        if "smc" in s.info:
            timings = dict(s.info["smc"].timings)
        return DecodeOutput(
            list(s.token_ids),
            "eos" if s.finish_reason == "eos" else "max_new_tokens",
            float(s.logprob),
            bool(s.complete),
            timings,
        )

    fn.__name__ = f"{name}_sampler"
    fn.__doc__ = f"corral.sampling.run_sampler({name!r}, ...) as a generate() sampler."
    return fn


for _name in ("asap", "awrs", "smc"):
    register_sampler(_name)(_adapter(_name))
