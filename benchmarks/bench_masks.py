"""Mask latency per token and compile time: corral side by side with XGrammar and llguidance.

    python -m benchmarks.bench_masks                   # all grammars, 20 sentences each, peers when importable
    python -m benchmarks.bench_masks --quick           # 2 shipped grammars, 3 sentences, 1 compile rep
    python -m benchmarks.bench_masks --grammars json,c --sentences 50 --no-peers
    python -m benchmarks.bench_masks --grammars json,arithmetic,sql_select,csv,config --sentences-from samples

Method (issue 2):
- Tokenizer: Llama-3 (128,256 ids); every engine gets the same mask width and the same EOS ids.
- Grammars: ``grammars/*.lark`` (shipped) and ``../shared/data/grammars/llama.cpp/*.gbnf``.
  corral reads both natively; llguidance reads Lark (its dialect) and GBNF via its own
  ``gbnf_to_lark``; XGrammar reads GBNF only, so each Lark grammar is translated to GBNF by this
  script (lark's own grammar loader gives the rules; terminals go through
  ``xgrammar.Grammar.from_regex``; ``%ignore`` becomes an optional ``ign`` between symbols).
  The translation is not timed. A grammar an engine cannot read shows "-".
- Sentences: ``corral.testing.random_sentence(grammar.ir, seed)`` for seeds 0, 1, ... (empty
  ones and ones over --max-tokens tokens are skipped), tokenized with ``add_special_tokens=False``.
  With ``--sentences-from samples``: the hand-written texts of ``benchmarks/samples/<grammar>.txt``
  instead (queries, expressions, documents of the kind a model writes; fixed files, written
  before they were ever measured). Random derivations nest deeply and are mostly new states;
  written text is shallower and repeats more.
  Every engine must accept every sentence (token by token, then EOS); a sentence any engine rejects
  is dropped for all and counted per engine.
- Timed: for each token of each sentence, and once more before EOS, the engine's fill-bitmask call
  (corral ``fill_next_token_bitmask(bitmask, 0)``, XGrammar ``fill_next_token_bitmask(bitmask)``,
  llguidance ``unsafe_compute_mask_ptr``, the call behind ``llguidance.torch.fill_next_token_bitmask``);
  then (untimed) the mask is checked to allow that token and the token is consumed. GC is off while
  timing; engines run one after another in this single thread; XGrammar compiles with
  ``max_threads=1``.
- Compile time: grammar text plus a ready tokenizer object -> a ready matcher; cold each time
  (XGrammar ``cache_enabled=False``; corral's cross-grammar terminal-mask memo is cleared, and its
  on-disk mask cache is an empty temporary folder for the whole run unless ``--disk-cache``).
  Tokenizer preprocessing is timed separately, once per engine.
- Masks are also compared with corral's, step by step (informational: a difference can be the
  grammar translation, or one engine being wrong).
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # allow `python benchmarks/bench_masks.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

import numpy as np

from benchmarks import common as C

GOAL_P50_US = 10.0
GOAL_P99_US = 1000.0
GOAL_COMPILE_P50_MS = 100.0
QUICK_GRAMMARS = ("json", "arithmetic")


# ----------------------------------------------------------------------------------------------
# grammars


def discover_grammars(selected: list[str] | None, quick: bool) -> list[dict[str, Any]]:
    out = []
    for p in sorted((C.REPO_ROOT / "grammars").glob("*.lark")):
        out.append({"name": p.stem, "kind": "lark", "origin": "shipped", "path": str(p), "text": p.read_text()})
    gdir = C.SHARED_DATA / "grammars" / "llama.cpp"
    if gdir.is_dir():
        for p in sorted(gdir.glob("*.gbnf")):
            name = p.stem if p.stem not in {g["name"] for g in out} else f"{p.stem}.gbnf"
            out.append({"name": name, "kind": "gbnf", "origin": "llama.cpp", "path": str(p), "text": p.read_text()})
    if selected:
        want = set(selected)
        out = [g for g in out if g["name"] in want or Path(g["path"]).name in want]
        missing = want - {g["name"] for g in out} - {Path(g["path"]).name for g in out}
        if missing:
            print(f"[warn] grammars not found: {sorted(missing)}", file=sys.stderr)
    elif quick:
        out = [g for g in out if g["name"] in QUICK_GRAMMARS]
    return out


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def _rename_rules(ebnf: str, prefix: str) -> str:
    """Prefix every rule name of an XGrammar EBNF text (outside string literals and char classes)."""
    out = []
    i, n = 0, len(ebnf)
    while i < n:
        c = ebnf[i]
        if c in "\"[":
            close = '"' if c == '"' else "]"
            j = i + 1
            while j < n and ebnf[j] != close:
                j += 2 if ebnf[j] == "\\" else 1
            out.append(ebnf[i : j + 1])
            i = j + 1
            continue
        m = _IDENT.match(ebnf, i)
        if m and (i == 0 or not (ebnf[i - 1].isalnum() or ebnf[i - 1] == "_")):
            out.append(prefix + m.group(0))
            i = m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _ci_literal(s: str) -> str:
    parts = []
    for ch in s:
        lo, up = ch.lower(), ch.upper()
        if lo != up:
            parts.append(f"[{lo}{up}]")
        else:
            parts.append('"' + ch.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "(" + " ".join(parts) + ")" if parts else '""'


_INLINE_CI = re.compile(r"\(\?i:([A-Za-z0-9_ ]+)\)")


def lark_to_gbnf(text: str) -> str:
    """Translate a Lark grammar to XGrammar's EBNF (best effort; raises ValueError when it cannot)."""
    import lark
    import xgrammar as xgr

    parser = lark.Lark(text, parser="earley", lexer="dynamic")
    start = parser.options.start[0] if isinstance(parser.options.start, list) else parser.options.start
    lines: list[str] = []
    san = lambda s: re.sub(r"[^A-Za-z0-9_]", "_", s)  # noqa: E731
    for td in parser.terminals:
        name = "t_" + san(td.name)
        pat = td.pattern
        if type(pat).__name__ == "PatternStr":
            if "i" in pat.flags:
                lines.append(f"{name} ::= {_ci_literal(pat.value)}")
            else:
                lit = pat.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
                lines.append(f'{name} ::= "{lit}"')
            continue
        if pat.flags:
            raise ValueError(f"terminal {td.name}: regex flags {sorted(pat.flags)} not translatable")
        rx = _INLINE_CI.sub(lambda m: "(?:" + "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in m.group(1)) + ")", pat.value)
        rx = re.sub(r"[\x00-\x1f\x7f]", lambda m: "\\x%02x" % ord(m.group(0)), rx)
        if "(?" in rx.replace("(?:", ""):
            raise ValueError(f"terminal {td.name}: regex group flags not translatable: {pat.value}")
        sub = str(xgr.Grammar.from_regex(rx))
        body = _rename_rules(sub, name + "_")
        lines.append(f"{name} ::= {name}_root")
        lines.extend(ln for ln in body.splitlines() if ln.strip())
    # %ignore: an optional run of ignored terminals before every terminal and at the end. Attaching
    # it to the following terminal only keeps the translation unambiguous (Earley-friendly).
    ign = []
    for t in parser.ignore_tokens:
        td = next(x for x in parser.terminals if x.name == t)
        v = td.pattern.value
        if type(td.pattern).__name__ == "PatternRE" and not td.pattern.flags and re.fullmatch(r"\[[^\]]*\]\+", v):
            cls = re.sub(r"[\x00-\x1f\x7f]", lambda m: "\\x%02x" % ord(m.group(0)), v[:-1])
            ign.append(cls)  # [ \t]+ inside (...)* would be ambiguous: use the class itself
        else:
            ign.append("t_" + san(t))
    if ign:
        lines.append("ign ::= (" + " | ".join(ign) + ")*")
    pre = "ign " if ign else ""
    rules: dict[str, list[str]] = {}
    for r in parser.rules:
        syms = [(pre + "t_" if type(s).__name__ == "Terminal" else "r_") + san(s.name) for s in r.expansion]
        rules.setdefault("r_" + san(r.origin.name), []).append(" ".join(syms) if syms else '""')
    for lhs, alts in rules.items():
        lines.append(f"{lhs} ::= " + " | ".join(f"({a})" for a in alts))
    root = f"root ::= r_{san(start)} ign" if ign else f"root ::= r_{san(start)}"
    return "\n".join([root] + lines) + "\n"


def source_for(engine: C.Engine, g: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) this engine reads for grammar g."""
    if engine.name == "xgrammar" and g["kind"] == "lark":
        if "gbnf_translation" not in g:
            try:
                g["gbnf_translation"] = lark_to_gbnf(g["text"])
            except Exception as ex:  # noqa: BLE001
                g["gbnf_translation"] = None
                g["gbnf_translation_error"] = f"{type(ex).__name__}: {ex}"
        if g["gbnf_translation"] is None:
            raise RuntimeError("lark->gbnf translation failed: " + g["gbnf_translation_error"])
        return "gbnf", g["gbnf_translation"]
    return g["kind"], g["text"]


# ----------------------------------------------------------------------------------------------
# measurement


SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def sample_sentences(tok: Any, vocab: Any, name: str, n: int) -> tuple[list[dict], dict[str, int]]:
    """The first ``n`` hand-written sentences of ``samples/<name>.txt`` (separated by ``%%``
    lines): text of the kind a model writes for that grammar, as opposed to random
    derivations. Each must round-trip through the tokenizer."""
    path = SAMPLES_DIR / f"{name}.txt"
    stats = {"generated": 0, "no_roundtrip": 0, "no_samples": 0}
    if not path.is_file():
        stats["no_samples"] = 1
        return [], stats
    out = []
    for i, text in enumerate(path.read_text().split("\n%%\n")[:n]):
        text = text.strip("\n")
        stats["generated"] += 1
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if vocab.decode_bytes(ids) != text.encode("utf-8"):
            stats["no_roundtrip"] += 1
            continue
        out.append({"seed": i, "text": text, "ids": [int(t) for t in ids]})
    return out, stats


def make_sentences(tok: Any, vocab: Any, ir: Any, n: int, max_tokens: int) -> tuple[list[dict], dict[str, int]]:
    from corral.testing import random_sentence

    stats = {"generated": 0, "empty": 0, "too_long": 0, "not_utf8": 0, "no_roundtrip": 0}
    out: list[dict] = []
    seed = 0
    while len(out) < n and seed < 20 * n + 20:
        data = random_sentence(ir, seed)
        seed += 1
        stats["generated"] += 1
        if not data:
            stats["empty"] += 1
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            stats["not_utf8"] += 1
            continue
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            stats["too_long"] += 1
            continue
        if vocab.decode_bytes(ids) != data:
            stats["no_roundtrip"] += 1
            continue
        out.append({"seed": seed - 1, "text": text, "ids": [int(t) for t in ids]})
    return out, stats


def accepts(engine: C.Engine, factory: Any, ids: list[int]) -> tuple[bool, str]:
    m = factory()
    for k, t in enumerate(ids):
        if not engine.consume(m, t):
            return False, f"token {k} ({t}) refused"
    if not engine.accepting(m):
        return False, "not accepting at the end"
    return True, ""


def run_sentences(engine: C.Engine, factory: Any, sents: list[dict], keep_masks: bool) -> dict[str, Any]:
    lat: list[int] = []
    masks: list[np.ndarray] = []
    misses = 0
    fill, consume = engine.fill, engine.consume
    eos = engine.eos_ids[0]
    words = engine.mask_words()
    now = C.now_ns
    gc.collect()
    gc.disable()
    try:
        for s in sents:
            m = factory()
            for t in s["ids"] + [eos]:
                t0 = now()
                fill(m)
                t1 = now()
                lat.append(t1 - t0)
                if not (int(words[t >> 5]) >> (t & 31)) & 1:
                    misses += 1
                if keep_masks:
                    masks.append(words.copy())
                if t != eos:
                    consume(m, t)
    finally:
        gc.enable()
    return {"lat": lat, "masks": masks, "misses": misses}


def compare_masks(ref: list[np.ndarray], other: list[np.ndarray], vocab: Any) -> dict[str, Any]:
    diff_steps = 0
    first = None
    for k, (a, b) in enumerate(zip(ref, other)):
        if not np.array_equal(a, b):
            diff_steps += 1
            if first is None:
                only_a = np.flatnonzero(np.unpackbits((a & ~b).view(np.uint8), bitorder="little"))
                only_b = np.flatnonzero(np.unpackbits((b & ~a).view(np.uint8), bitorder="little"))
                first = {"step": k, "corral_only": len(only_a), "peer_only": len(only_b),
                         "corral_only_examples": [vocab.token_str(int(i)) for i in only_a[:5]],
                         "peer_only_examples": [vocab.token_str(int(i)) for i in only_b[:5]]}
    return {"steps": len(ref), "diff_steps": diff_steps, "first": first}


def bench_grammar(g: dict[str, Any], engines: list[C.Engine], args: argparse.Namespace, tok: Any) -> dict[str, Any]:
    res: dict[str, Any] = {"name": g["name"], "kind": g["kind"], "origin": g["origin"], "engines": {}}
    factories: dict[str, Any] = {}
    for e in engines:
        er: dict[str, Any] = {}
        res["engines"][e.name] = er
        try:
            kind, text = source_for(e, g)
        except Exception as ex:  # noqa: BLE001
            er["error"] = str(ex)[:300]
            continue
        times = []
        try:
            for _ in range(args.compile_reps):
                if e.name == "corral":
                    C.clear_corral_caches()
                fac, dt = C.timed(lambda: e.compile(kind, text))
                times.append(dt)
            factories[e.name] = fac
            er["compile_s"] = times
            er["compile_ms"] = 1e3 * C.median(times)
        except Exception as ex:  # noqa: BLE001
            er["error"] = f"compile: {type(ex).__name__}: {str(ex)[:300]}"
    corral = next((e for e in engines if e.name == "corral"), None)
    if corral is None or "corral" not in factories:
        res["skipped"] = "corral did not compile this grammar"
        return res
    ir = corral.grammar.ir
    if args.sentences_from == "samples":
        sents, sstats = sample_sentences(tok, corral.vocab, g["name"], args.sentences)
    else:
        sents, sstats = make_sentences(tok, corral.vocab, ir, args.sentences, args.max_tokens)
    res["sentence_stats"] = sstats
    rejected: dict[str, list] = {}
    kept = []
    for s in sents:
        ok_all = True
        for name, fac in factories.items():
            e = next(x for x in engines if x.name == name)
            ok, why = accepts(e, fac, s["ids"])
            if not ok:
                rejected.setdefault(name, []).append({"seed": s["seed"], "why": why, "text": s["text"][:200]})
                ok_all = False
        if ok_all:
            kept.append(s)
    res["sentences_candidates"] = len(sents)
    res["sentences_kept"] = len(kept)
    res["tokens"] = sum(len(s["ids"]) + 1 for s in kept)
    res["rejected"] = {k: len(v) for k, v in rejected.items()}
    res["rejected_examples"] = {k: v[:3] for k, v in rejected.items()}
    ref_masks = None
    for e in engines:
        if e.name not in factories:
            continue
        r = run_sentences(e, factories[e.name], kept, keep_masks=args.compare_masks and res["tokens"] <= 4000)
        er = res["engines"][e.name]
        er["latency_us"] = C.percentiles_us(r["lat"])
        er["mask_misses"] = r["misses"]
        er["_lat"] = r["lat"]
        if r["masks"]:
            if e.name == "corral":
                ref_masks = r["masks"]
            elif ref_masks is not None:
                er["mask_vs_corral"] = compare_masks(ref_masks, r["masks"], corral.vocab)
    return res


# ----------------------------------------------------------------------------------------------
# report


def report(results: list[dict], engines: list[C.Engine], args: argparse.Namespace) -> tuple[str, dict]:
    names = [e.name for e in engines]
    peers = [n for n in names if n != "corral"]
    lines = []
    source = "hand-written samples" if getattr(args, "sentences_from", "random") == "samples" else "random derivations"
    lines.append(f"## Mask latency per token (µs), Llama-3 tokenizer ({args.vocab_size:,} ids), teacher-forced on {source}\n")
    hdr = ["grammar", "sentences", "tokens", "engine", "compile ms", "p50", "p90", "p99", "max", "p99 corral/peer"]
    rows = []
    for r in results:
        sk = r.get("sentences_kept", 0)
        cand = r.get("sentences_candidates", 0)
        rej = ", ".join(f"{k} rejected {v}" for k, v in r.get("rejected", {}).items())
        first = True
        for n in names:
            er = r["engines"].get(n, {})
            lat = er.get("latency_us", {})
            cr = r["engines"].get("corral", {}).get("latency_us", {})
            ratio = fmt_r(cr.get("p99"), lat.get("p99")) if n != "corral" else ""
            if "error" in er and "latency_us" not in er:
                cells = [C.fmt_ms(er.get("compile_ms")), "-", "-", "-", "-", "n/a: " + er["error"][:60].replace("|", "/")]
            else:
                cells = [C.fmt_ms(er.get("compile_ms")), C.fmt_us(lat.get("p50")), C.fmt_us(lat.get("p90")),
                         C.fmt_us(lat.get("p99")), C.fmt_us(lat.get("max")), ratio]
            rows.append(([r["name"], f"{sk}/{cand}" + (f" ({rej})" if rej else ""), str(r.get("tokens", 0))] if first else ["", "", ""]) + [n] + cells)
            first = False
    lines.append(C.markdown_table(hdr, rows))

    # overall
    overall: dict[str, Any] = {}
    samples: dict[str, list[int]] = {}
    for n in names:
        lat = [x for r in results for x in r["engines"].get(n, {}).get("_lat", [])]
        comp = [r["engines"][n]["compile_ms"] for r in results if "compile_ms" in r["engines"].get(n, {})]
        # the same-grammar subset: grammars where every engine produced latencies
        common = [r for r in results if all("_lat" in r["engines"].get(m, {}) for m in names)]
        lat_common = [x for r in common for x in r["engines"][n]["_lat"]]
        overall[n] = {"latency_us": C.percentiles_us(lat), "latency_us_common": C.percentiles_us(lat_common),
                      "compile_ms": _pct_ms(comp), "grammars_compiled": len(comp),
                      "grammars_common": [r["name"] for r in common],
                      "tokenizer_prep_ms": next(e.tokenizer_prep_s for e in engines if e.name == n) * 1e3}
        samples[n] = lat_common if peers else lat
    lines.append("\n## Overall (grammars every engine ran: same tokens for all)\n")
    hdr = ["engine", "grammars", "tokens", "p50 µs", "p90 µs", "p99 µs", "max µs", "compile p50 ms", "compile p90 ms", "compile max ms", "tokenizer prep ms", "p99 corral/peer"]
    rows = []
    for n in names:
        o = overall[n]
        L = o["latency_us_common"]
        ratio = "" if n == "corral" else fmt_r(overall["corral"]["latency_us_common"]["p99"], L["p99"])
        rows.append([n, f"{len(o['grammars_common'])} (compiled {o['grammars_compiled']})", L["n"], C.fmt_us(L["p50"]), C.fmt_us(L["p90"]),
                     C.fmt_us(L["p99"]), C.fmt_us(L["max"]), C.fmt_ms(o["compile_ms"]["p50"]), C.fmt_ms(o["compile_ms"]["p90"]),
                     C.fmt_ms(o["compile_ms"]["max"]), f"{o['tokenizer_prep_ms']:.0f}", ratio])
    lines.append(C.markdown_table(hdr, rows))
    if "corral" in overall:
        L = overall["corral"]["latency_us"]
        lines.append(f"\ncorral over all {L['n']} tokens of all grammars: p50 {C.fmt_us(L['p50'])} µs, p90 {C.fmt_us(L['p90'])} µs, "
                     f"p99 {C.fmt_us(L['p99'])} µs, max {C.fmt_us(L['max'])} µs")
    # goals
    if "corral" in overall:
        o = overall["corral"]
        L = o["latency_us"]
        goals = [("mask p50 <= 10 µs", C.fmt_us(L["p50"]), L["p50"] <= GOAL_P50_US),
                 ("mask p99 <= 1 ms", C.fmt_us(L["p99"]), L["p99"] <= GOAL_P99_US),
                 ("compile p50 <= 100 ms", C.fmt_ms(o["compile_ms"]["p50"]), o["compile_ms"]["p50"] <= GOAL_COMPILE_P50_MS)]
        pe = [(n, overall[n]["latency_us_common"]["p99"]) for n in peers if overall[n]["latency_us_common"]["n"]]
        if pe:
            best = min(pe, key=lambda x: x[1])
            mine = o["latency_us_common"]["p99"]
            goals.append((f"p99 <= faster peer's ({best[0]}, {C.fmt_us(best[1])} µs, same grammars)", C.fmt_us(mine), mine <= best[1]))
        lines.append("\n## Goals (corral)\n")
        lines.append(C.markdown_table(["goal", "measured", "met"], [[a, b, "yes" if c else "**no**"] for a, b, c in goals]))
    # correctness notes
    notes = []
    for r in results:
        for n, er in r["engines"].items():
            if er.get("mask_misses"):
                notes.append(f"- {r['name']}: {n}'s mask excluded the next teacher-forced token at {er['mask_misses']} steps")
            mv = er.get("mask_vs_corral")
            if mv and mv["diff_steps"]:
                f = mv["first"]
                notes.append(f"- {r['name']}: {n} mask != corral mask at {mv['diff_steps']}/{mv['steps']} steps "
                             f"(first at step {f['step']}: corral-only {f['corral_only']} e.g. {f['corral_only_examples']}, "
                             f"{n}-only {f['peer_only']} e.g. {f['peer_only_examples']})")
        for n, ex in r.get("rejected_examples", {}).items():
            notes.append(f"- {r['name']}: {n} rejected {r['rejected'][n]} sample sentence(s), e.g. seed {ex[0]['seed']}: {ex[0]['why']}: {ex[0]['text'][:80]!r}")
        for n, er in r["engines"].items():
            if "error" in er:
                notes.append(f"- {r['name']}: {n}: {er['error'][:200]}")
    if notes:
        lines.append("\n## Notes\n")
        lines.extend(notes)
    return "\n".join(lines), {"overall": overall, "samples": samples}


def fmt_r(a, b):
    return C.fmt_ratio(a, b)


def _pct_ms(ms: list[float]) -> dict[str, float]:
    return C.percentiles_ms([m / 1e3 for m in ms])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 shipped grammars, 3 sentences, 1 compile rep")
    ap.add_argument("--grammars", default=None, help="comma-separated names (file stems), default all")
    ap.add_argument("--sentences", type=int, default=None, help="sentences per grammar (default 20, quick 3)")
    ap.add_argument("--max-tokens", type=int, default=1024, help="skip sample sentences longer than this")
    ap.add_argument("--sentences-from", default="random", choices=["random", "samples"],
                    help="random derivations of each grammar (default), or the hand-written texts in "
                         "benchmarks/samples/<grammar>.txt (shipped grammars only)")
    ap.add_argument("--compile-reps", type=int, default=None, help="cold compiles per grammar, median reported (default 3, quick 1)")
    ap.add_argument("--peers", dest="peers", action="store_true", default=True)
    ap.add_argument("--no-peers", dest="peers", action="store_false")
    ap.add_argument("--engines", default=None, help="restrict engines, e.g. corral,llguidance")
    ap.add_argument("--no-compare-masks", dest="compare_masks", action="store_false", default=True)
    ap.add_argument("--tokenizer", default="llama3", choices=["llama3", "smollm2"])
    ap.add_argument("--out", default=None, help="results JSON name (default bench_masks[_quick].json)")
    ap.add_argument("--disk-cache", action="store_true",
                    help="use corral's on-disk mask cache as it is (warm from earlier runs); default: a fresh one")
    args = ap.parse_args(argv)
    C.fresh_mask_cache(args.disk_cache)
    if args.sentences is None:
        args.sentences = 3 if args.quick else 20
    if args.compile_reps is None:
        args.compile_reps = 1 if args.quick else 3
    C.single_thread()
    selected = [s.strip() for s in args.grammars.split(",")] if args.grammars else None
    grammars = discover_grammars(selected, args.quick)
    if not grammars:
        print("no grammars found", file=sys.stderr)
        return 2
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    tok = C.load_tokenizer(args.tokenizer)
    args.vocab_size = C.tokenizer_width(tok)
    log(f"[prep] tokenizer {args.tokenizer} loaded in {time.perf_counter() - t0:.1f} s ({args.vocab_size} ids)")
    engines = C.make_engines(tok, args.vocab_size, args.peers, args.engines.split(",") if args.engines else None, log=log)
    results = []
    for g in grammars:
        t1 = time.perf_counter()
        r = bench_grammar(g, engines, args, tok)
        log(f"[grammar] {g['name']}: {time.perf_counter() - t1:.1f} s, " + ", ".join(
            f"{n}: " + (f"compile {er['compile_ms']:.0f} ms" if "compile_ms" in er else "error") +
            (f", p99 {er['latency_us']['p99']:.1f} µs" if "latency_us" in er else "") for n, er in r["engines"].items()))
        results.append(r)
    text, summary = report(results, engines, args)
    print(text)
    suffix = "_quick" if args.quick else ""
    name = args.out or f"bench_masks{suffix}.json"
    data = {"benchmark": "bench_masks", "args": {k: v for k, v in vars(args).items()}, "environment": C.environment(),
            "tokenizer_prep_ms": {e.name: e.tokenizer_prep_s * 1e3 for e in engines},
            "overall": summary["overall"],
            "grammars": [{k: v for k, v in r.items()} | {"engines": {n: {k: v for k, v in er.items() if k != "_lat"} for n, er in r["engines"].items()}} for r in results],
            "markdown": text}
    p = C.write_json(name, data)
    png = C.plot_latency_cdf(summary["samples"], C.RESULTS_DIR / name.replace(".json", "_cdf.png"),
                             f"Mask latency CDF, {args.tokenizer} ({args.vocab_size:,} ids)")
    log(f"[out] {p}" + (f", {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
