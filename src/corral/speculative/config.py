"""Configuration of the speculative decoding loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_DRAFTERS: tuple[str, ...] = ("grammar", "lookup", "recycle")


@dataclass
class SpeculativeConfig:
    """How drafts are made and how long they get.

    ``drafters``: token sources tried in order at every draft position; names are
    ``"grammar"`` (forced tokens: singleton masks, then the grammar's forced bytes tokenized
    canonically), ``"lookup"`` (prompt lookup / n-grams over prompt + output), ``"recycle"``
    (token recycling: each token's recent top-k successors from the verification logits) and
    ``"model"`` (a draft model sharing the tokenizer, masked by the same grammar; needs
    ``draft_model``).  Any object with ``propose(seq, matcher, k) -> (tokens, source_name)``
    (deterministic; reads the matcher without changing it) is accepted as a custom drafter.  A ``"model"`` drafter excludes the others (its drafts are sampled, the
    others are deterministic) and is verified with the ``min(1, p/q)`` rule.

    Draft length: at most ``max_draft`` guessed tokens per target forward (tokens the grammar
    forces, i.e. singleton masks, are free and bounded by ``max_forced`` instead).  With
    ``adaptive=True`` the chain stops when the estimated probability that the whole chain is
    accepted (the product of each source's running acceptance rate) falls below
    ``stop_threshold`` (SpecDec++-style stopping); the rates are exponential moving averages
    with weight ``ema``, starting at ``initial_acceptance``.
    """

    drafters: tuple[str, ...] = DEFAULT_DRAFTERS
    max_draft: int = 8
    max_forced: int = 48
    adaptive: bool = True
    stop_threshold: float = 0.15
    min_draft: int = 1
    ema: float = 0.15
    initial_acceptance: float = 0.6
    # grammar drafter
    backoff: int = 1  # canonical tokens of the forced bytes withheld at the end
    # prompt lookup
    ngram_max: int = 4
    ngram_min: int = 1
    # token recycling
    recycle_topk: int = 8
    # draft model
    draft_model: Any = None
    draft_max: int = 6
    # extra text the n-gram drafter may copy from (e.g. the schema), as token ids
    lookup_extra_ids: list[int] = field(default_factory=list)
    # debugging / tests: called after every round with a dict of the loop's state
    on_round: Any = None

    def __post_init__(self) -> None:
        if isinstance(self.drafters, str):
            self.drafters = (self.drafters,)
        self.drafters = tuple(self.drafters)
        known = {"grammar", "lookup", "recycle", "model"}
        # objects with ``propose(seq, matcher, k) -> (tokens, source_name)`` are custom drafters
        bad = [d for d in self.drafters if isinstance(d, str) and d not in known]
        if bad:
            raise ValueError(f"unknown drafter(s) {bad}; known: {sorted(known)}")
        if "model" in self.drafters and self.draft_model is None:
            raise ValueError('the "model" drafter needs draft_model=')
        if self.draft_model is not None and "model" not in self.drafters:
            self.drafters = ("model",)
        if self.max_draft < 0 or self.max_forced < 0:
            raise ValueError("draft lengths must be >= 0")

    @classmethod
    def coerce(cls, value: Any) -> "SpeculativeConfig":
        """``True`` / ``None`` -> defaults; a dict -> keyword arguments; a config -> itself."""
        if value is None or value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (list, tuple, str)):
            return cls(drafters=tuple([value] if isinstance(value, str) else value))
        raise TypeError(f"speculative must be True, a SpeculativeConfig or a dict, not {type(value).__name__}")
