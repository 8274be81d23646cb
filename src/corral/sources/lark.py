r"""Lark front end: ``lark_to_ir(text) -> GrammarIR``.

The grammar text is read by Lark itself (``lark.Lark(..., parser="earley",
lexer="dynamic_complete")``), so everything Lark's grammar language offers works:
``%import common.X`` (and ``import_paths``), templates, ``~ n..m`` repetition, ``?rule``,
``_rule``, ``[x]``, aliases, ``%override`` / ``%extend``, ``%ignore``. We then read the
compiled, EBNF-expanded rules and the terminal definitions.

Language: the scannerless one, the language Lark's Earley parser accepts with
``lexer="dynamic_complete"``: a sentence is a concatenation of strings, one per terminal
occurrence of a derivation, each in its terminal's regex language, with any number of
``%ignore`` terminals between and around them. There is no longest-match tokenisation, so
features that only steer a standard lexer (terminal priorities, rule priorities, the order
of terminals) do not change the language and are ignored.

Known corner cases where Lark's Earley scanner accepts less than this language (its
scanner takes the regex's first match at a position and that match's prefixes, and takes
only the longest match of an ``%ignore`` terminal): a lazy or alternation-ordered regex
whose longer matches are never tried (``/".*?"/`` never spans an inner quote under Lark;
here it may), and an ignored terminal that could stop early and let a following token start
inside it (a ``%ignore``'d ``/#[^\n]*/`` comment followed by more text on the same line).
Lark's ``common.ESCAPED_STRING`` (lazy body + lookbehind) is rewritten to its exact
lookaround-free equivalent under Lark's scanner, ``"(?:[^"\\\n]|\\.)*"``.

Terminals: a string (``"abc"``) becomes a literal (``"abc"i`` a case-insensitive regex);
a regex (``/.../flags``) is compiled with ``corral.automaton.regex.compile_regex`` in the
Python dialect. One IR terminal per Lark terminal (equal languages are shared).

Errors (all ``corral.errors.GrammarError``): a malformed grammar (Lark's message, with
line and column when Lark gives them), a ``%declare``'d terminal used without a
definition, a regex that cannot be compiled exactly (e.g. lookaround or backreferences:
the message names the terminal), an empty language.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..automaton.ir import GrammarIR, IRBuilder
from ..errors import GrammarError

__all__ = ["lark_to_ir", "load_lark"]


def _compile_regex(pattern: str, flags: str = ""):
    """Indirection so tests can substitute a stand-in while the regex compiler is absent."""
    from ..automaton.regex import compile_regex
    from ..limits import check_deadline, current

    check_deadline("Lark terminal compilation")
    max_states = current().max_dfa_states
    return compile_regex(pattern, flags=flags, dialect="python", max_states=10**9 if max_states is None else max_states)


def load_lark(text: str, *, start: str = "start", import_paths: Sequence = ()):
    """Let Lark read ``text``; a ``lark.Lark`` (Earley, dynamic_complete). Errors -> GrammarError."""
    import lark
    from lark.exceptions import GrammarError as LarkGrammarError
    from lark.exceptions import LarkError, UnexpectedInput

    try:
        return lark.Lark(
            text,
            parser="earley",
            lexer="dynamic_complete",
            start=start,
            keep_all_tokens=True,
            import_paths=list(import_paths),
        )
    except UnexpectedInput as e:
        line, col = getattr(e, "line", None), getattr(e, "column", None)
        where = f"line {line}, column {col}" if line not in (None, -1) else None
        raise GrammarError(f"Lark grammar syntax error: {_first_line(e)}", where) from e
    except (LarkGrammarError, LarkError) as e:
        raise GrammarError(f"Lark grammar error: {_first_line(e, all_lines=True)}", _where_from_message(str(e))) from e
    except (ValueError, KeyError, IndexError, AssertionError, re.error, OSError) as e:
        raise GrammarError(f"Lark could not load the grammar: {type(e).__name__}: {e}") from e


def _first_line(e: BaseException, all_lines: bool = False) -> str:
    s = str(e).strip()
    if all_lines:
        return " ".join(x.strip() for x in s.splitlines() if x.strip())[:2000]
    return s.splitlines()[0] if s else type(e).__name__


def _where_from_message(msg: str) -> str | None:
    m = re.search(r"[Ll]ine (\d+)(?:,? col(?:umn)? (\d+))?", msg)
    if not m:
        return None
    return f"line {m.group(1)}" + (f", column {m.group(2)}" if m.group(2) else "")


# Lark's common.lark writes ESCAPED_STRING as  "\"" /.*?(?<!\\)(\\\\)*?/ "\"" : a lazy
# body followed by a lookbehind. Under Lark's Earley scanner (first match at a position,
# then its prefixes) the token ends at the first delimiter preceded by an even number of
# backslashes, which is the lookaround-free  D(?:[^D\\\n]|\\.)*D .
_LAZY_ESCAPED = re.compile(r"""(["'])\.\*\?\(\?<!\\\\\)\(\\\\\\\\\)\*\?\1""")


def _rewrite_known_lookarounds(pattern: str, flags: str) -> str:
    def repl(m: re.Match) -> str:
        d = m.group(1)
        if "s" in flags:
            return f"{d}(?:[^{d}\\\\]|\\\\[\\s\\S])*{d}"
        return f"{d}(?:[^{d}\\\\\\n]|\\\\.)*{d}"

    return _LAZY_ESCAPED.sub(repl, pattern)


def _terminal_dfa(tdef):
    """The ByteDFA of one Lark TerminalDef."""
    from lark.lexer import PatternRE, PatternStr

    pat = tdef.pattern
    flags = "".join(sorted(pat.flags or ()))
    if isinstance(pat, PatternStr):
        if "i" in flags:
            return _compile_regex(re.escape(pat.value), flags)
        from .ebnf import literal_dfa

        data = pat.value.encode("utf-8")
        if not data:
            return None  # the empty string: handled by the caller
        return literal_dfa(data)
    if isinstance(pat, PatternRE):
        return _compile_regex(_rewrite_known_lookarounds(pat.value, flags), flags)
    raise GrammarError(f"terminal {tdef.name} has an unknown pattern type {type(pat).__name__}")


def lark_to_ir(text: str, *, start: str = "start", import_paths: Sequence = ()) -> GrammarIR:
    """Convert a Lark grammar to a GrammarIR (see the module docstring for the language)."""
    if not isinstance(start, str):
        raise GrammarError("lark_to_ir takes one start rule name")
    from ..limits import check_count, check_deadline

    check_count("max_source_chars", len(text), "Lark grammar")
    lk = load_lark(text, start=start, import_paths=import_paths)
    check_deadline("Lark grammar loading")
    check_count("max_rules", len(lk.rules), "Lark rules")
    return lark_object_to_ir(lk, start=start)


def lark_object_to_ir(lk, *, start: str = "start") -> GrammarIR:
    """Convert an already loaded ``lark.Lark`` object (its rules and terminals) to IR."""
    from lark.grammar import NonTerminal, Terminal

    b = IRBuilder()
    tdefs = {t.name: t for t in lk.terminals}
    term_syms: dict[str, int] = {}
    real_terms: set[str] = set()

    def term(name: str) -> int:
        if name in term_syms:
            return term_syms[name]
        tdef = tdefs.get(name)
        if tdef is None:
            raise GrammarError(f"terminal {name} is declared (%declare) but has no definition", name)
        from ..errors import RegexError

        try:
            dfa = _terminal_dfa(tdef)
        except RegexError as e:
            raise GrammarError(f"terminal {name}: {e}", name) from e
        except GrammarError:
            raise
        if dfa is None:
            sym = b.literal(b"")
        else:
            if dfa.is_empty:
                sym = b.nonterminal(f"{name}!empty")  # matches nothing: no rules, dropped by build
            else:
                sym = b.terminal(dfa, name)
                real_terms.add(name)
        term_syms[name] = sym
        return sym

    nt_syms: dict[str, int] = {}

    def nonterm(name: str) -> int:
        if name not in nt_syms:
            nt_syms[name] = b.nonterminal(name)
        return nt_syms[name]

    for r in lk.rules:
        lhs = nonterm(r.origin.name)
        rhs = []
        for s in r.expansion:
            if isinstance(s, Terminal):
                rhs.append(term(s.name))
            elif isinstance(s, NonTerminal):
                rhs.append(nonterm(s.name))
            else:  # pragma: no cover - lark internals
                raise GrammarError(f"unexpected symbol {s!r} in rule {r.origin.name}")
        b.rule(lhs, rhs)
    if start not in nt_syms:
        raise GrammarError(f"the start rule {start!r} is not defined")
    for name in getattr(lk, "ignore_tokens", ()) or ():
        sym = term(name)
        if name not in real_terms:
            raise GrammarError(f"ignored terminal {name} matches only the empty string or nothing", name)
        b.ignore(sym)
    return b.build(nt_syms[start], source="lark", meta={"start": start})
