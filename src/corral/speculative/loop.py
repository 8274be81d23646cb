"""The speculative decoding loop: draft, mask, one target forward, verify, commit, crop.

Lossless by construction:

- greedy: a drafted token is kept while it equals the masked argmax of the target at its
  position; then the masked argmax is emitted (correction, or bonus after a fully accepted
  draft).  Same tokens as plain constrained greedy decoding (up to floating-point differences
  between a batched and a one-token forward; none in float64).
- sampling, deterministic drafts: at each position a token is sampled from the masked, warped
  target distribution; the draft is kept while the sample equals it; the first differing sample
  is emitted.  Every emitted token is an exact sample of the plain path's distribution.
- sampling, draft model: draft ``x ~ q`` accepted with probability ``min(1, p(x)/q(x))``, else
  a token from ``norm(max(0, p - q))`` is emitted (Leviathan et al. / Chen et al.); ``p`` and
  ``q`` are both masked by the grammar and warped the same way.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..api import mask_logits, warp
from ..errors import GenerationError
from ..models import forward_cached
from .config import SpeculativeConfig
from .drafters import FORCED, GrammarDrafter, LookupDrafter, ModelDrafter, RecycleDrafter, crop_cache

FINISH_EOS = "eos"
FINISH_LENGTH = "max_new_tokens"


@dataclass
class SpecStats:
    """Counters and timings of one speculative generation."""

    n_forwards: int = 0
    n_tokens: int = 0
    drafted: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(
        default_factory=lambda: {"draft": 0.0, "mask": 0.0, "forward": 0.0, "verify": 0.0, "prompt": 0.0}
    )

    @property
    def tokens_per_forward(self) -> float:
        return self.n_tokens / self.n_forwards if self.n_forwards else 0.0

    @property
    def acceptance_rate(self) -> float:
        d = sum(self.drafted.values())
        return sum(self.accepted.values()) / d if d else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_forwards": self.n_forwards,
            "n_tokens": self.n_tokens,
            "tokens_per_forward": self.tokens_per_forward,
            "acceptance_rate": self.acceptance_rate,
            "drafted": dict(self.drafted),
            "accepted": dict(self.accepted),
            "timings": dict(self.timings),
        }


def _device(model: Any) -> torch.device:
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


class _Chain:
    """A draft under construction: tokens, their sources, and the walker's masks."""

    __slots__ = ("tokens", "sources", "terminated", "qs")

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.sources: list[str] = []
        self.terminated = False
        self.qs: list[torch.Tensor] | None = None


def speculative_generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: Any,
    grammar: Any,
    *,
    config: SpeculativeConfig | dict | bool | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    sampler: str | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[int], str, float, SpecStats]:
    """Constrained generation with speculative drafts; returns ``(ids, finish_reason, logprob, stats)``.

    ``prompt_ids``: a list of ids or a LongTensor ``[P]`` / ``[1, P]``.  ``grammar`` must carry a
    vocabulary whose width matches the model's logits.  ``sampler``: ``"greedy"`` or ``"sample"``;
    ``None`` picks ``"sample"`` when ``temperature > 0``.  ``"sample"`` with ``temperature == 0``
    samples at temperature 1 (as ``corral.api`` does).  ``ids`` include EOS when
    ``finish_reason == "eos"``; ``logprob`` is defined as in :mod:`corral.api`.
    """
    cfg = SpeculativeConfig.coerce(config)
    if sampler is None:
        sampler = "sample" if temperature and temperature > 0 else "greedy"
    if sampler not in ("greedy", "sample"):
        raise ValueError(f"speculative decoding supports the 'greedy' and 'sample' samplers, not {sampler!r}")
    sampling = sampler == "sample"
    temp = float(temperature) if temperature and temperature > 0 else 1.0
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(int(seed))

    if isinstance(prompt_ids, torch.Tensor):
        prompt = [int(x) for x in prompt_ids.reshape(-1).tolist()]
    else:
        prompt = [int(x) for x in prompt_ids]
    if not prompt:
        raise ValueError("empty prompt")
    vocab = grammar.vocab
    if vocab is None:
        raise ValueError("the grammar needs a vocabulary (Grammar.with_vocabulary)")
    eos = frozenset(int(i) for i in vocab.eos_ids)
    device = _device(model)

    # drafters
    det_drafters: list[Any] = []
    recycle: RecycleDrafter | None = None
    lookup: LookupDrafter | None = None
    mdrafter: ModelDrafter | None = None
    for name in cfg.drafters:
        if name == "grammar":
            det_drafters.append(GrammarDrafter(vocab, tokenizer, cfg.backoff))
        elif name == "lookup":
            lookup = LookupDrafter(cfg.ngram_max, cfg.ngram_min, cfg.lookup_extra_ids)
            det_drafters.append(lookup)
        elif name == "recycle":
            recycle = RecycleDrafter(vocab.size, cfg.recycle_topk)
            det_drafters.append(recycle)
        elif name == "model":
            mdrafter = ModelDrafter(cfg.draft_model, cfg.draft_max)
        elif not isinstance(name, str):
            det_drafters.append(name)
    if lookup is not None:
        lookup.extend(prompt)
    rate: dict[str, float] = {}

    def ema_of(src: str) -> float:
        if src == FORCED:
            return 1.0
        return rate.get(src, cfg.initial_acceptance)

    matcher = grammar.matcher()
    max_rows = max(cfg.max_draft + cfg.max_forced, cfg.draft_max) + 2
    bitmask = torch.zeros((max_rows, vocab.n_words), dtype=torch.int32)
    use_ltk = _accepts_logits_to_keep(model)

    stats = SpecStats()
    T = stats.timings
    seq = list(prompt)
    out: list[int] = []
    cache: Any = None
    cached = 0  # seq[:cached] is in the KV cache
    total_lp = 0.0
    finish = FINISH_LENGTH
    t_start = time.perf_counter()

    def warped(row: torch.Tensor) -> torch.Tensor:
        return warp(row, temp, top_k, top_p)

    with torch.no_grad():
        while len(out) < max_new_tokens and not matcher.is_terminated():
            budget = max_new_tokens - len(out) - 1  # the correction / bonus token takes one slot
            # ---------------------------------------------------------------- draft
            t0 = time.perf_counter()
            walker = matcher.copy()
            chain = _Chain()
            t_fill = 0.0
            if mdrafter is not None:
                k = min(budget, cfg.draft_max)
                if sampling:
                    dist_fn = lambda m: warped(m).exp()  # noqa: E731
                    pick_fn = lambda q: int(torch.multinomial(q, 1, generator=generator)[0])  # noqa: E731
                else:
                    dist_fn = lambda m: torch.softmax(m, dim=-1)  # noqa: E731
                    pick_fn = lambda q: int(torch.argmax(q))  # noqa: E731
                toks, qs = mdrafter.draft(seq, walker, k, bitmask, mask_logits, dist_fn, pick_fn)
                chain.tokens, chain.qs = toks, qs
                chain.sources = [ModelDrafter.name] * len(toks)
                chain.terminated = walker.is_terminated()
            else:
                n_guess = 0
                n_forced = 0
                p_all = 1.0
                ctx = seq  # grows with the draft (copy on first append)
                copied = False
                while not walker.is_terminated() and len(chain.tokens) < budget:
                    room = min(budget - len(chain.tokens), max(cfg.max_forced - n_forced, cfg.max_draft - n_guess))
                    got: list[int] = []
                    src = ""
                    for d in det_drafters:
                        got, src = d.propose(ctx, walker, room)
                        if got:
                            break
                    if not got:
                        break
                    stop = False
                    for t in got:
                        if src == FORCED:
                            if n_forced >= cfg.max_forced:
                                stop = True
                                break
                        else:
                            if n_guess >= cfg.max_draft:
                                stop = True
                                break
                            if cfg.adaptive and n_guess >= cfg.min_draft and p_all * ema_of(src) < cfg.stop_threshold:
                                stop = True
                                break
                        row = len(chain.tokens)
                        tf = time.perf_counter()
                        walker.fill_next_token_bitmask(bitmask, row)
                        t_fill += time.perf_counter() - tf
                        if not walker.consume_token(t):
                            stop = True  # cut at the first token the grammar refuses
                            break
                        if not copied:
                            ctx = list(seq)
                            copied = True
                        ctx.append(t)
                        chain.tokens.append(t)
                        chain.sources.append(src)
                        if src == FORCED:
                            n_forced += 1
                        else:
                            n_guess += 1
                            p_all *= ema_of(src)
                        if walker.is_terminated() or len(chain.tokens) >= budget:
                            stop = True
                            break
                    if stop:
                        break
                chain.terminated = walker.is_terminated()
            k = len(chain.tokens)
            n_rows = k if chain.terminated else k + 1
            if not chain.terminated:
                tf = time.perf_counter()
                walker.fill_next_token_bitmask(bitmask, k)
                t_fill += time.perf_counter() - tf
            del walker
            t1 = time.perf_counter()
            T["draft"] += t1 - t0 - t_fill
            T["mask"] += t_fill

            # ---------------------------------------------------------------- target forward
            inputs = seq[cached:] + chain.tokens
            kw: dict[str, Any] = {}
            if use_ltk:
                kw["logits_to_keep"] = k + 1
            res, cache = forward_cached(model, torch.tensor([inputs], dtype=torch.long, device=device), cache, **kw)
            logits = res.logits[0, -(k + 1) :, :].float()[:n_rows]
            t2 = time.perf_counter()
            if stats.n_forwards == 0:
                T["prompt"] += t2 - t1
            else:
                T["forward"] += t2 - t1
            stats.n_forwards += 1

            masked = mask_logits(logits, bitmask[:n_rows])
            t3 = time.perf_counter()
            T["mask"] += t3 - t2

            # ---------------------------------------------------------------- verify
            emit: list[int] = []
            lp = 0.0
            a = 0  # accepted draft tokens
            if not sampling:
                am = torch.argmax(masked, dim=-1).tolist()
                while a < k and chain.tokens[a] == am[a]:
                    a += 1
                emit = chain.tokens[:a]
                if a < n_rows:
                    emit = emit + [int(am[a])]
                if emit:
                    rows = torch.log_softmax(masked[: len(emit)], dim=-1)
                    lp = float(rows.gather(1, torch.tensor(emit, dtype=torch.long).unsqueeze(1)).sum())
            elif chain.qs is None:
                for i in range(n_rows):
                    logp = warped(masked[i])
                    x = int(torch.multinomial(logp.exp(), 1, generator=generator)[0])
                    lp += float(logp[x])
                    emit.append(x)
                    if i < k and x == chain.tokens[i]:
                        a += 1
                        continue
                    break
            else:
                for i in range(n_rows):
                    logp = warped(masked[i])
                    p = logp.exp()
                    if i < k:
                        x = chain.tokens[i]
                        q = chain.qs[i]
                        u = float(torch.rand((), generator=generator))
                        px, qx = float(p[x]), float(q[x])
                        if qx > 0 and u * qx < px:  # u < min(1, p/q)
                            a += 1
                            emit.append(x)
                            lp += float(logp[x])
                            continue
                        resid = torch.clamp(p - q, min=0.0)
                        s = float(resid.sum())
                        dist = resid / s if s > 0 else p
                        y = int(torch.multinomial(dist, 1, generator=generator)[0])
                    else:
                        y = int(torch.multinomial(p, 1, generator=generator)[0])
                    emit.append(y)
                    lp += float(logp[y])
                    break
            total_lp += lp

            if recycle is not None:
                recycle.observe([seq[-1]] + chain.tokens, masked)
            for i, src in enumerate(chain.sources[: min(k, a + 1)]):
                ok = i < a
                stats.drafted[src] = stats.drafted.get(src, 0) + 1
                if ok:
                    stats.accepted[src] = stats.accepted.get(src, 0) + 1
                if src != FORCED:
                    rate[src] = (1 - cfg.ema) * ema_of(src) + cfg.ema * (1.0 if ok else 0.0)

            # ---------------------------------------------------------------- commit + crop
            taken = matcher.consume_tokens(emit)
            if taken != len(emit):
                raise GenerationError(
                    f"token {emit[taken]} passed verification but the matcher refused it (engine bug)",
                    partial_text=vocab.decode_bytes(out + emit[:taken]).decode("utf-8", "replace"),
                    finish_reason="error",
                )
            # seq + accepted draft are valid in the cache; the last emitted token is never in it
            keep = min(len(seq) + a, len(seq) + len(emit) - 1)
            cache = crop_cache(cache, keep)
            cached = keep
            seq.extend(emit)
            out.extend(emit)
            if lookup is not None:
                lookup.extend(emit)
            stats.n_tokens += len(emit)
            T["verify"] += time.perf_counter() - t3
            if cfg.on_round is not None:
                cfg.on_round(
                    {"seq": seq, "out": out, "cached": cached, "cache": cache, "matcher": matcher,
                     "draft": list(chain.tokens), "sources": list(chain.sources), "accepted": a, "emitted": list(emit)}
                )
            if emit and emit[-1] in eos:
                finish = FINISH_EOS
                break
    T["total"] = time.perf_counter() - t_start
    if matcher.is_terminated():
        finish = FINISH_EOS
    return out, finish, total_lp, stats
