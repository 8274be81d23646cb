"""One error root for corral; every subclass also inherits the matching builtin."""

from __future__ import annotations


class CorralError(Exception):
    """Base class of every error corral raises on purpose."""


class GrammarError(CorralError, ValueError):
    """A grammar (Lark, GBNF, regex) is malformed or uses something corral cannot compile.

    ``where`` names the place (rule name, line:column, or JSON pointer) when known.
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{message} (at {where})" if where else message)


class RegexError(GrammarError):
    """A regular expression cannot be parsed or uses an unsupported feature."""


class UnsupportedSchemaError(GrammarError):
    """A JSON Schema keyword cannot be enforced exactly (strict mode)."""

    def __init__(self, message: str, pointer: str = "", keyword: str | None = None) -> None:
        self.pointer = pointer
        self.keyword = keyword
        super().__init__(message, where=pointer or "#")


class InvalidSchemaError(GrammarError):
    """The schema itself is not a valid JSON Schema (wrong keyword types, dangling $ref)."""

    def __init__(self, message: str, pointer: str = "") -> None:
        self.pointer = pointer
        super().__init__(message, where=pointer or "#")


class TokenizerError(CorralError, ValueError):
    """The tokenizer is of a kind corral cannot derive token bytes from."""


class CompileLimitError(CorralError, RuntimeError):
    """Compilation exceeded a configured budget (time, memory, automaton size, depth)."""


class BudgetError(CompileLimitError):
    """The time or memory budget of the whole compile (``CompileLimits``) is spent.

    Unlike a size limit on one part of a grammar, this ends the compile: no front end
    turns it into a relaxation or a per-keyword error.
    """


class SchemaTooLargeError(UnsupportedSchemaError, CompileLimitError):
    """A JSON Schema keyword would need an automaton or grammar past a size limit.

    Both an ``UnsupportedSchemaError`` (with the keyword's JSON pointer) and a
    ``CompileLimitError``, so either ``except`` clause sees it.
    """


class GenerationError(CorralError, RuntimeError):
    """Generation could not produce a complete sentence of the grammar.

    ``partial_text`` carries what was generated before the failure.
    """

    def __init__(self, message: str, partial_text: str = "", finish_reason: str = "") -> None:
        self.partial_text = partial_text
        self.finish_reason = finish_reason
        super().__init__(message)


class ValidationError(CorralError, ValueError):
    """Text does not belong to a grammar's language (``Grammar.check``)."""

    def __init__(self, message: str, offset: int = -1, context: str = "", expected: str = "") -> None:
        self.offset = offset
        self.context = context
        self.expected = expected
        super().__init__(message)
