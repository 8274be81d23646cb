"""JSON Schema -> GrammarIR with honest semantics (see ``keywords.KEYWORDS`` for coverage).

``json_schema_to_ir(schema, *, strict=True, whitespace="compact", indent=2,
max_whitespace=4, any_order=False, resolver=None, format_assertion=True, max_depth=32,
default_draft=2020)`` (``default_draft``: 4, 6, 7, 2019 or 2020, used when ``$schema`` is absent).

Semantics in brief:

* A keyword corral cannot enforce exactly raises ``UnsupportedSchemaError`` (with the
  JSON pointer and keyword) unless ``strict=False``, where it is relaxed and reported
  in ``ir.meta["relaxed"]`` as ``{"pointer", "keyword", "what"}`` entries.
* Invalid schemas (wrong keyword types, dangling ``$ref``) raise ``InvalidSchemaError``.
* Numbers: the grammar emits exponent-free numbers wherever a numeric constraint
  applies (``minimum``, ``multipleOf``, ``enum`` numbers, ``integer``); unconstrained
  ``number`` also allows exponents. ``integer`` accepts integral texts like ``1.0``
  (JSON Schema draft 6+ semantics); ``const: 1`` accepts ``1``, ``1.0``, ``1.00`` ...
  (numeric equality), never ``1e0``.
* Strings: any JSON escape spelling of a valid string is accepted, except for finite string
  languages (``enum``/``const`` strings, up to 256 values), which are spelled as
  ``json.dumps(value, ensure_ascii=False)`` does.
* Objects: listed properties in schema order (``any_order=True``: any order, no
  duplicates), then other keys. Duplicate *additional* keys are not prevented.
* A schema that accepts no value at all (``false``, ``{"not": {}}``) compiles to a grammar
  with an empty language (no rules, ``ir.meta["empty"] = True``): it accepts nothing.
"""

from __future__ import annotations

from ...automaton.ir import GrammarIR
from ...errors import BudgetError, CompileLimitError, GrammarError, SchemaTooLargeError, UnsupportedSchemaError  # noqa: F401
from .compiler import Compiler
from .emit import Emitter
from .keywords import KEYWORDS, keyword_table_markdown

__all__ = ["json_schema_to_ir", "KEYWORDS", "keyword_table_markdown"]


def json_schema_to_ir(schema, *, strict: bool = True, whitespace: str = "compact", indent: int = 2,
                      max_whitespace: int = 4, any_order: bool = False, resolver=None,
                      format_assertion: bool = True, max_depth: int = 32, default_draft: int = 2020) -> GrammarIR:
    """Compile a JSON Schema (dict, bool, or JSON text) to a grammar of the valid JSON texts."""
    if isinstance(schema, (str, bytes)):
        import json

        from ...errors import InvalidSchemaError

        try:
            schema = json.loads(schema)
        except ValueError as e:
            raise InvalidSchemaError(f"schema is not JSON: {e}") from None
    try:
        comp = Compiler(schema, strict=strict, resolver=resolver, format_assertion=format_assertion,
                        default_draft=default_draft)
        em = Emitter(comp, whitespace=whitespace, indent=indent, max_whitespace=max_whitespace,
                     any_order=any_order, max_depth=max_depth)
        start = em.value(comp.root, 0)
        meta = {"relaxed": comp.relaxed, "whitespace": whitespace, "any_order": any_order}
        try:
            return em.b.build(start, "json_schema", meta)
        except GrammarError as e:
            if "empty" not in str(e):
                raise
            # The schema accepts no value: an exact grammar with an empty language (no rules).
            meta["empty"] = True
            return GrammarIR(terminals=(), terminal_names=(), nonterminal_names=("never",), rules=(), start=0,
                             source="json_schema", meta=meta)
    except (BudgetError, SchemaTooLargeError):
        raise
    except CompileLimitError as e:
        raise SchemaTooLargeError(f"too large to compile exactly: {e}", "#", None) from None
    except RecursionError:
        raise UnsupportedSchemaError("schema nesting too deep", "#", None) from None
