"""Grammar front ends: each turns a source text into a ``GrammarIR``.

* ``lark_to_ir(text, start="start", import_paths=())`` - Lark grammars (scannerless language,
  the one of Lark's Earley parser with ``lexer="dynamic_complete"``).
* ``ebnf_to_ir(text, start="root")`` - GBNF (llama.cpp / transformers-CFG EBNF).
* ``regex_to_ir(pattern, flags="", dialect="python")`` - one regular expression.
"""

from __future__ import annotations

from .ebnf import ebnf_to_ir
from .lark import lark_to_ir
from .regex import regex_to_ir

__all__ = ["lark_to_ir", "ebnf_to_ir", "regex_to_ir"]
