"""The ``corral`` command line: ``generate``, ``check``, ``bench`` and ``demo``.

User mistakes (missing file, bad JSON, unsupported schema keyword, grammar errors) print
``corral: error: ...`` on stderr and exit with status 2, without a traceback.  A generation that
cannot finish (``--max-new-tokens`` too small) exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import CorralError, GenerationError

logger = logging.getLogger("corral")

EXIT_USAGE = 2
EXIT_FAILED = 1

DEMO_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "languages": {"type": "array", "items": {"enum": ["Python", "Rust", "C", "Go"]}, "minItems": 1, "maxItems": 3,
                      "uniqueItems": True},
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}
DEMO_PROMPT = "Describe a fictional software engineer as JSON with a name, an age and the programming languages they use."
DEMO_GRAMMAR = r"""
start: "Sentiment: " LABEL "\nStars: " STARS
LABEL: "positive" | "negative" | "neutral"
STARS: /[1-5]/
"""
DEMO_GRAMMAR_PROMPT = "Classify the sentiment of this review: 'Terrible food and rude staff.'"


class UsageError(Exception):
    """A mistake on the command line (reported as ``corral: error: ...``, exit 2)."""


# ----------------------------------------------------------------------------- inputs
def _read_schema(arg: str) -> Any:
    """A JSON schema from a file path or inline JSON text."""
    path = Path(arg)
    text: str
    if arg.lstrip().startswith(("{", "[")) or arg.strip() in ("true", "false"):
        text = arg
        where = "the inline JSON schema"
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
        where = str(path)
    else:
        raise UsageError(f"file not found: {arg} (expected a schema file or inline JSON)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from exc


def _grammar_kind(path: Path, text: str) -> str:
    ext = path.suffix.lower()
    if ext in (".gbnf", ".ebnf", ".bnf"):
        return "ebnf"
    if ext == ".lark":
        return "lark"
    if ext in (".regex", ".re"):
        return "regex"
    if ext == ".json":
        return "json_schema"
    return "ebnf" if "::=" in text else "lark"


def _compile_grammar_file(arg: str, tokenizer: Any = None) -> Any:
    from .automaton.grammar import Grammar

    path = Path(arg)
    if not path.is_file():
        raise UsageError(f"grammar file not found: {arg}")
    text = path.read_text(encoding="utf-8")
    kind = _grammar_kind(path, text)
    if kind == "ebnf":
        return Grammar.from_ebnf(text, tokenizer)
    if kind == "regex":
        return Grammar.from_regex(text.strip("\n"), tokenizer)
    if kind == "json_schema":
        return Grammar.from_json_schema(_read_schema(arg), tokenizer)
    return Grammar.from_lark(text, tokenizer)


def _load_model(model_dir: str | None) -> tuple[Any, Any]:
    from . import models

    if model_dir is not None and not Path(model_dir).exists() and os.sep in model_dir:
        raise UsageError(f"model directory not found: {model_dir}")
    logger.info("loading %s", model_dir or "the default model (SmolLM2-135M-Instruct)")
    if model_dir is None and not models.is_cached():
        print("corral: first run: converting the embedded model (about 20 s, once)", file=sys.stderr)
    t0 = time.perf_counter()
    pair = models.load(model_dir)
    logger.info("model loaded in %.1fs", time.perf_counter() - t0)
    return pair


def _schema_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"whitespace": args.whitespace, "strict": not args.no_strict}


# ----------------------------------------------------------------------------- commands
def cmd_generate(args: argparse.Namespace) -> int:
    if (args.schema is None) == (args.grammar is None):
        raise UsageError("pass exactly one of --schema or --grammar")
    schema = _read_schema(args.schema) if args.schema is not None else None
    if args.grammar is not None and not Path(args.grammar).is_file():
        raise UsageError(f"grammar file not found: {args.grammar}")
    if args.speculative and args.sampler not in (None, "greedy", "sample"):
        raise UsageError(f"--speculative works with --sampler greedy or sample, not {args.sampler}")
    if args.twist is not None:
        if args.sampler != "smc":
            raise UsageError("--twist works with --sampler smc")
        if not re.fullmatch(r"none|trie|lookahead\d*", args.twist):
            raise UsageError(f"--twist must be none, trie, lookahead or lookaheadK (K tokens), not {args.twist!r}")
    model, tokenizer = _load_model(args.model)
    from .api import generate, generate_json

    common: dict[str, Any] = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    if args.sampler is not None:
        common["sampler"] = args.sampler
    if args.speculative:
        common["speculative"] = True
    if args.twist is not None:
        common["twist"] = args.twist
    if schema is not None:
        value, result = generate_json(
            model, tokenizer, schema, args.prompt,
            whitespace=args.whitespace, strict=not args.no_strict, return_result=True, **common,
        )
        indent = 2 if args.whitespace == "pretty" else None
        print(json.dumps(value, ensure_ascii=False, indent=indent))
        _log_result(result)
    else:
        grammar = _compile_grammar_file(args.grammar, None)
        result = generate(model, tokenizer, args.prompt, grammar, **common)
        print(result.text)
        _log_result(result)
    return 0


def _log_result(result: Any) -> None:
    t = result.timings
    extra = ""
    if "n_forwards" in t:
        extra = f", {int(t['n_forwards'])} forward passes, acceptance {t.get('acceptance_rate', 0.0):.0%}"
    logger.info("%d tokens, finish_reason=%s, %.2fs%s", result.n_tokens, result.finish_reason, t.get("total", 0.0), extra)


def _stats(grammar: Any) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    ir = getattr(grammar, "ir", None)
    if ir is not None:
        out.append(("source", getattr(ir, "source", "") or "?"))
        for name in ("terminals", "nonterminal_names", "rules"):
            val = getattr(ir, name, None)
            if val is not None:
                out.append((name.replace("_names", "s"), len(val)))
        dfas = getattr(ir, "terminals", None) or ()
        if dfas:
            out.append(("terminal DFA states", sum(int(getattr(d, "n_states", 0)) for d in dfas)))
        if getattr(ir, "ignore", None):
            out.append(("ignored terminals", len(ir.ignore)))
    auto = getattr(grammar, "automaton", None)
    n_states = getattr(auto, "n_states", None)
    if callable(n_states):
        n_states = n_states()
    if n_states is not None:
        out.append(("automaton states (explored so far)", n_states))
    vocab = getattr(grammar, "vocab", None)
    if vocab is not None:
        out.append(("vocabulary", f"{vocab.size} ids, EOS {list(vocab.eos_ids)}"))
    return out


def _relaxations(grammar: Any) -> list[Any]:
    for obj in (grammar, getattr(grammar, "ir", None)):
        if obj is None:
            continue
        for name in ("relaxations", "relaxed", "report"):
            val = getattr(obj, name, None)
            if val:
                return list(val) if not isinstance(val, dict) else [val]
        meta = getattr(obj, "meta", None)
        if isinstance(meta, dict):
            for name in ("relaxations", "relaxed", "report"):
                if meta.get(name):
                    val = meta[name]
                    return list(val) if not isinstance(val, dict) else [val]
    return []


def cmd_check(args: argparse.Namespace) -> int:
    from .automaton.grammar import Grammar

    target = args.target
    tokenizer = None
    if args.vocab:
        _, tokenizer = _load_model(args.model)
    path = Path(target)
    if not path.is_file() and path.suffix.lower() in (".lark", ".gbnf", ".ebnf", ".bnf", ".regex", ".re", ".json"):
        raise UsageError(f"file not found: {target}")
    t0 = time.perf_counter()
    if path.is_file() and _grammar_kind(path, "") != "json_schema" and path.suffix.lower() != ".json":
        grammar = _compile_grammar_file(target, tokenizer)
        what = f"grammar {target}"
    else:
        schema = _read_schema(target)
        grammar = Grammar.from_json_schema(schema, tokenizer, **_schema_options(args))
        what = f"schema {target if path.is_file() else '(inline)'}"
    compile_s = time.perf_counter() - t0
    print(f"ok: {what} compiles")
    print(f"  compile time: {compile_s * 1000:.1f} ms")
    if tokenizer is not None:
        t1 = time.perf_counter()
        m = grammar.matcher()
        n_allowed = len(m.allowed_token_ids())
        print(f"  first mask: {(time.perf_counter() - t1) * 1000:.1f} ms, {n_allowed} tokens allowed")
    for k, v in _stats(grammar):
        print(f"  {k}: {v}")
    relaxed = _relaxations(grammar)
    if relaxed:
        print(f"  relaxed keywords ({len(relaxed)}):")
        for r in relaxed:
            print(f"    - {_fmt_relaxation(r)}")
    elif getattr(getattr(grammar, "ir", None), "source", "") == "json_schema":
        print("  relaxed keywords: none (every keyword enforced exactly)")
    return 0


def _fmt_relaxation(r: Any) -> str:
    if isinstance(r, dict):
        ptr = r.get("pointer", "#")
        kw = r.get("keyword", "?")
        what = r.get("what") or r.get("detail") or r.get("message") or ""
        return f"{ptr or '#'} {kw}: {what}".rstrip(": ")
    parts = [str(getattr(r, a)) for a in ("pointer", "keyword", "what", "detail", "message") if getattr(r, a, None)]
    return " ".join(parts) if parts else str(r)


# ----------------------------------------------------------------------------- bench
BENCH_SUITES = ("masks", "json_schema", "speculative", "sampling")
_BENCH_TITLES = {
    "masks": "Mask latency and compile time (shipped grammars)",
    "json_schema": "JSON Schema: coverage, compile and mask latency (MaskBench dev)",
    "speculative": "Speculative decoding: speed-up on JSON generation",
    "sampling": "Faithful sampling: GCD vs ASAp vs AWRS vs SMC",
}


def find_benchmarks(start: Path | None = None) -> Path:
    """The ``benchmarks/`` directory of a corral checkout (searched from ``start`` / the cwd, then
    from the installed package's location); raises :class:`UsageError` when there is none."""
    candidates: list[Path] = []
    for base in (start or Path.cwd(), Path(__file__).resolve()):
        base = base.resolve()
        candidates += [base, *base.parents]
    for d in candidates:
        b = d / "benchmarks"
        if (b / "common.py").is_file() and (b / "bench_masks.py").is_file():
            return b
    raise UsageError("corral bench needs a checkout of the corral repository (benchmarks/ is not installed "
                     "with the package): run it from inside the repository")


def _bench_argv(suite: str, quick: bool, results: Path) -> list[str]:
    """Command-line arguments of one benchmark module."""
    if suite == "masks":
        return ["--quick"] if quick else []
    if suite == "json_schema":
        return ["--quick"] if quick else []
    if suite == "speculative":
        argv = ["--threads", "1", "--out", str(results / ("speculative_quick" if quick else "speculative"))]
        return argv + (["--n-schemas", "1", "--max-new-tokens", "48", "--no-sampled"] if quick else [])
    if suite == "sampling":
        return ["--threads", "1"] + (["--quick", "--suites", "toy,model", "--samples", "100", "--smc-runs", "10"]
                                     if quick else [])
    raise UsageError(f"unknown suite {suite!r}")


def _bench_pngs(suite: str, results: Path, quick: bool) -> list[Path]:
    q = "_quick" if quick else ""
    names = {
        "masks": [f"bench_masks{q}_cdf.png"],
        "json_schema": [f"bench_json_schema{q}_cdf.png"],
        "speculative": [f"speculative{q}.png"],
        "sampling": [],
    }[suite]
    return [results / n for n in names if (results / n).is_file()]


def cmd_bench(args: argparse.Namespace) -> int:
    import subprocess

    bench_dir = find_benchmarks()
    repo = bench_dir.parent
    results = bench_dir / "results"
    results.mkdir(parents=True, exist_ok=True)
    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    bad = [s for s in suites if s not in BENCH_SUITES]
    if bad or not suites:
        raise UsageError(f"unknown suite(s) {', '.join(bad) or '(none)'}; choose from {','.join(BENCH_SUITES)}")
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    sections: list[str] = []
    failed: list[str] = []
    try:
        from tqdm import tqdm  # type: ignore[import-untyped]

        progress: Any = tqdm(suites, desc="corral bench", unit="suite", file=sys.stderr, disable=args.no_progress)
    except ImportError:
        progress = suites
    for suite in progress:
        if hasattr(progress, "set_postfix_str"):
            progress.set_postfix_str(suite)
        cmd = [sys.executable, "-m", f"benchmarks.bench_{suite}", *_bench_argv(suite, args.quick, results)]
        logger.info("running %s", " ".join(cmd[1:]))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=None if args.verbose else
                              subprocess.PIPE, text=True)
        dt = time.perf_counter() - t0
        body = proc.stdout.strip()
        if proc.returncode != 0:
            failed.append(suite)
            tail = (proc.stderr or "").strip().splitlines()[-15:]
            body = (body + "\n\n" if body else "") + f"**failed** (exit {proc.returncode}):\n\n```\n" + "\n".join(tail) + "\n```"
            logger.warning("suite %s failed (exit %d)", suite, proc.returncode)
        section = [f"## {_BENCH_TITLES[suite]}", "",
                   f"`python -m benchmarks.bench_{suite} {' '.join(_bench_argv(suite, args.quick, results))}` "
                   f"({dt:.0f} s)", "", body, ""]
        for png in _bench_pngs(suite, results, args.quick):
            section += [f"![{suite}]({png.name})", ""]
        sections.append("\n".join(section))
    env_line = f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}"
    head = ["# corral benchmark report", "", f"`corral bench{' --quick' if args.quick else ''} --suite {','.join(suites)}`"
            f" -- {env_line}.", ""]
    out = Path(args.out) if args.out else results / "report.md"
    out.write_text("\n".join(head + sections), encoding="utf-8")
    print(f"wrote {out}")
    if failed:
        _error(f"suite(s) failed: {', '.join(failed)} (see {out})")
        return EXIT_FAILED
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .api import generate, generate_json
    from .automaton.grammar import Grammar

    model, tokenizer = _load_model(args.model)
    print("corral demo: SmolLM2-135M-Instruct constrained by a JSON Schema\n")
    print("prompt:", DEMO_PROMPT)
    print("schema:", json.dumps(DEMO_SCHEMA))
    t0 = time.perf_counter()
    value, result = generate_json(
        model, tokenizer, DEMO_SCHEMA, DEMO_PROMPT,
        max_new_tokens=args.max_new_tokens, seed=args.seed, temperature=args.temperature, return_result=True,
    )
    dt = time.perf_counter() - t0
    print("output:", json.dumps(value, ensure_ascii=False))
    print(f"  ({result.n_tokens} tokens in {dt:.2f}s, valid against the schema)\n")

    print("and a Lark grammar:")
    print("grammar:")
    for line in DEMO_GRAMMAR.strip().splitlines():
        print("   ", line)
    print("prompt:", DEMO_GRAMMAR_PROMPT)
    g = Grammar.from_lark(DEMO_GRAMMAR, None)
    res = generate(model, tokenizer, DEMO_GRAMMAR_PROMPT, g, max_new_tokens=24)
    print("output:", res.text.replace("\n", " | "))
    print(f"  ({res.n_tokens} tokens, finish_reason={res.finish_reason})")
    return 0


# ----------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corral",
        description="Structured output for language models: generate text that follows a JSON Schema or a grammar.",
        epilog="Examples:\n"
        "  corral demo\n"
        "  corral generate --schema '{\"type\": \"object\", \"properties\": {\"x\": {\"type\": \"integer\"}}}' "
        "--prompt 'Give me x.'\n"
        "  corral generate --grammar grammars/arithmetic.lark --prompt 'An expression:'\n"
        "  corral check schema.json\n"
        "  corral bench --quick --suite masks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="log progress (-vv: debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def model_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--model", metavar="DIR",
                        help="a Hugging Face model directory or hub id (default: the embedded SmolLM2-135M-Instruct)")

    def schema_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--whitespace", choices=["compact", "pretty", "flexible"], default="compact",
                        help="JSON whitespace style (default: compact)")
        sp.add_argument("--no-strict", action="store_true",
                        help="relax keywords that cannot be enforced exactly instead of failing (they are reported)")

    g = sub.add_parser("generate", help="generate JSON for a schema, or text for a grammar",
                       description="Generate JSON valid against a schema (printed as JSON), or text in a grammar's language.")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--schema", metavar="FILE_OR_JSON", help="a JSON Schema file or inline JSON")
    src.add_argument("--grammar", metavar="FILE", help="a grammar file: .lark (Lark EBNF) or .gbnf/.ebnf (GBNF)")
    g.add_argument("--prompt", required=True, metavar="TEXT", help="the prompt (the chat template applies)")
    model_args(g)
    g.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="token budget (default: 256)")
    g.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default), > 0 samples")
    g.add_argument("--seed", type=int, default=None, metavar="S", help="random seed for sampling")
    g.add_argument("--sampler", choices=["greedy", "sample", "awrs", "smc", "asap"], default=None,
                   help="decoding strategy: greedy / sample (masked decoding; default: greedy at temperature 0, "
                   "else sample), or a faithful sampler of P(text | grammar): awrs, smc, asap")
    g.add_argument("--twist", default=None, metavar="T",
                   help="with --sampler smc, twisted proposals: lookahead (or lookaheadK: the exact grammatical "
                   "mass of the next K tokens, K=1 by default), trie (a learned estimate; it learns across calls "
                   "in one process, so a single command starts from nothing), none (default)")
    g.add_argument("--speculative", action=argparse.BooleanOptionalAction, default=False,
                   help="speculative decoding: grammar / n-gram / recycled drafts verified in one forward pass "
                   "(same output distribution; greedy or sample only; default: off)")
    schema_args(g)
    g.set_defaults(func=cmd_generate)

    c = sub.add_parser("check", help="compile a schema or grammar and print statistics",
                       description="Compile a JSON Schema (file or inline JSON) or a grammar file (.lark, .gbnf) "
                       "and print statistics and any relaxed keywords.")
    c.add_argument("target", metavar="SCHEMA_OR_GRAMMAR", help="a .json schema, inline JSON, or a .lark/.gbnf grammar")
    c.add_argument("--vocab", action="store_true", help="also build token masks for the model's tokenizer")
    model_args(c)
    schema_args(c)
    c.set_defaults(func=cmd_check)

    b = sub.add_parser("bench", help="run the benchmark suites and write a Markdown report",
                       description="Run the benchmark suites of a corral checkout (benchmarks/) and write "
                       "benchmarks/results/report.md with their tables and PNG plots. Peers (XGrammar, llguidance) "
                       "are compared when the 'bench' extra is installed.")
    b.add_argument("--quick", action="store_true", help="small inputs (minutes instead of hours)")
    b.add_argument("--suite", default=",".join(BENCH_SUITES), metavar="LIST",
                   help=f"comma-separated suites (default: all): {','.join(BENCH_SUITES)}")
    b.add_argument("--out", default=None, metavar="FILE", help="report path (default: benchmarks/results/report.md)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("demo", help="a short demo on the embedded model",
                       description="Generate structured output with the embedded SmolLM2-135M-Instruct model.")
    model_args(d)
    d.add_argument("--max-new-tokens", type=int, default=96, metavar="N")
    d.add_argument("--temperature", type=float, default=0.0, metavar="T")
    d.add_argument("--seed", type=int, default=None, metavar="S")
    d.set_defaults(func=cmd_demo)
    return p


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("corral: %(message)s"))
    root = logging.getLogger("corral")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logging.NullHandler)]
    root.addHandler(handler)
    root.setLevel(level)
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        if verbosity <= 0:
            tlog.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass


def _error(msg: str) -> None:
    print(f"corral: error: {msg}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose)
    if getattr(args, "max_new_tokens", 1) is not None and getattr(args, "max_new_tokens", 1) < 1:
        _error("--max-new-tokens must be at least 1")
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except GenerationError as exc:
        _error(str(exc))
        if exc.partial_text:
            print(f"corral: partial output: {exc.partial_text}", file=sys.stderr)
        return EXIT_FAILED
    except (UsageError, CorralError, OSError, ValueError) as exc:
        _error(str(exc) or type(exc).__name__)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
