"""ASAp: adaptive sampling with approximate expected futures (Park et al., "Grammar-Aligned
Decoding", NeurIPS 2024).

The sampler keeps a trie of every prefix it has explored.  A node ``u`` stores the model's
next-token probabilities ``P(t | u)`` over the tokens the grammar allows after ``u`` and, for
each explored child, that child's EFG estimate.  The expected future grammaticality
``EFG(u) = P(a completion of u is in L | u)`` is over-approximated by

    EFG~(u) = sum_{t allowed} P(t | u) * EFG~(ut),   EFG~(u EOS) = 1,  EFG~(unexplored) = 1,

so an unexplored allowed token counts as if all its continuations were grammatical, a
disallowed one as 0.  Each sample draws ``t`` with probability ``P(t|u) EFG~(ut) / EFG~(u)``
(the first sample is exactly GCD); afterwards the nodes on the sampled path are recomputed
bottom-up.  As exploration proceeds the estimates decrease to the true EFG and the sampling
distribution converges to ``P(x | x in L)``; ``EFG~(root)`` is an upper bound on ``P(L)``.

Sequences longer than ``max_new_tokens`` (EOS included, as in ``generate`` and the other samplers)
are treated as ungrammatical, so the target is the conditional on ``L`` restricted to that length.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .base import Sample, allowed_ids, decode_text, make_rng
from .lm import PrefixLM, as_prompt_ids

__all__ = ["ASApSampler"]

_FORMAT = "corral-asap-trie-v2"  # v2: EOS counts towards max_new_tokens


class _Node:
    __slots__ = ("ids", "p", "kids", "slot", "efg", "tid")

    def __init__(self, tid: int = -1, slot: int = -1) -> None:
        self.tid = tid
        self.slot = slot  # index of this node's token in the parent's ``ids``
        self.ids: np.ndarray | None = None  # allowed token ids (None: not expanded yet)
        self.p: np.ndarray | None = None  # P(t | u) of those tokens (float64)
        self.kids: dict[int, _Node] = {}
        self.efg = 1.0

    def weights(self) -> np.ndarray:
        w = self.p.copy()  # type: ignore[union-attr]
        for k in self.kids.values():
            w[k.slot] *= k.efg
        return w


class ASApSampler:
    """``ASApSampler(model, tokenizer, grammar, prompt)``; ``.sample(n)`` -> list of :class:`Sample`.

    ``prompt``: text / chat messages (encoded with ``tokenizer`` like ``corral.generate``) or
    token ids.  The trie persists across calls, so later samples are more faithful;
    ``estimate_pl`` is the current upper bound ``EFG~(root)`` on ``P(L)``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        grammar: Any,
        prompt: Any,
        *,
        max_new_tokens: int = 64,
        temperature: float = 1.0,
        seed: Any = None,
        chat: bool | None = None,
    ) -> None:
        if grammar.vocab is None:
            if tokenizer is None:
                raise ValueError("the grammar needs a vocabulary (compile it with the model's tokenizer)")
            grammar = grammar.with_vocabulary(tokenizer)
        self.grammar = grammar
        self.vocab = grammar.vocab
        self.prompt_ids = _encode(tokenizer, prompt, chat)
        self.lm = PrefixLM(model, self.prompt_ids, temperature=temperature)
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.rng = make_rng(seed)
        self.eos = set(self.vocab.eos_ids)
        self.root = _Node()
        self.n_samples = 0
        self.n_failed = 0
        self.n_nodes = 1

    # -- sampling ----------------------------------------------------------------------------
    @property
    def estimate_pl(self) -> float:
        """Upper bound on P(L) from the trie (tight once the language is fully explored)."""
        return self.root.efg

    def _expand(self, node: _Node, path: list[int], m: Any) -> None:
        ids = allowed_ids(m)
        if len(path) + 1 >= self.max_new_tokens:  # the last token allowed must be EOS (it counts, as in generate)
            ids = np.array([t for t in ids.tolist() if t in self.eos], dtype=np.int64)
        if len(ids) == 0:
            node.ids, node.p, node.efg = ids, np.zeros(0), 0.0
            return
        logp = self.lm.logprobs(path)
        ids = ids[ids < logp.shape[0]]
        node.ids = ids
        node.p = np.exp(logp[ids])
        node.efg = float(node.p.sum())

    def sample_one(self, max_attempts: int = 1000) -> Sample:
        """One sample (retrying when a path dies: the dead end is recorded and never revisited)."""
        for _ in range(max_attempts):
            s = self._attempt()
            if s is not None:
                self.n_samples += 1
                return s
            self.n_failed += 1
            if self.root.efg <= 0.0:
                break
        raise RuntimeError("ASAp found no grammatical sequence within max_new_tokens")

    def _attempt(self) -> Sample | None:
        node, path, visited = self.root, [], [self.root]
        m = self.grammar.matcher()
        lp = lq = 0.0
        ok = False
        checks = 0
        while True:
            if node.ids is None:
                self._expand(node, path, m)
                checks += 1
            if node.efg <= 0.0 or len(node.ids) == 0:
                node.efg = 0.0
                break
            w = node.weights()
            z = float(w.sum())
            if z <= 0.0:
                node.efg = 0.0
                break
            i = int(np.searchsorted(np.cumsum(w), self.rng.random() * z, side="right"))
            i = min(i, len(w) - 1)
            while w[i] <= 0.0:  # guard against landing on a zero-weight slot by rounding
                i -= 1
            t = int(node.ids[i])
            lp += math.log(node.p[i])
            lq += math.log(w[i] / z)
            path.append(t)
            child = node.kids.get(t)
            if child is None:
                child = node.kids[t] = _Node(t, i)
                self.n_nodes += 1
            if t in self.eos:
                child.ids, child.p, child.efg = np.zeros(0, np.int64), np.zeros(0), 1.0
                ok = True
                break
            if not m.consume_token(t):
                raise AssertionError("mask allowed a token the matcher refused")
            node = child
            visited.append(node)
        # bottom-up update of the over-approximation along the path
        for v in reversed(visited):
            v.efg = float(v.weights().sum()) if v.ids is not None and len(v.ids) else 0.0
        if not ok:
            return None
        return Sample(
            path,
            decode_text(self.vocab, path),
            lp,
            log_weight=0.0,
            proposal_logprob=lq,
            complete=True,
            finish_reason="eos",
            n_checks=checks,
            n_steps=len(path),
            info={"estimate_pl": self.root.efg},
        )

    def sample(self, n: int = 1) -> list[Sample]:
        return [self.sample_one() for _ in range(int(n))]

    # -- persistence -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the trie (and what it depends on) to an ``.npz`` file (no pickle)."""
        parents, tids, slots, efgs, sizes = [], [], [], [], []
        all_ids, all_p = [], []
        order: list[tuple[_Node, int]] = [(self.root, -1)]
        k = 0
        while k < len(order):
            node, parent = order[k]
            parents.append(parent)
            tids.append(node.tid)
            slots.append(node.slot)
            efgs.append(node.efg)
            if node.ids is None:
                sizes.append(-1)
            else:
                sizes.append(len(node.ids))
                all_ids.append(node.ids.astype(np.int64))
                all_p.append(node.p.astype(np.float64))
            for kid in node.kids.values():
                order.append((kid, k))
            k += 1
        meta = np.array(
            [_FORMAT, self.vocab.fingerprint, repr(self.prompt_ids), repr(self.temperature), str(self.max_new_tokens)]
        )
        np.savez_compressed(
            path,
            meta=meta,
            parents=np.array(parents, np.int64),
            tids=np.array(tids, np.int64),
            slots=np.array(slots, np.int64),
            efgs=np.array(efgs, np.float64),
            sizes=np.array(sizes, np.int64),
            ids=np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64),
            p=np.concatenate(all_p) if all_p else np.zeros(0),
            counts=np.array([self.n_samples, self.n_failed], np.int64),
        )

    @classmethod
    def load(
        cls, path: str | Path, model: Any, tokenizer: Any, grammar: Any, prompt: Any, **kw: Any
    ) -> "ASApSampler":
        """Rebuild a sampler from :meth:`save`; the vocabulary, prompt, temperature and
        ``max_new_tokens`` must match the saved ones (the trie's numbers depend on them)."""
        self = cls(model, tokenizer, grammar, prompt, **kw)
        with np.load(path, allow_pickle=False) as f:
            meta = [str(x) for x in f["meta"]]
            if meta[0] != _FORMAT:
                raise ValueError(f"{path}: not an ASAp trie file")
            expect = [self.vocab.fingerprint, repr(self.prompt_ids), repr(self.temperature), str(self.max_new_tokens)]
            names = ["vocabulary", "prompt", "temperature", "max_new_tokens"]
            for name, a, b in zip(names, meta[1:], expect):
                if a != b:
                    raise ValueError(f"{path}: saved trie has a different {name}")
            parents, tids, slots, efgs, sizes = (f[k] for k in ("parents", "tids", "slots", "efgs", "sizes"))
            ids, p = f["ids"], f["p"]
            counts = f["counts"]
        nodes: list[_Node] = []
        off = 0
        for j in range(len(parents)):
            node = _Node(int(tids[j]), int(slots[j]))
            node.efg = float(efgs[j])
            if sizes[j] >= 0:
                n = int(sizes[j])
                node.ids, node.p = ids[off : off + n].copy(), p[off : off + n].copy()
                off += n
            if parents[j] >= 0:
                nodes[int(parents[j])].kids[node.tid] = node
            nodes.append(node)
        self.root = nodes[0]
        self.n_nodes = len(nodes)
        self.n_samples, self.n_failed = int(counts[0]), int(counts[1])
        return self


def _encode(tokenizer: Any, prompt: Any, chat: bool | None) -> list[int]:
    if isinstance(prompt, (str, list)) and not (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
        if isinstance(prompt, list) and not prompt:
            raise ValueError("empty prompt")
        from ..api import encode_prompt

        return as_prompt_ids(encode_prompt(tokenizer, prompt, chat))
    return as_prompt_ids(prompt)
