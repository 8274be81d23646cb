"""corral: structured output for language models.

Grammars (JSON Schema, Lark, GBNF, regex) compile into a token-level automaton
with precomputed vocabulary masks; matchers give each decoding step its mask.
"""

from __future__ import annotations

import logging
from typing import Any

from .automaton.grammar import Grammar, Matcher
from .errors import (
    BudgetError,
    CompileLimitError,
    CorralError,
    GenerationError,
    GrammarError,
    InvalidSchemaError,
    RegexError,
    SchemaTooLargeError,
    TokenizerError,
    UnsupportedSchemaError,
    ValidationError,
)
from .vocab import Vocabulary

logging.getLogger("corral").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Grammar",
    "Matcher",
    "Vocabulary",
    "LogitsProcessor",
    "generate",
    "generate_json",
    "GenerationResult",
    "smc",
    "ASApSampler",
    "SpeculativeConfig",
    "CorralError",
    "GrammarError",
    "RegexError",
    "SchemaTooLargeError",
    "UnsupportedSchemaError",
    "InvalidSchemaError",
    "TokenizerError",
    "BudgetError",
    "CompileLimitError",
    "GenerationError",
    "ValidationError",
]

# Names whose modules import transformers' generation machinery load on first use.
_LAZY = {
    "LogitsProcessor": ("corral.integrations.hf", "LogitsProcessor"),
    "generate": ("corral.api", "generate"),
    "generate_json": ("corral.api", "generate_json"),
    "GenerationResult": ("corral.api", "GenerationResult"),
    "smc": ("corral.sampling.smc", "smc"),
    "ASApSampler": ("corral.sampling.asap", "ASApSampler"),
    "SpeculativeConfig": ("corral.speculative.config", "SpeculativeConfig"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corral' has no attribute {name!r}")
