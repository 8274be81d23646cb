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

**Twisted SMC** (``twist=``).  With a positive *twist* ``psi`` on prefixes (``psi(root) = 1``,
``psi(complete sequence) = 1``) a particle at prefix ``u`` draws the next token from

    q(t | u)  proportional to  P(t | u) psi(ut) 1[t allowed]

and multiplies its weight by ``S(u) / psi(u)`` with ``S(u) = sum_t P(t | u) psi(ut) 1[t allowed]``.
The weights telescope to ``P(x) / q(x)`` for every complete ``x``, so the particles stay properly
weighted and ``Z-hat`` stays unbiased for ``P(L)`` for *any* twist, provided ``psi`` is zero only
where no grammatical completion exists (all twists here are).  The closer ``psi(u)`` is to the
expected future grammaticality ``P(a completion of u is in L | u)``, the lower the weight
variance (with the exact one, every weight equals ``P(L)``).  Two twists:

* :class:`Lookahead` (``twist=k``): ``psi(u)`` = the model's probability that the next ``k``
  tokens after ``u`` are allowed (EOS ending it early counts as allowed).  Computed exactly from
  model evaluations of the candidate continuations, batched through a copy of the KV cache
  (``ParticleLM.fork``); optionally only for the ``top_k`` most probable candidates
  (``psi = 1`` for the others: still unbiased).  Stateless.
* an :class:`~corral.sampling.ASApSampler` (``twist=sampler``): ``psi(u)`` = its trie's upper
  bound ``EFG~(u)`` (1 for unexplored prefixes).  The trie is read-only during a run and
  afterwards extended with every particle's path (with the model probabilities seen on it), so
  the twist **learns across calls**: repeated ``smc`` calls with the same sampler (and its own
  ``sample`` calls) tighten it towards the exact expected future grammaticality.

A non-EOS token that would reach ``max_new_tokens`` gets ``psi = 0`` (the target excludes it).
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

__all__ = ["SMCResult", "Lookahead", "smc"]


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
    twist: str = "none"
    lookahead_calls: int = 0  # batched lookahead forwards (ParticleLM.fork)
    lookahead_rows: int = 0  # continuations evaluated by them

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
    __slots__ = ("tokens", "matcher", "logw", "logp", "done", "finish", "checks", "psi", "node", "trail")

    def __init__(self, matcher: Any) -> None:
        self.tokens: list[int] = []
        self.matcher = matcher
        self.logw = 0.0
        self.logp = 0.0
        self.done = False
        self.finish = ""
        self.checks = 0
        self.psi = 1.0  # twist of the current prefix (the root's is 1)
        self.node: Any = None  # trie node of the current prefix (trie twist; None: unexplored)
        self.trail: list[tuple[np.ndarray, np.ndarray]] = []  # (allowed ids, P) per step (trie twist)

    def clone(self) -> "_Particle":
        c = _Particle(self.matcher.copy())
        c.tokens = list(self.tokens)
        c.logw, c.logp, c.done, c.finish, c.checks = self.logw, self.logp, self.done, self.finish, self.checks
        c.psi, c.node, c.trail = self.psi, self.node, list(self.trail)
        return c


class Lookahead:
    """The lookahead twist: ``psi(u)`` = the model's probability that the next ``depth`` tokens
    after ``u`` stay in the grammar (an EOS the grammar accepts ends a path early and counts).

    ``top_k``: evaluate only the ``top_k`` most probable allowed candidates of each particle
    (``psi = 1`` for the others; unbiased either way).  Cost per step and particle: one batched
    forward per lookahead level, of (number of candidates) x (their allowed continuations, for
    ``depth >= 2``) rows, plus one mask per evaluated prefix.
    """

    def __init__(self, depth: int = 1, top_k: int | None = None) -> None:
        if int(depth) < 1:
            raise ValueError("Lookahead depth must be >= 1")
        if top_k is not None and int(top_k) < 1:
            raise ValueError("top_k must be >= 1 (or None: every allowed candidate)")
        self.depth = int(depth)
        self.top_k = None if top_k is None else int(top_k)

    def __repr__(self) -> str:
        return f"Lookahead(depth={self.depth}, top_k={self.top_k})"


class _LNode:
    __slots__ = ("row", "path", "matcher", "length", "key", "kids", "const", "psi")

    def __init__(self, row: int, path: list[int], matcher: Any, length: int, key: tuple[int, ...]) -> None:
        self.row, self.path, self.matcher, self.length, self.key = row, path, matcher, length, key
        self.kids: list[tuple[float, "_LNode"]] = []  # (P(t|w), child to evaluate)
        self.const = 0.0  # sum of P(t|w) psi(wt) over the children whose psi is known
        self.psi = 1.0


class _LookMemo:
    """Per-run memo of the lookahead, keyed by the generated prefix: its allowed ids and their
    probabilities, and ``psi_d`` values (particles share prefixes, e.g. after resampling)."""

    def __init__(self) -> None:
        self.nodes: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        self.psi: dict[tuple[tuple[int, ...], int], float] = {}


def _lookahead_psi(
    lm: ParticleLM, nodes: list[_LNode], depth: int, eos: set[int], max_new_tokens: int, memo: _LookMemo
) -> None:
    """Fill ``node.psi`` = ``psi_depth(node prefix)`` for nodes one token below particles:
    ``psi_d(w) = sum_{t allowed} P(t|w) psi_{d-1}(wt)``, ``psi_0 = 1``, EOS children 1 and
    children reaching ``max_new_tokens`` without EOS 0.  One batched fork per level."""
    eos_arr = np.array(sorted(eos), dtype=np.int64)
    level = []
    for nd in nodes:
        v = memo.psi.get((nd.key, depth))
        if v is None:
            level.append(nd)
        else:
            nd.psi = v
    levels: list[list[_LNode]] = []
    d = depth
    while level:
        levels.append(level)
        need: dict[tuple[int, ...], _LNode] = {}
        for nd in level:
            if nd.key not in memo.nodes:
                need.setdefault(nd.key, nd)
        if need:
            todo = list(need.values())
            logps = lm.fork([nd.row for nd in todo], [nd.path for nd in todo])
            for nd, lp in zip(todo, logps):
                ids = allowed_ids(nd.matcher)
                ids = ids[ids < lp.shape[0]]
                memo.nodes[nd.key] = (ids, np.exp(lp[ids]))
        nxt: list[_LNode] = []
        for nd in level:
            ids, pa = memo.nodes[nd.key]
            fac = np.ones(len(ids))  # children whose twist is fixed: EOS 1, cut by the length 0
            is_eos = np.isin(ids, eos_arr)
            if nd.length + 1 >= max_new_tokens:
                fac[~is_eos] = 0.0
            if d == 1:  # psi_0 = 1 for every child
                nd.const = float(np.dot(pa, fac))
                continue
            open_ = (~is_eos) & (fac > 0.0) & (pa > 0.0)
            nd.const = float(np.dot(pa[~open_], fac[~open_]))
            for t, pt in zip(ids[open_].tolist(), pa[open_].tolist()):
                key = nd.key + (t,)
                v = memo.psi.get((key, d - 1))
                if v is not None:
                    nd.const += pt * v
                    continue
                m2 = nd.matcher.copy()
                if not m2.consume_token(t):
                    raise AssertionError("mask allowed a token the matcher refused")
                kid = _LNode(nd.row, nd.path + [t], m2, nd.length + 1, key)
                nd.kids.append((pt, kid))
                nxt.append(kid)
        level = nxt
        d -= 1
    for j in range(len(levels) - 1, -1, -1):
        for nd in levels[j]:
            nd.psi = nd.const + math.fsum(v * kid.psi for v, kid in nd.kids)
            memo.psi[(nd.key, depth - j)] = nd.psi


def _trie_update(trie: Any, parts: list["_Particle"], eos: set[int]) -> None:
    """Add the particles' paths to an ASAp trie (expanding nodes with the model probabilities
    the particles saw) and recompute its upper bounds bottom-up along each path."""
    from .asap import _Node

    for p in parts:
        node, visited = trie.root, [trie.root]
        for j, (ids, pa) in enumerate(p.trail):
            if node.ids is None:
                node.ids, node.p = ids, pa
                node.efg = float(pa.sum()) if len(ids) else 0.0
            if j >= len(p.tokens):
                break  # the particle died here (no allowed continuation with positive twist)
            t = p.tokens[j]
            kid = node.kids.get(t)
            if kid is None:
                slot = int(np.searchsorted(node.ids, t))
                if slot >= len(node.ids) or node.ids[slot] != t:
                    break  # cannot happen: the token was drawn from these ids
                kid = node.kids[t] = _Node(t, slot)
                trie.n_nodes += 1
            if t in eos:
                kid.ids, kid.p, kid.efg = np.zeros(0, np.int64), np.zeros(0), 1.0
                break
            node = kid
            visited.append(node)
        for v in reversed(visited):
            if v.ids is not None:
                v.efg = float(v.weights().sum()) if len(v.ids) else 0.0


def _systematic(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: ancestor indices with E[copies of i] = n w_i, less variance than
    multinomial draws (one uniform shared by n evenly spaced points)."""
    n = w.shape[0]
    points = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(w), points, side="right"), n - 1)


def _draw(w: np.ndarray, z: float, rng: np.random.Generator) -> int:
    """An index drawn with probability ``w[i] / z`` (``z = w.sum() > 0``), never one of weight 0."""
    i = min(int(np.searchsorted(np.cumsum(w), rng.random() * z, side="right")), len(w) - 1)
    while w[i] <= 0.0:
        i -= 1
    return i


def _masked_step(logp: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> AWRSStep:
    ids = ids[ids < logp.shape[0]]
    pa = np.exp(logp[ids])
    z = float(pa.sum())
    if z <= 0.0:
        return AWRSStep(-1, -math.inf, 0, True)
    return AWRSStep(int(ids[_draw(pa, z, rng)]), math.log(z), 0, True)


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
    twist: Any = None,
) -> SMCResult:
    """Run SMC with AWRS proposals (or twisted proposals); see the module docstring.

    ``prompt``: text / chat messages (encoded like ``corral.generate``) or token ids.
    ``ess_threshold``: resample when ESS < ``ess_threshold * n_particles`` (0: never, 1: always).
    ``proposal``: ``"awrs"`` (few single-token checks, estimated local weights; where the
    state's mask is already cached, the ``"mask"`` step) or ``"mask"`` (the full mask each step:
    same proposal distribution, exact local weights, less variance).
    ``twist``: ``None`` / ``0`` (default: locally masked proposals, as above); an int ``k >= 1``
    or a :class:`Lookahead` (the ``k``-token lookahead twist); or an
    :class:`~corral.sampling.ASApSampler` for the same model, grammar, prompt and temperature
    (with ``max_new_tokens`` at least this one's) whose trie is the twist and is extended with
    this run's particles afterwards (it learns across calls).  Twisted steps use the full mask.
    """
    if proposal not in ("awrs", "mask"):
        raise ValueError(f"proposal must be 'awrs' or 'mask', not {proposal!r}")
    look, trie = _resolve_twist(twist)
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
    prompt_ids = _encode(tokenizer, prompt, chat)
    if trie is not None:
        _check_trie(trie, vocab, prompt_ids, temperature, max_new_tokens)
    lm = ParticleLM(model, prompt_ids, temperature=temperature)
    logps = lm.start(n)
    parts = [_Particle(grammar.matcher()) for _ in range(n)]
    if trie is not None:
        for p in parts:
            p.node = trie.root
    finished: list[_Particle] = []  # every particle that finished (for the trie update)
    twisted = look is not None or trie is not None
    memo = _LookMemo()
    rows = list(range(n))  # rows[i]: cache row of live particle i (None when finished)
    n_resamples, ess_hist, checks, steps = 0, [], 0, 0
    t_lm = time.perf_counter() - t0
    t_twist = 0.0
    for _ in range(max_new_tokens):
        live = [i for i, p in enumerate(parts) if not p.done]
        if not live:
            break
        if twisted:
            tl = time.perf_counter()
            _twisted_round(parts, live, rows, logps, lm, look, trie, eos, max_new_tokens, rng, memo)
            t_twist += time.perf_counter() - tl
            steps += len(live)
            finished.extend(parts[i] for i in live if parts[i].done)
            live = []
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
            finished.append(p)
    if trie is not None:
        _trie_update(trie, finished, eos)
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
        {"model": t_lm, "twist": t_twist, "total": total} if twisted else {"model": t_lm, "total": total},
        "none" if not twisted else (repr(look) if look is not None else "asap-trie"),
        lm.fork_calls,
        lm.fork_rows,
    )


def _resolve_twist(twist: Any) -> tuple[Lookahead | None, Any]:
    from .asap import ASApSampler

    if twist is None or twist is False or (isinstance(twist, int) and not isinstance(twist, bool) and twist == 0):
        return None, None
    if isinstance(twist, Lookahead):
        return twist, None
    if isinstance(twist, int) and not isinstance(twist, bool):
        return Lookahead(twist), None
    if isinstance(twist, ASApSampler):
        return None, twist
    raise ValueError(f"twist must be None, an int lookahead depth, a Lookahead or an ASApSampler, not {twist!r}")


def _check_trie(trie: Any, vocab: Any, prompt_ids: list[int], temperature: float, max_new_tokens: int) -> None:
    """The trie's numbers must be about the same conditional (else its zeros could be wrong)."""
    if trie.vocab.fingerprint != vocab.fingerprint:
        raise ValueError("twist: the ASAp sampler has a different vocabulary")
    if list(trie.prompt_ids) != list(prompt_ids):
        raise ValueError("twist: the ASAp sampler has a different prompt")
    if float(trie.temperature) != float(temperature):
        raise ValueError("twist: the ASAp sampler has a different temperature")
    if trie.max_new_tokens < max_new_tokens:
        raise ValueError("twist: the ASAp sampler's max_new_tokens is smaller than this run's")


def _twisted_round(
    parts: list[_Particle],
    live: list[int],
    rows: list[Any],
    logps: np.ndarray,
    lm: ParticleLM,
    look: Lookahead | None,
    trie: Any,
    eos: set[int],
    max_new_tokens: int,
    rng: np.random.Generator,
    memo: _LookMemo,
) -> None:
    """One twisted step of every live particle: q(t|u) ~ P(t|u) psi(ut) 1[allowed], weight
    S(u) / psi(u)."""
    eos_arr = np.array(sorted(eos), dtype=np.int64)
    cand: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    pending: list[tuple[int, int, _LNode]] = []  # (particle, index into its ids, lookahead node)
    for i in live:
        p = parts[i]
        logp = logps[rows[i]]
        ids = allowed_ids(p.matcher)
        ids = ids[ids < logp.shape[0]]
        pa = np.exp(logp[ids])
        is_eos = np.isin(ids, eos_arr)
        psi = np.ones(len(ids))
        if len(p.tokens) + 1 >= max_new_tokens:
            psi[~is_eos] = 0.0
        if trie is not None:
            p.trail.append((ids, pa))
            if p.node is not None and p.node.kids:
                for t, kid in p.node.kids.items():
                    j = int(np.searchsorted(ids, t))
                    if j < len(ids) and ids[j] == t and psi[j] > 0.0 and not is_eos[j]:
                        psi[j] = kid.efg
        if look is not None:
            idx = np.flatnonzero((psi > 0.0) & ~is_eos & (pa > 0.0))
            if look.top_k is not None and len(idx) > look.top_k:
                idx = idx[np.argsort(-pa[idx], kind="stable")[: look.top_k]]
            for j in idx.tolist():
                m2 = p.matcher.copy()
                if not m2.consume_token(int(ids[j])):
                    raise AssertionError("mask allowed a token the matcher refused")
                t = int(ids[j])
                pending.append((i, j, _LNode(rows[i], [t], m2, len(p.tokens) + 1, (*p.tokens, t))))
        cand.append((i, ids, pa, psi))
    if pending:
        _lookahead_psi(lm, [nd for _, _, nd in pending], look.depth, eos, max_new_tokens, memo)  # type: ignore[union-attr]
        by_particle = {i: psi for i, _, _, psi in cand}
        for i, j, nd in pending:
            by_particle[i][j] = nd.psi
    for i, ids, pa, psi in cand:
        p = parts[i]
        w = pa * psi
        z = float(w.sum())
        if not z > 0.0:
            p.logw, p.done, p.finish = -math.inf, True, "dead_end"
            continue
        k = _draw(w, z, rng)
        t = int(ids[k])
        p.logw += math.log(z) - math.log(p.psi)
        p.psi = float(psi[k])
        p.logp += float(logps[rows[i]][t])
        p.tokens.append(t)
        if trie is not None:
            p.node = p.node.kids.get(t) if p.node is not None else None
        if t in eos:
            p.done, p.finish = True, "eos"
            continue
        p.matcher.consume_token(t)
