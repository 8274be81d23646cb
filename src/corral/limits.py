"""Compile budgets: time, automaton size, grammar size and nesting depth.

A grammar from an untrusted client must not hang a worker. ``CompileLimits`` names the
budgets; ``enforce(limits)`` applies them to everything compiled inside the ``with`` block
(front ends read them through ``current()``), and ``compile_grammar`` is the one-call form::

    from corral.limits import CompileLimits, compile_grammar

    g = compile_grammar("json_schema", schema, tokenizer, limits=CompileLimits(max_seconds=2))

Exceeding a budget raises ``corral.CompileLimitError`` whose message names the budget
(``max_seconds``, ``max_memory_mb``, ``max_dfa_states``, ``max_rules``, ``max_terminals``,
``max_depth``, ``max_source_chars``, ``max_repeat``). The two whole-compile budgets (time and
memory) raise the subclass ``BudgetError``, which front ends never turn into anything else.
A size limit hit inside one JSON Schema keyword raises ``SchemaTooLargeError``, which is both a
``CompileLimitError`` and an ``UnsupportedSchemaError`` carrying the keyword's JSON pointer
(``strict=False`` relaxes that keyword instead).

Time and memory are enforced two ways:

* cooperatively: compilation steps call ``check_deadline()`` (the front ends do between
  terminals and rules), which also samples the process's resident memory every 20 ms;
* preemptively, in the main thread only: a ``SIGALRM`` interval timer (every 50 ms) raises
  ``BudgetError`` once a budget is spent, when the interrupted Python code is corral's, lark's,
  interegular's or that of the file that entered ``enforce`` (elsewhere, e.g. in a GC callback
  or a test runner's hook, the error would be swallowed; the next tick raises it). Skipped off
  the main thread, on platforms without ``setitimer``, or when a timer is already armed by
  someone else (``hard_timeout=True`` is the default). A long single C call (one numpy
  operation) finishes before the error is raised.

Memory is the growth of the process's resident set size since the compile started (read
from ``/proc/self/statm``; where that file does not exist, only the automaton and grammar
size budgets bound memory). It is a process-wide figure, so work in other threads counts.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .errors import BudgetError, CompileLimitError

__all__ = [
    "CompileLimits",
    "DEFAULT_LIMITS",
    "current",
    "enforce",
    "check_deadline",
    "check_ir",
    "compile_grammar",
]


@dataclass(frozen=True)
class CompileLimits:
    """Budgets for compiling one grammar (``None`` disables a budget)."""

    max_seconds: float | None = 10.0
    """Wall-clock budget for the whole compile (front end, IR cleaning, automaton set-up)."""
    max_memory_mb: float | None = 1024.0
    """Growth of the process's resident memory during the compile, in MiB."""
    max_dfa_states: int | None = 100_000
    """States of any one terminal DFA (regex determinisation; ~1 KiB each)."""
    max_rules: int | None = 200_000
    """Rules of the grammar IR (also bounds GBNF/regex ``{m,n}`` expansions)."""
    max_terminals: int | None = 50_000
    """Distinct terminals of the grammar IR."""
    max_total_dfa_states: int | None = 2_000_000
    """Sum of the states of all terminal DFAs (~2 GiB of transition rows at the bound)."""
    max_depth: int | None = 32
    """Nesting depth: JSON Schema value nesting (``json_schema_to_ir(max_depth=...)``)."""
    max_source_chars: int | None = 10_000_000
    """Length of a grammar / regex / schema text."""
    max_repeat: int | None = 100_000
    """Largest bound of a ``{m,n}`` repetition in GBNF."""
    hard_timeout: bool = True
    """Also interrupt Python code with SIGALRM when the budget ends (main thread only)."""

    def replace(self, **changes: Any) -> "CompileLimits":
        return dataclasses.replace(self, **changes)

    @classmethod
    def unlimited(cls) -> "CompileLimits":
        return cls(max_seconds=None, max_memory_mb=None, max_dfa_states=None, max_rules=None, max_terminals=None,
                   max_total_dfa_states=None, max_depth=None, max_source_chars=None, max_repeat=None,
                   hard_timeout=False)


DEFAULT_LIMITS = CompileLimits()

_current: contextvars.ContextVar[CompileLimits] = contextvars.ContextVar("corral_limits", default=DEFAULT_LIMITS)
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("corral_deadline", default=None)
# (resident bytes at the start of the outermost enforce, budget in bytes, next sample time)
_memory: contextvars.ContextVar[list | None] = contextvars.ContextVar("corral_memory", default=None)
_MEMORY_SAMPLE_SECONDS = 0.02
_ALARM_INTERVAL = 0.05


def resident_bytes() -> int | None:
    """The process's resident set size (Linux ``/proc/self/statm``), None where unavailable."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


try:
    import os as _os

    _PAGE = _os.sysconf("SC_PAGE_SIZE")
except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
    _PAGE = 4096


def _check_memory(state: list | None, force: bool = False) -> None:
    if state is None:
        return
    now = time.monotonic()
    if not force and now < state[2]:
        return
    state[2] = now + _MEMORY_SAMPLE_SECONDS
    rss = resident_bytes()
    if rss is not None and rss - state[0] > state[1]:
        lim = _current.get()
        used = (rss - state[0]) / 2**20
        raise BudgetError(f"max_memory_mb={lim.max_memory_mb} exceeded (compile grew memory by {used:.0f} MiB)")


def current() -> CompileLimits:
    """The limits in force (``DEFAULT_LIMITS`` outside any ``enforce`` block)."""
    return _current.get()


def check_deadline(what: str = "compilation") -> None:
    """Raise ``BudgetError`` when the time or memory budget of the enclosing ``enforce`` is spent."""
    d = _deadline.get()
    if d is not None and time.monotonic() > d:
        lim = _current.get()
        raise BudgetError(f"max_seconds={lim.max_seconds} exceeded during {what}")
    _check_memory(_memory.get())


def check_count(name: str, value: int, what: str = "") -> None:
    """Raise ``CompileLimitError`` when ``value`` exceeds the budget called ``name``."""
    bound = getattr(_current.get(), name)
    if bound is not None and value > bound:
        extra = f" ({what})" if what else ""
        raise CompileLimitError(f"{name}={bound} exceeded: {value}{extra}")


def check_ir(ir: Any) -> None:
    """Check a GrammarIR against the rule, terminal and DFA-size budgets."""
    check_count("max_rules", len(ir.rules), "grammar rules")
    check_count("max_terminals", ir.n_terminals, "terminals")
    lim = _current.get()
    if lim.max_dfa_states is not None or lim.max_total_dfa_states is not None:
        sizes = [d.n_states for d in ir.terminals]
        if sizes:
            check_count("max_dfa_states", max(sizes), "largest terminal DFA")
        check_count("max_total_dfa_states", sum(sizes), "all terminal DFAs")


_roots: tuple[str, ...] = ()


def _interruptible_roots() -> tuple[str, ...]:
    """Source folders of the code a compile runs: corral itself and the parsers it calls
    (the file that entered ``enforce`` is added per block)."""
    global _roots
    if not _roots:
        import os

        import interegular
        import lark

        _roots = tuple(os.path.dirname(m.__file__) + os.sep for m in (sys.modules[__package__], lark, interegular))
    return _roots


def _caller_file() -> str:
    """The source file of the code that entered the ``enforce`` block."""
    f = sys._getframe(1)
    skip = (__file__, contextlib.__file__)
    while f is not None and f.f_code.co_filename in skip:
        f = f.f_back
    return f.f_code.co_filename if f is not None else __file__


class _Alarm:
    """SIGALRM interval timer raising BudgetError once the time or memory budget is spent.

    Only armed in the main thread, and only when no other timer runs.
    """

    def __init__(self, deadline: float | None, memory: list | None, limits: CompileLimits) -> None:
        self.deadline = deadline
        self.memory = memory
        self.limits = limits
        self.armed = False
        self.prev_handler: Any = None
        self.roots: tuple[str, ...] = ()

    def _fire(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        # Raise only inside the compiler's own code. Elsewhere (a GC callback, a finaliser, a
        # test runner's hook) the error would be swallowed as "unraisable" or break the host;
        # the next tick, 50 ms later, or a cooperative check raises it instead.
        if frame is None or not frame.f_code.co_filename.startswith(self.roots):
            return
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise BudgetError(f"max_seconds={self.limits.max_seconds} exceeded (compile interrupted)")
        _check_memory(self.memory, force=True)

    def __enter__(self) -> "_Alarm":
        if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
            return self
        try:
            if signal.getitimer(signal.ITIMER_REAL)[0] > 0:
                return self  # someone else's timer (an outer enforce, pytest-timeout): leave it alone
            self.roots = _interruptible_roots() + (_caller_file(),)
            self.prev_handler = signal.signal(signal.SIGALRM, self._fire)
            first = _ALARM_INTERVAL
            if self.deadline is not None:
                first = min(first, max(self.deadline - time.monotonic(), 1e-3))
            signal.setitimer(signal.ITIMER_REAL, first, _ALARM_INTERVAL)
            self.armed = True
        except (ValueError, OSError):  # pragma: no cover - embedded interpreters
            self.armed = False
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.prev_handler if self.prev_handler is not None else signal.SIG_DFL)
            self.armed = False


@contextlib.contextmanager
def enforce(limits: CompileLimits | None = None) -> Iterator[CompileLimits]:
    """Apply ``limits`` (default ``DEFAULT_LIMITS``) to compilations inside the block.

    Nested blocks keep the earlier deadline when it is sooner.
    """
    lim = limits or DEFAULT_LIMITS
    deadline = None
    if lim.max_seconds is not None:
        deadline = time.monotonic() + lim.max_seconds
        outer = _deadline.get()
        if outer is not None:
            deadline = min(deadline, outer)
    memory = _memory.get()
    if lim.max_memory_mb is not None:
        base = memory[0] if memory is not None else resident_bytes()
        if base is not None:
            budget = int(lim.max_memory_mb * 2**20)
            if memory is not None:
                budget = min(budget, memory[1])
            memory = [base, budget, 0.0]
    t1 = _current.set(lim)
    t2 = _deadline.set(deadline)
    t3 = _memory.set(memory)
    wants_alarm = lim.hard_timeout and (deadline is not None or memory is not None)
    alarm = _Alarm(deadline, memory, lim) if wants_alarm else None
    try:
        if alarm is not None:
            with alarm:
                yield lim
        else:
            yield lim
    finally:
        _memory.reset(t3)
        _deadline.reset(t2)
        _current.reset(t1)


_KINDS = ("json_schema", "lark", "ebnf", "gbnf", "regex")


def compile_grammar(kind: str, source: Any, tokenizer: Any = None, *, limits: CompileLimits | None = None,
                    **options: Any):
    """Compile a grammar of ``kind`` (json_schema, lark, ebnf/gbnf, regex) within ``limits``.

    Returns a ``corral.Grammar``; raises a ``CorralError`` (``CompileLimitError`` for a spent
    budget) and nothing else for any input of the right Python type. A ``RecursionError``
    from a pathologically deep input becomes ``CompileLimitError``.
    """
    from .automaton.grammar import Grammar
    from .automaton.ir import GrammarIR

    if kind not in _KINDS:
        raise ValueError(f"unknown grammar kind {kind!r}; expected one of {', '.join(_KINDS)}")
    lim = limits or DEFAULT_LIMITS
    with enforce(lim):
        try:
            if isinstance(source, (str, bytes)):
                check_count("max_source_chars", len(source), f"{kind} source")
            if kind == "json_schema":
                if lim.max_depth is not None:
                    options.setdefault("max_depth", lim.max_depth)
                if not isinstance(source, (str, bytes)):
                    import json

                    try:
                        check_count("max_source_chars", len(json.dumps(source)), "schema JSON")
                    except (TypeError, ValueError):
                        pass  # not JSON-serialisable: the front end reports it
                from .sources.json_schema import json_schema_to_ir

                ir: GrammarIR = json_schema_to_ir(source, **options)
            elif kind == "lark":
                from .sources.lark import lark_to_ir

                ir = lark_to_ir(source, **options)
            elif kind in ("ebnf", "gbnf"):
                from .sources.ebnf import ebnf_to_ir

                ir = ebnf_to_ir(source, **options)
            else:
                from .sources.regex import regex_to_ir

                ir = regex_to_ir(source, **options)
            check_deadline("the front end")
            check_ir(ir)
            g = Grammar(ir, tokenizer)
            check_deadline("automaton set-up")
            return g
        except RecursionError:
            raise CompileLimitError("nesting too deep (Python recursion limit) while compiling") from None
