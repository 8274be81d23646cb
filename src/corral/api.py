"""High-level generation: ``generate`` (any grammar) and ``generate_json`` (a JSON Schema).

``generate`` runs its own decoding loop (KV cache, fp32 logits, the grammar's token mask at every
step).  Decoding strategies live in the :data:`SAMPLERS` registry: a sampler is a callable
``fn(ctx: DecodeContext) -> DecodeOutput``, so new ones (ASAP, AWRS, SMC, ...) plug in with
:func:`register_sampler` without touching ``generate``.  ``speculative=True`` dispatches to the
callable registered with :func:`register_speculative`.

Log-probability: ``GenerationResult.logprob`` is the sum over the chosen tokens of their log
probability under the distribution the token was drawn from: the softmax of the masked logits,
divided by the temperature and truncated by top-k / top-p for ``"sample"``; for ``"greedy"`` the
masked softmax at temperature 1.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .errors import CorralError, GenerationError
from .models import forward_cached

logger = logging.getLogger("corral")
logger.addHandler(logging.NullHandler())

__all__ = [
    "GenerationResult",
    "DecodeContext",
    "DecodeOutput",
    "generate",
    "generate_json",
    "compile_json_schema",
    "register_sampler",
    "register_speculative",
    "SAMPLERS",
]

FINISH_EOS = "eos"
FINISH_LENGTH = "max_new_tokens"


# ----------------------------------------------------------------------------- results
@dataclass
class GenerationResult:
    """What ``generate`` produced.

    ``text``: the generated text (EOS excluded); ``token_ids``: generated ids (EOS included when
    ``finish_reason == "eos"``); ``logprob``: see the module docstring; ``timings``: seconds
    (``prompt``: prefill, ``decode``: the rest, ``mask``: time spent computing masks, ``total``).
    """

    text: str
    token_ids: list[int]
    finish_reason: str
    logprob: float
    n_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    complete: bool = True  # the text is a complete sentence of the grammar


@dataclass
class DecodeContext:
    """Everything a sampler needs; samplers must not mutate ``prompt_ids``."""

    model: Any
    tokenizer: Any
    grammar: Any
    prompt_ids: torch.Tensor  # LongTensor [1, P]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    generator: torch.Generator | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return tuple(self.grammar.vocab.eos_ids)

    @property
    def device(self) -> torch.device:
        try:
            return next(self.model.parameters()).device
        except (StopIteration, AttributeError):
            return torch.device("cpu")


@dataclass
class DecodeOutput:
    token_ids: list[int]
    finish_reason: str  # "eos" | "max_new_tokens"
    logprob: float
    complete: bool  # the generated text is a sentence of the grammar
    timings: dict[str, float] = field(default_factory=dict)


SamplerFn = Callable[[DecodeContext], DecodeOutput]
SAMPLERS: dict[str, SamplerFn] = {}
_SPECULATIVE: dict[str, SamplerFn] = {}


def register_sampler(name: str) -> Callable[[SamplerFn], SamplerFn]:
    """Decorator: make ``fn(ctx) -> DecodeOutput`` available as ``generate(..., sampler=name)``."""

    def deco(fn: SamplerFn) -> SamplerFn:
        SAMPLERS[name] = fn
        return fn

    return deco


def register_speculative(fn: SamplerFn, name: str = "default") -> SamplerFn:
    """Register the loop used by ``generate(..., speculative=True)``."""
    _SPECULATIVE[name] = fn
    return fn


def _load_plugin_sampler(name: str) -> SamplerFn | None:
    """Samplers of ``corral.sampling`` (asap, awrs, smc, ...) register themselves on import."""
    try:
        import corral.sampling.registry  # noqa: F401
    except ImportError as exc:
        logger.debug("corral.sampling.registry not importable: %s", exc)
    return SAMPLERS.get(name)


# ----------------------------------------------------------------------------- masks / warps
def mask_logits(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Set disallowed entries of ``logits`` ``[rows, W]`` to ``-inf`` from an int32 bitmask (out of place)."""
    from .integrations.hf import apply_bitmask

    return apply_bitmask(logits, bitmask)


def warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) on 1-D masked logits; returns log-probs."""
    x = logits / max(float(temperature), 1e-5)
    if top_k and top_k > 0 and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k).values[-1]
        x = x.masked_fill(x < kth, float("-inf"))
    logp = torch.log_softmax(x, dim=-1)
    if 0.0 < top_p < 1.0:
        sorted_lp, idx = torch.sort(logp, descending=True)
        cum = torch.cumsum(sorted_lp.exp(), dim=-1)
        drop_sorted = (cum - sorted_lp.exp()) >= top_p  # keep the smallest prefix reaching top_p
        drop_sorted[0] = False
        drop = torch.zeros_like(drop_sorted).scatter(0, idx, drop_sorted)
        x = x.masked_fill(drop, float("-inf"))
        logp = torch.log_softmax(x, dim=-1)
    return logp


# ----------------------------------------------------------------------------- the loop
def autoregressive(ctx: DecodeContext, pick: Callable[[torch.Tensor], tuple[int, float]]) -> DecodeOutput:
    """Token-by-token decoding with the model's KV cache; ``pick(masked_logits) -> (id, logprob)``."""
    model = ctx.model
    vocab = ctx.grammar.vocab
    eos = set(int(i) for i in vocab.eos_ids)
    matcher = ctx.grammar.matcher()
    bitmask = torch.zeros((1, vocab.n_words), dtype=torch.int32)
    device = ctx.device
    ids = ctx.prompt_ids.to(device)
    past = None
    out_ids: list[int] = []
    total_lp = 0.0
    finish = FINISH_LENGTH
    t_mask = 0.0
    t_prompt = 0.0
    t0 = time.perf_counter()
    with torch.no_grad():
        for step in range(ctx.max_new_tokens):
            out, past = forward_cached(model, ids, past)
            logits = out.logits[0, -1, :].float()
            if step == 0:
                t_prompt = time.perf_counter() - t0
            tm = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask, 0)
            masked = mask_logits(logits.unsqueeze(0), bitmask)[0]
            t_mask += time.perf_counter() - tm
            if not torch.isfinite(masked).any():
                raise GenerationError(
                    "the grammar allows no token here (engine bug)",
                    partial_text=_decode(ctx, out_ids),
                    finish_reason="error",
                )
            tid, lp = pick(masked)
            total_lp += lp
            out_ids.append(tid)
            if not matcher.consume_token(tid):
                raise GenerationError(
                    f"token {tid} was allowed by the mask but refused by the matcher (engine bug)",
                    partial_text=_decode(ctx, out_ids[:-1]),
                    finish_reason="error",
                )
            if tid in eos:
                finish = FINISH_EOS
                break
            ids = torch.tensor([[tid]], dtype=torch.long, device=device)
    complete = finish == FINISH_EOS or matcher.is_accepting()
    total = time.perf_counter() - t0
    return DecodeOutput(
        out_ids,
        finish,
        total_lp,
        complete,
        {"prompt": t_prompt, "decode": total - t_prompt, "mask": t_mask, "total": total},
    )


@register_sampler("greedy")
def greedy(ctx: DecodeContext) -> DecodeOutput:
    """Argmax of the masked logits at every step."""

    def pick(masked: torch.Tensor) -> tuple[int, float]:
        tid = int(torch.argmax(masked))
        return tid, float(torch.log_softmax(masked, dim=-1)[tid])

    return autoregressive(ctx, pick)


@register_sampler("sample")
def sample(ctx: DecodeContext) -> DecodeOutput:
    """Ancestral sampling from the masked, warped (temperature / top-k / top-p) distribution."""
    temperature = ctx.temperature if ctx.temperature > 0 else 1.0

    def pick(masked: torch.Tensor) -> tuple[int, float]:
        logp = warp(masked, temperature, ctx.top_k, ctx.top_p)
        probs = logp.exp()
        tid = int(torch.multinomial(probs.cpu(), 1, generator=ctx.generator)[0])
        return tid, float(logp[tid])

    return autoregressive(ctx, pick)


# ----------------------------------------------------------------------------- prompts
def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def encode_prompt(tokenizer: Any, prompt: Any, chat: bool | None = None) -> torch.Tensor:
    """Token ids ``[1, P]`` for a text prompt or a list of chat messages.

    ``chat=None``: use the tokenizer's chat template when it has one (a text prompt becomes one
    user message).  ``chat=False``: tokenize a text prompt as is.
    """
    if isinstance(prompt, (list, tuple)):
        if not _has_chat_template(tokenizer):
            raise CorralError("a list of chat messages needs a tokenizer with a chat template")
        messages = list(prompt)
        use_chat = True
    elif isinstance(prompt, str):
        use_chat = _has_chat_template(tokenizer) if chat is None else bool(chat)
        messages = [{"role": "user", "content": prompt}]
        if use_chat and not _has_chat_template(tokenizer):
            raise CorralError("chat=True but the tokenizer has no chat template")
    else:
        raise TypeError(f"prompt must be a str or a list of messages, not {type(prompt).__name__}")
    if use_chat:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    if not ids:
        raise CorralError("the prompt encodes to no tokens")
    return torch.tensor([ids], dtype=torch.long)


def _decode(ctx: DecodeContext, ids: list[int]) -> str:
    return ctx.grammar.vocab.decode_bytes(ids).decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------- grammars
def _model_vocab(tokenizer: Any, model: Any = None) -> Any:
    """The Vocabulary for (tokenizer, model): mask width = model logits width, EOS from both."""
    from .vocab import Vocabulary

    size = None
    eos: list[int] | None = None
    if model is not None:
        cfg = getattr(model, "config", None)
        vs = getattr(cfg, "vocab_size", None)
        try:
            n_tok = len(tokenizer)
        except TypeError:
            n_tok = None
        if isinstance(vs, int) and (n_tok is None or vs >= n_tok):
            size = vs
        base = Vocabulary.from_tokenizer(tokenizer, vocab_size=size)
        eos = list(base.eos_ids)
        gc = getattr(model, "generation_config", None)
        extra = getattr(gc, "eos_token_id", None) if gc is not None else None
        if isinstance(extra, int):
            extra = [extra]
        for e in extra or []:
            if e is not None and int(e) not in eos and 0 <= int(e) < base.size:
                eos.append(int(e))
        if tuple(eos) == tuple(base.eos_ids):
            return base
        return Vocabulary.from_tokenizer(tokenizer, vocab_size=size, eos_ids=eos)
    return Vocabulary.from_tokenizer(tokenizer)


def _ensure_vocab(grammar: Any, tokenizer: Any, model: Any) -> Any:
    if getattr(grammar, "vocab", None) is None:
        return grammar.with_vocabulary(_model_vocab(tokenizer, model))
    return grammar


_GRAMMAR_CACHE: "collections.OrderedDict[tuple, tuple[Any, Any]]" = collections.OrderedDict()
_GRAMMAR_CACHE_MAX = 64
_GRAMMAR_LOCK = threading.Lock()


def compile_json_schema(schema: Any, tokenizer: Any, model: Any = None, **options: Any) -> Any:
    """``Grammar.from_json_schema`` with an LRU cache keyed by (schema, tokenizer, model width, options)."""
    from .automaton.grammar import Grammar

    key_schema = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    width = getattr(getattr(model, "config", None), "vocab_size", None)
    key = (key_schema, id(tokenizer), width, json.dumps(options, sort_keys=True, default=repr))
    with _GRAMMAR_LOCK:
        hit = _GRAMMAR_CACHE.get(key)
        if hit is not None and hit[0] is tokenizer:
            _GRAMMAR_CACHE.move_to_end(key)
            return hit[1]
    grammar = Grammar.from_json_schema(schema, _model_vocab(tokenizer, model), **options)
    with _GRAMMAR_LOCK:
        _GRAMMAR_CACHE[key] = (tokenizer, grammar)
        _GRAMMAR_CACHE.move_to_end(key)
        while len(_GRAMMAR_CACHE) > _GRAMMAR_CACHE_MAX:
            _GRAMMAR_CACHE.popitem(last=False)
    return grammar


# ----------------------------------------------------------------------------- public API
def generate(
    model: Any,
    tokenizer: Any,
    prompt: str | list[dict[str, str]],
    grammar: Any,
    *,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    sampler: str | None = None,
    speculative: bool = False,
    chat: bool | None = None,
    allow_incomplete: bool = False,
    **options: Any,
) -> GenerationResult:
    """Generate text that is a sentence of ``grammar``.

    ``grammar``: a :class:`corral.Grammar` (compiled with or without a tokenizer) or a JSON
    Schema ``dict`` / ``bool``.  ``prompt``: text or chat messages (see :func:`encode_prompt`).
    ``sampler``: ``"greedy"``, ``"sample"`` or any registered name; ``None`` picks ``"sample"``
    when ``temperature > 0`` else ``"greedy"``.  ``seed`` makes sampling reproducible.

    If ``max_new_tokens`` runs out before the text is a complete sentence, raises
    :class:`GenerationError` (``partial_text``, ``finish_reason="max_new_tokens"``) unless
    ``allow_incomplete=True``, in which case the result has ``complete=False``.  Running out
    exactly when the text is complete returns normally with ``finish_reason="max_new_tokens"``.
    Extra keyword ``options`` are passed to the sampler in ``DecodeContext.options``.
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    t_start = time.perf_counter()
    if isinstance(grammar, (dict, bool)):
        grammar = compile_json_schema(grammar, tokenizer, model)
    elif not hasattr(grammar, "matcher"):
        raise TypeError(f"grammar must be a corral.Grammar or a JSON schema dict, not {type(grammar).__name__}")
    grammar = _ensure_vocab(grammar, tokenizer, model)
    t_compiled = time.perf_counter()

    if sampler is None:
        sampler = "sample" if temperature and temperature > 0 else "greedy"
    generator = None
    if seed is not None:
        generator = torch.Generator().manual_seed(int(seed))
    prompt_ids = encode_prompt(tokenizer, prompt, chat)
    ctx = DecodeContext(
        model=model,
        tokenizer=tokenizer,
        grammar=grammar,
        prompt_ids=prompt_ids,
        max_new_tokens=int(max_new_tokens),
        temperature=float(temperature),
        top_p=float(top_p),
        top_k=int(top_k),
        generator=generator,
        options=dict(options, sampler=sampler),
    )
    if speculative:
        if not _SPECULATIVE:
            import corral.speculative  # noqa: F401  (registers the loop)
        ctx.options["speculative"] = speculative  # True | SpeculativeConfig | dict
        fn = _SPECULATIVE.get(options.get("speculative_mode", "default"))
        if fn is None:
            raise CorralError("speculative decoding is not available (no loop registered)")
    else:
        fn = SAMPLERS.get(sampler)
        if fn is None:
            fn = _load_plugin_sampler(sampler)
        if fn is None:
            raise ValueError(f"unknown sampler {sampler!r}; available: {sorted(SAMPLERS)}")
    was_training = getattr(model, "training", False)
    if was_training:
        model.eval()
    try:
        out = fn(ctx)
    finally:
        if was_training:
            model.train()
    text = _decode(ctx, out.token_ids)
    timings = dict(out.timings)
    timings["compile"] = t_compiled - t_start
    timings["total"] = time.perf_counter() - t_start
    n = len(out.token_ids)
    if not out.complete and not allow_incomplete:
        raise GenerationError(
            f"max_new_tokens={max_new_tokens} reached before the output was complete; "
            f"partial text: {text[:200]!r}",
            partial_text=text,
            finish_reason=out.finish_reason,
        )
    logger.debug("generated %d tokens in %.3fs (%s)", n, timings["total"], out.finish_reason)
    return GenerationResult(
        text=text,
        token_ids=list(out.token_ids),
        finish_reason=out.finish_reason,
        logprob=float(out.logprob),
        n_tokens=n,
        timings=timings,
        complete=out.complete,
    )


def _validator_for(schema: Any) -> Any:
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def generate_json(
    model: Any,
    tokenizer: Any,
    schema: Any,
    prompt: str | list[dict[str, str]],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    seed: int | None = None,
    whitespace: str = "compact",
    strict: bool = True,
    schema_options: dict[str, Any] | None = None,
    return_result: bool = False,
    **kw: Any,
) -> Any:
    """Generate a JSON value valid against ``schema`` and return it parsed.

    The schema is compiled once per (schema, tokenizer, options) and cached.  The value is
    checked with ``jsonschema`` (format checker on, draft from ``$schema``, default 2020-12); a
    value that fails would be an engine bug and raises :class:`GenerationError` instead of being
    returned.  Other keyword arguments go to :func:`generate`.  With ``return_result=True``
    returns ``(value, GenerationResult)``.
    """
    opts = dict(schema_options or {})
    opts["whitespace"] = whitespace
    opts["strict"] = strict
    grammar = compile_json_schema(schema, tokenizer, model, **opts)
    result = generate(
        model,
        tokenizer,
        prompt,
        grammar,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        **kw,
    )
    try:
        value = json.loads(result.text)
    except json.JSONDecodeError as exc:
        raise GenerationError(
            f"generated text is not JSON ({exc}); engine bug", partial_text=result.text, finish_reason="invalid"
        ) from exc
    if schema is not True:
        errors = sorted(_validator_for(schema).iter_errors(value), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            raise GenerationError(
                f"generated JSON does not validate at {'/'.join(map(str, e.path)) or '#'}: {e.message} (engine bug)",
                partial_text=result.text,
                finish_reason="invalid",
            )
    return (value, result) if return_result else value
