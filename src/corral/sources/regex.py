"""Regex front end: ``regex_to_ir(pattern) -> GrammarIR`` (one terminal, ``start -> T``)."""

from __future__ import annotations

from ..automaton.ir import GrammarIR, IRBuilder

__all__ = ["regex_to_ir"]


def _compile_regex(pattern: str, flags: str = "", dialect: str = "python"):
    from ..automaton.regex import compile_regex
    from ..limits import check_count, check_deadline, current

    check_count("max_source_chars", len(pattern), "regex")
    check_deadline("regex compilation")
    from ..errors import CompileLimitError

    max_states = current().max_dfa_states
    try:
        return compile_regex(pattern, flags=flags, dialect=dialect, max_states=10**9 if max_states is None else max_states)
    except CompileLimitError as e:
        if "max_states" in str(e):
            raise CompileLimitError(f"max_dfa_states={max_states} exceeded: {e}") from None
        raise


def regex_to_ir(pattern: str, flags: str = "", dialect: str = "python") -> GrammarIR:
    """The grammar whose language is the (whole-string) language of ``pattern``.

    ``dialect`` is ``"python"`` (``re``) or ``"ecma"`` (ECMA-262, as in JSON Schema);
    errors are ``corral.errors.RegexError`` (a GrammarError).
    """
    dfa = _compile_regex(pattern, flags, dialect)
    b = IRBuilder()
    start = b.nonterminal("start")
    if dfa.is_empty:
        # Empty language: build() reports it as a GrammarError.
        return b.build(start, source="regex", meta={"pattern": pattern, "flags": flags, "dialect": dialect})
    t = b.terminal(dfa, "REGEX")
    b.rule(start, [t])
    return b.build(start, source="regex", meta={"pattern": pattern, "flags": flags, "dialect": dialect})
