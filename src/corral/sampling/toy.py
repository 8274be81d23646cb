"""A toy causal language model with the transformers call interface, for exact tests.

``ToyLM`` is a ``torch.nn.Module`` called like a Hugging Face causal LM::

    out = model(input_ids, past_key_values=cache, use_cache=True)
    out.logits            # float32 [batch, seq, V]: log-probabilities of the next token
    out.past_key_values   # a ToyCache (the token history; supports crop / reorder / repeat)

Its next-token distribution is a pure function of the whole context (prompt included), given
either by a table keyed on the context or on its last token, or by a callable.  Because every
distribution is known exactly, probabilities of whole sequences and conditionals on a finite
language can be enumerated (see :mod:`corral.sampling.exact`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from ..vocab import Vocabulary

__all__ = ["ToyLM", "ToyCache", "ToyTokenizer", "toy_vocabulary", "fair_coin_lm", "random_lm"]


class ToyCache:
    """The 'KV cache' of a :class:`ToyLM`: the token ids seen so far, one row per batch item.

    Implements the subset of ``transformers.Cache`` used by corral's samplers:
    ``get_seq_length``, ``crop(-k)``, ``reorder_cache``, ``batch_repeat_interleave``,
    ``batch_select_indices``.
    """

    def __init__(self, rows: list[list[int]] | None = None) -> None:
        self.rows: list[list[int]] = rows or []

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return len(self.rows[0]) if self.rows else 0

    def crop(self, tokens_to_remove: int) -> None:
        n = self.get_seq_length()
        keep = n + tokens_to_remove if tokens_to_remove < 0 else tokens_to_remove
        self.rows = [r[: max(0, keep)] for r in self.rows]

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        self.rows = [list(self.rows[int(i)]) for i in beam_idx.tolist()]

    batch_select_indices = reorder_cache

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.rows = [list(r) for r in self.rows for _ in range(repeats)]

    def __deepcopy__(self, memo: dict) -> "ToyCache":
        return ToyCache([list(r) for r in self.rows])


@dataclass
class ToyOutput:
    logits: torch.Tensor
    past_key_values: ToyCache | None = None


class ToyLM(torch.nn.Module):
    """Next-token log-probs from ``fn(context: tuple[int, ...]) -> np.ndarray[V]`` (log-probs or
    probabilities, see ``probs``).  ``calls`` counts forward positions evaluated.
    """

    def __init__(self, vocab_size: int, fn: Callable[[tuple[int, ...]], np.ndarray], *, probs: bool = True) -> None:
        super().__init__()
        self.vocab_size = int(vocab_size)
        self._fn = fn
        self._probs = probs
        self._memo: dict[tuple[int, ...], np.ndarray] = {}
        self.calls = 0
        self.config = type("ToyConfig", (), {"vocab_size": self.vocab_size, "is_encoder_decoder": False})()

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def from_table(
        cls,
        vocab_size: int,
        table: Mapping[tuple[int, ...], Sequence[float]],
        default: Sequence[float] | None = None,
        *,
        key: str = "prefix",
    ) -> "ToyLM":
        """Probabilities keyed on the whole context (``key="prefix"``) or its last token (``"last"``)."""
        if default is None:
            default = np.full(vocab_size, 1.0 / vocab_size)
        dflt = np.asarray(default, dtype=np.float64)
        tab = {tuple(k): np.asarray(v, dtype=np.float64) for k, v in table.items()}

        def fn(ctx: tuple[int, ...]) -> np.ndarray:
            k = ctx if key == "prefix" else ctx[-1:]
            return tab.get(k, dflt)

        return cls(vocab_size, fn, probs=True)

    def logprobs(self, context: Iterable[int]) -> np.ndarray:
        """Exact next-token log-probabilities (float64) after ``context``."""
        ctx = tuple(int(t) for t in context)
        lp = self._memo.get(ctx)
        if lp is None:
            v = np.asarray(self._fn(ctx), dtype=np.float64)
            if v.shape != (self.vocab_size,):
                raise ValueError(f"toy LM returned shape {v.shape}, expected ({self.vocab_size},)")
            if self._probs:
                with np.errstate(divide="ignore"):
                    lp = np.log(v / v.sum())
            else:
                lp = v - np.logaddexp.reduce(v)
            lp.setflags(write=False)
            self._memo[ctx] = lp
        return lp

    def forward(
        self,
        input_ids: torch.Tensor,
        past_key_values: ToyCache | None = None,
        use_cache: bool | None = True,
        attention_mask: torch.Tensor | None = None,
        **kwargs: object,
    ) -> ToyOutput:
        ids = input_ids.tolist()
        if past_key_values is None or not past_key_values.rows:
            past = ToyCache([[] for _ in ids])
        else:
            past = past_key_values
            if len(past.rows) != len(ids):
                raise ValueError(f"cache batch {len(past.rows)} != input batch {len(ids)}")
        out = np.empty((len(ids), len(ids[0]), self.vocab_size), dtype=np.float64)
        for b, row in enumerate(ids):
            ctx = past.rows[b]
            for s, t in enumerate(row):
                ctx.append(int(t))
                out[b, s] = self.logprobs(ctx)
                self.calls += 1
        return ToyOutput(torch.from_numpy(out), past if use_cache else None)


class ToyTokenizer:
    """Minimal tokenizer for a toy vocabulary: ``decode``, ``encode``, ``eos_token_id``, ``len``."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.vocab = vocab
        self.eos_token_id = vocab.eos_ids[0] if vocab.eos_ids else None

    def __len__(self) -> int:
        return self.vocab.size

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.vocab.decode_bytes(int(i) for i in ids).decode("utf-8", "replace")

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Greedy longest-match tokenisation (enough for prompts of a toy model)."""
        data = text.encode("utf-8")
        by = self.vocab.id_of_bytes
        out, i = [], 0
        longest = max((len(b) for b in by), default=1)
        while i < len(data):
            for n in range(min(longest, len(data) - i), 0, -1):
                if data[i : i + n] in by:
                    out.append(by[data[i : i + n]][0])
                    i += n
                    break
            else:
                raise ValueError(f"cannot tokenise byte {data[i:i+1]!r}")
        return out


def toy_vocabulary(tokens: Sequence[str | bytes], *, eos: bool = True, bos: bool = True) -> Vocabulary:
    """A vocabulary of ``tokens`` (ids 0..n-1) followed by EOS (id n) and BOS (id n+1, never text)."""
    tb: list[bytes | None] = [t.encode() if isinstance(t, str) else bytes(t) for t in tokens]
    eos_ids = []
    if eos:
        eos_ids.append(len(tb))
        tb.append(None)
    special = set(eos_ids)
    if bos:
        special.add(len(tb))
        tb.append(None)
    return Vocabulary(tb, eos_ids=eos_ids, special_ids=special)


def fair_coin_lm(p_eos: float = 0.1) -> tuple[ToyLM, Vocabulary]:
    """The GAD paper's model: tokens "0", "1" equally likely, EOS with probability ``p_eos``.

    Vocabulary: 0 -> "0", 1 -> "1", 2 -> EOS, 3 -> BOS (use ``[3]`` as the prompt).
    """
    vocab = toy_vocabulary(["0", "1"])
    probs = np.array([(1 - p_eos) / 2, (1 - p_eos) / 2, p_eos, 0.0])
    return ToyLM(vocab.size, lambda ctx: probs), vocab


def random_lm(vocab_size: int, seed: int = 0, *, concentration: float = 0.5, zero_ids: Iterable[int] = ()) -> ToyLM:
    """A model whose next-token distribution is an independent Dirichlet draw for every context.

    Deterministic in (seed, context).  ``zero_ids`` never get probability (e.g. a BOS id).
    """
    zero = list(zero_ids)

    def fn(ctx: tuple[int, ...]) -> np.ndarray:
        h = hashlib.blake2b(repr((seed, ctx)).encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(h, "little"))
        p = rng.dirichlet(np.full(vocab_size, concentration))
        p[zero] = 0.0
        return p + 1e-12 * (p > 0)

    return ToyLM(vocab_size, fn)
