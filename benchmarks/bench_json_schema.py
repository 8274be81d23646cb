"""JSON Schema: compile coverage, correctness on valid/invalid instances, compile time and mask latency.

    python -m benchmarks.bench_json_schema                 # all of ../shared/data/maskbench-dev, peers when importable
    python -m benchmarks.bench_json_schema --quick         # 20 schemas sampled across categories
    python -m benchmarks.bench_json_schema --limit 200 --no-peers

Method (issue 3):
- Schemas: ``../shared/data/maskbench-dev/<category>/*.json`` (``{"schema", "tests": [{"data", "valid"}]}``).
  ``--limit N`` / ``--quick`` take schemas round-robin across categories, each category in a fixed
  pseudo-random order (sha1 of the file name), so small runs cover every category deterministically.
- Modes (all compact, schema property order): corral ``Grammar.from_json_schema(schema, vocab)``
  (defaults: compact whitespace, schema order, strict); XGrammar ``compile_json_schema(...,
  any_whitespace=False, separators=(",", ":"), strict_mode=False)`` (strict_mode=False keeps the
  spec's ``additionalProperties: true`` default, as corral does); llguidance
  ``grammar_from_json_schema(..., {"whitespace_flexible": False, "item_separator": ",", "key_separator": ":"})``.
- Instances: ``json.dumps(data, separators=(",", ":"), ensure_ascii=False)`` with object keys
  reordered to the schema's ``properties`` order where the schema says it (local ``$ref`` followed,
  ``allOf`` merged; unknown keys keep their place after the known ones), tokenized with the Llama-3
  tokenizer (``add_special_tokens=False``). Every engine gets the same token ids. An instance is
  accepted when every token is allowed by the mask and consumed, and EOS is allowed at the end.
- Each engine runs in its own worker process (one at a time, so they never share the CPU with each
  other), which does its own tokenizer preprocessing once. A compile that takes over
  ``--compile-timeout`` seconds (default 10) is killed and counted as a failure; the worker restarts.
- Mask latency: every fill-bitmask call while teacher-forcing the valid instances (first use of a
  compiled schema included, i.e. lazily computed masks are billed to the step that needs them).
  corral's in-memory mask memo is cleared before each compile and its on-disk mask cache starts
  empty for the run (``--disk-cache`` keeps the user's), as the peers run without their caches.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # allow `python benchmarks/bench_json_schema.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    __package__ = "benchmarks"

from benchmarks import common as C

GOALS = {"compiled_pct": 97.0, "compile_p50_ms": 50.0, "compile_p90_ms": 500.0, "compile_max_ms": 10_000.0,
         "mask_p50_us": 10.0, "mask_p99_us": 1000.0}


# ----------------------------------------------------------------------------------------------
# data


def discover(root: Path, limit: int | None, categories: list[str] | None) -> list[Path]:
    cats: dict[str, list[Path]] = {}
    for p in sorted(root.glob("*/*.json")):
        if categories and p.parent.name not in categories:
            continue
        cats.setdefault(p.parent.name, []).append(p)
    for k in cats:
        cats[k].sort(key=lambda p: hashlib.sha1(p.name.encode()).hexdigest())
    if limit is None:
        return [p for k in sorted(cats) for p in cats[k]]
    out: list[Path] = []
    i = 0
    names = sorted(cats)
    while len(out) < limit and any(i < len(cats[k]) for k in names):
        for k in names:
            if i < len(cats[k]) and len(out) < limit:
                out.append(cats[k][i])
        i += 1
    return out


def _resolve(schema: Any, root: Any, depth: int = 0) -> Any:
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#") and depth < 20:
        node: Any = root
        try:
            for part in schema["$ref"][1:].split("/")[1:]:
                part = part.replace("~1", "/").replace("~0", "~")
                node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            return schema
        schema = node
        depth += 1
    return schema


def _prop_schemas(schema: Any, root: Any) -> tuple[list[str], dict[str, Any]]:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict):
        return [], {}
    order: list[str] = []
    subs: dict[str, Any] = {}
    for part in [schema] + [s for s in schema.get("allOf", []) if isinstance(schema.get("allOf"), list)]:
        part = _resolve(part, root)
        props = part.get("properties") if isinstance(part, dict) else None
        if isinstance(props, dict):
            for k, v in props.items():
                if k not in subs:
                    order.append(k)
                    subs[k] = v
    return order, subs


def _matching_branch(data: Any, schema: Any, root: Any) -> Any:
    """The first ``anyOf``/``oneOf`` branch the instance validates against (None if none or no such keyword)."""
    if not isinstance(schema, dict):
        return None
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if not isinstance(branches, list):
            continue
        try:
            import jsonschema

            cls = jsonschema.validators.validator_for(root)
            at_root = cls(root, format_checker=cls.FORMAT_CHECKER)
            for br in branches:
                # evolve keeps the root's resolver, so the branch's local $refs resolve
                if at_root.evolve(schema=br).is_valid(data):
                    return br
        except Exception:  # noqa: BLE001
            return None
    return None


def reorder(data: Any, schema: Any, root: Any, depth: int = 0) -> Any:
    """The instance with object keys in schema property order (best effort).

    Under ``anyOf``/``oneOf`` the order is the one of the branch the instance matches.
    """
    if depth > 64:
        return data
    schema = _resolve(schema, root)
    if isinstance(data, dict):
        order, subs = _prop_schemas(schema, root)
        branch = _matching_branch(data, schema, root)
        if branch is not None:
            b_order, b_subs = _prop_schemas(branch, root)
            order += [k for k in b_order if k not in subs]
            subs = {**b_subs, **subs}
        keys = [k for k in order if k in data] + [k for k in data if k not in subs]
        return {k: reorder(data[k], subs.get(k, {}), root, depth + 1) for k in keys}
    if isinstance(data, list) and isinstance(schema, dict):
        items = schema.get("items")
        prefix = schema.get("prefixItems") if isinstance(schema.get("prefixItems"), list) else (items if isinstance(items, list) else [])
        rest = items if isinstance(items, dict) else (schema.get("additionalItems") if isinstance(schema.get("additionalItems"), dict) else {})
        return [reorder(x, prefix[i] if i < len(prefix) else rest, root, depth + 1) for i, x in enumerate(data)]
    return data


def serialise(data: Any, schema: Any) -> str:
    return json.dumps(reorder(data, schema, schema), separators=(",", ":"), ensure_ascii=False)


def jsonschema_verdict(schema: Any, data: Any) -> bool | None:
    try:
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        return bool(cls(schema, format_checker=cls.FORMAT_CHECKER).is_valid(data))
    except Exception:  # noqa: BLE001
        return None


# ----------------------------------------------------------------------------------------------
# worker (one process per engine)


def worker_main(engine_name: str, tokenizer_name: str, vocab_size: int, eos_ids: tuple, conn: Any) -> None:
    try:
        C.single_thread()
        tok = C.load_tokenizer(tokenizer_name)
        eng = C.ENGINE_CLASSES[engine_name](tok, vocab_size, eos_ids)
        conn.send(("ready", eng.tokenizer_prep_s))
    except Exception as ex:  # noqa: BLE001
        conn.send(("fail", f"{type(ex).__name__}: {ex}"))
        return
    import gc

    while True:
        task = conn.recv()
        if task is None:
            return
        schema, instances = task
        if engine_name == "corral":
            C.clear_corral_caches()
        gc.collect()
        t0 = time.perf_counter()
        try:
            factory = eng.compile("json_schema", schema)
            dt = time.perf_counter() - t0
            conn.send(("compiled", True, dt, None))
        except BaseException as ex:  # noqa: BLE001
            dt = time.perf_counter() - t0
            conn.send(("compiled", False, dt, f"{type(ex).__name__}: {str(ex)[:300]}"))
            continue
        out = []
        words = eng.mask_words()
        eos = eng.eos_ids[0]
        now = C.now_ns
        for ids, valid in instances:
            lat: list[int] = []
            try:
                m = factory()
                ok = True
                gc.disable()
                for t in ids + [eos]:
                    t1 = now()
                    eng.fill(m)
                    lat.append(now() - t1)
                    if not (int(words[t >> 5]) >> (t & 31)) & 1:
                        ok = False
                        break
                    if t != eos and not eng.consume(m, t):
                        ok = False
                        break
                gc.enable()
                out.append({"accepted": ok, "lat": lat if valid else [], "error": None})
            except BaseException as ex:  # noqa: BLE001
                gc.enable()
                out.append({"accepted": False, "lat": [], "error": f"{type(ex).__name__}: {str(ex)[:200]}"})
        conn.send(("done", out))


class Worker:
    def __init__(self, engine: str, tokenizer: str, vocab_size: int, eos_ids: tuple, log: Any) -> None:
        self.engine, self.tokenizer, self.vocab_size, self.log = engine, tokenizer, vocab_size, log
        self.eos_ids = eos_ids
        self.proc = None
        self.conn = None
        self.prep_s: list[float] = []
        self.failed: str | None = None

    def start(self) -> bool:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(self.engine, self.tokenizer, self.vocab_size, self.eos_ids, child), daemon=True)
        self.proc.start()
        self.conn = parent
        if not parent.poll(600):
            self.kill()
            self.failed = "worker did not start in 600 s"
            return False
        msg = parent.recv()
        if msg[0] != "ready":
            self.failed = msg[1]
            self.kill()
            return False
        self.prep_s.append(msg[1])
        self.log(f"[prep] {self.engine}: tokenizer preprocessing {msg[1] * 1e3:.0f} ms (worker pid {self.proc.pid})")
        return True

    def kill(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            try:
                self.conn.send(None)
                self.proc.join(5)
            except Exception:  # noqa: BLE001
                pass
        self.kill()

    def run(self, schema: Any, instances: list, compile_timeout: float, run_timeout: float) -> dict[str, Any]:
        if self.proc is None and not self.start():
            return {"compiled": False, "error": f"worker: {self.failed}"}
        self.conn.send((schema, instances))
        if not self.conn.poll(compile_timeout):
            self.kill()
            return {"compiled": False, "timeout": True, "compile_s": None, "error": f"compile timeout > {compile_timeout:.0f} s"}
        try:
            _, ok, dt, err = self.conn.recv()
        except EOFError:
            self.kill()
            return {"compiled": False, "compile_s": None, "error": "worker crashed while compiling"}
        if not ok:
            return {"compiled": False, "compile_s": dt, "error": err}
        if not self.conn.poll(run_timeout):
            self.kill()
            return {"compiled": True, "compile_s": dt, "instances": None, "error": f"instances timeout > {run_timeout:.0f} s"}
        try:
            _, out = self.conn.recv()
        except EOFError:
            self.kill()
            return {"compiled": True, "compile_s": dt, "instances": None, "error": "worker crashed on instances"}
        return {"compiled": True, "compile_s": dt, "instances": out}


# ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 schemas sampled across categories")
    ap.add_argument("--limit", type=int, default=None, help="at most N schemas (round-robin across categories)")
    ap.add_argument("--categories", default=None, help="comma-separated category folders")
    ap.add_argument("--data", default=str(C.SHARED_DATA / "maskbench-dev"))
    ap.add_argument("--peers", dest="peers", action="store_true", default=True)
    ap.add_argument("--no-peers", dest="peers", action="store_false")
    ap.add_argument("--engines", default=None, help="restrict engines, e.g. corral,xgrammar")
    ap.add_argument("--compile-timeout", type=float, default=10.0)
    ap.add_argument("--run-timeout", type=float, default=120.0)
    ap.add_argument("--max-tokens", type=int, default=4096, help="skip instances longer than this many tokens")
    ap.add_argument("--tokenizer", default="llama3", choices=["llama3", "smollm2"])
    ap.add_argument("--out", default=None)
    ap.add_argument("--disk-cache", action="store_true",
                    help="use corral's on-disk mask cache as it is (warm from earlier runs); default: a fresh one")
    args = ap.parse_args(argv)
    C.fresh_mask_cache(args.disk_cache)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    root = Path(args.data)
    if not root.is_dir():
        log(f"[skip] no data at {root}")
        return 0
    limit = args.limit if args.limit is not None else (20 if args.quick else None)
    files = discover(root, limit, args.categories.split(",") if args.categories else None)
    log(f"[data] {len(files)} schemas from {root}")
    C.single_thread()
    tok = C.load_tokenizer(args.tokenizer)
    vocab_size = C.tokenizer_width(tok)
    from corral.vocab import Vocabulary

    vocab = Vocabulary.from_tokenizer(tok, vocab_size=vocab_size)

    names = ["corral"] + (["xgrammar", "llguidance"] if args.peers else [])
    if args.engines:
        names = [n for n in names if n in args.engines.split(",")]
    names = [n for n in names if n == "corral" or C.peer_available(n)]
    workers = {n: Worker(n, args.tokenizer, vocab_size, tuple(vocab.eos_ids), log) for n in names}

    per_schema = []
    t_start = time.perf_counter()
    for i, f in enumerate(files):
        try:
            doc = json.loads(f.read_text(encoding="utf-8"))
        except Exception as ex:  # noqa: BLE001
            log(f"[skip] {f}: {ex}")
            continue
        schema = doc.get("schema")
        insts, meta = [], []
        for k, t in enumerate(doc.get("tests", [])):
            try:
                text = serialise(t["data"], schema)
            except Exception:  # noqa: BLE001
                continue
            ids = [int(x) for x in tok(text, add_special_tokens=False)["input_ids"]]
            if len(ids) > args.max_tokens or vocab.decode_bytes(ids) != text.encode("utf-8"):
                continue
            insts.append((ids, bool(t.get("valid"))))
            meta.append({"valid": bool(t.get("valid")), "text": text[:300], "n_tokens": len(ids),
                         "jsonschema": jsonschema_verdict(schema, t["data"])})
        rec: dict[str, Any] = {"file": f"{f.parent.name}/{f.name}", "category": f.parent.name, "instances": meta, "engines": {}}
        for n, w in workers.items():
            r = w.run(schema, insts, args.compile_timeout, args.run_timeout)
            rec["engines"][n] = r
        per_schema.append(rec)
        if (i + 1) % 10 == 0 or i + 1 == len(files):
            log(f"[{i + 1}/{len(files)}] {time.perf_counter() - t_start:.0f} s")
    for w in workers.values():
        w.stop()

    text, summary = report(per_schema, names, workers, args)
    print(text)
    name = args.out or ("bench_json_schema_quick.json" if args.quick or args.limit else "bench_json_schema.json")
    samples = {n: [x for r in per_schema for inst in (r["engines"][n].get("instances") or []) for x in inst["lat"]] for n in names}
    for r in per_schema:  # keep the JSON small: latencies are summarised
        for n in names:
            for inst in r["engines"][n].get("instances") or []:
                inst["n_masks"] = len(inst.pop("lat"))
    p = C.write_json(name, {"benchmark": "bench_json_schema", "args": vars(args), "environment": C.environment(),
                            "summary": summary, "schemas": per_schema, "markdown": text})
    png = C.plot_latency_cdf(samples, C.RESULTS_DIR / name.replace(".json", "_cdf.png"),
                             f"JSON Schema mask latency CDF ({len(per_schema)} schemas)")
    log(f"[out] {p}" + (f", {png}" if png else ""))
    return 0


def report(per_schema: list[dict], names: list[str], workers: dict[str, Worker], args: argparse.Namespace) -> tuple[str, dict]:
    n_schemas = len(per_schema)
    summary: dict[str, Any] = {}
    rows = []
    for n in names:
        comp = [r for r in per_schema if r["engines"][n].get("compiled")]
        ctimes = [r["engines"][n]["compile_s"] for r in comp]
        v_tot = v_ok = i_tot = i_ref = 0
        lat: list[int] = []
        for r in comp:
            out = r["engines"][n].get("instances") or []
            for meta, res in zip(r["instances"], out):
                if meta["valid"]:
                    v_tot += 1
                    v_ok += res["accepted"]
                    lat.extend(res["lat"])
                else:
                    i_tot += 1
                    i_ref += not res["accepted"]
        cp = C.percentiles_ms(ctimes)
        lp = C.percentiles_us(lat)
        timeouts = sum(1 for r in per_schema if r["engines"][n].get("timeout"))
        summary[n] = {"schemas": n_schemas, "compiled": len(comp), "timeouts": timeouts, "valid": v_tot, "valid_accepted": v_ok,
                      "invalid": i_tot, "invalid_refused": i_ref, "compile_ms": cp, "mask_us": lp,
                      "tokenizer_prep_ms": [x * 1e3 for x in workers[n].prep_s]}
        rows.append([n, f"{C.fmt_pct(len(comp), n_schemas)} ({len(comp)}/{n_schemas})",
                     f"{C.fmt_pct(v_ok, v_tot)} ({v_ok}/{v_tot})", f"{C.fmt_pct(i_ref, i_tot)} ({i_ref}/{i_tot})",
                     C.fmt_ms(cp["p50"]), C.fmt_ms(cp["p90"]), C.fmt_ms(cp["max"]), str(timeouts),
                     C.fmt_us(lp["p50"]), C.fmt_us(lp["p99"]), lp["n"],
                     f"{workers[n].prep_s[0] * 1e3:.0f}" if workers[n].prep_s else "-"])
    lines = [f"## JSON Schema (MaskBench dev, {n_schemas} schemas), Llama-3 tokenizer, compact whitespace\n"]
    lines.append(C.markdown_table(["engine", "compiled", "valid accepted", "invalid refused", "compile p50 ms", "compile p90 ms",
                                   "compile max ms", "timeouts", "mask p50 µs", "mask p99 µs", "masks", "tokenizer prep ms"], rows))
    lines.append("\n(valid accepted / invalid refused are over the schemas that engine compiled; timeouts count as not compiled)")
    # schemas every engine compiled: a like-for-like comparison
    common = [r for r in per_schema if all(r["engines"][n].get("compiled") for n in names)]
    if len(names) > 1:
        rows = []
        for n in names:
            ct = [r["engines"][n]["compile_s"] for r in common]
            lat = [x for r in common for inst in (r["engines"][n].get("instances") or []) for x in inst["lat"]]
            cp, lp = C.percentiles_ms(ct), C.percentiles_us(lat)
            rows.append([n, len(common), C.fmt_ms(cp["p50"]), C.fmt_ms(cp["p90"]), C.fmt_ms(cp["max"]), C.fmt_us(lp["p50"]), C.fmt_us(lp["p99"])])
        lines.append(f"\n### Schemas every engine compiled ({len(common)})\n")
        lines.append(C.markdown_table(["engine", "schemas", "compile p50 ms", "compile p90 ms", "compile max ms", "mask p50 µs", "mask p99 µs"], rows))
    # per category, corral
    cats: dict[str, list] = {}
    for r in per_schema:
        cats.setdefault(r["category"], []).append(r)
    rows = []
    for cat, rs in sorted(cats.items()):
        row = [cat, len(rs)]
        for n in names:
            row.append(f"{sum(1 for r in rs if r['engines'][n].get('compiled'))}")
        rows.append(row)
    lines.append("\n### Compiled per category\n")
    lines.append(C.markdown_table(["category", "schemas"] + names, rows))
    if "corral" in summary:
        s = summary["corral"]
        goals = [("compiles >= 97% of schemas", C.fmt_pct(s["compiled"], s["schemas"]), s["schemas"] and 100 * s["compiled"] / s["schemas"] >= 97),
                 ("accepts 100% of valid instances (compiled schemas)", C.fmt_pct(s["valid_accepted"], s["valid"]), s["valid_accepted"] == s["valid"]),
                 ("refuses 100% of invalid instances (compiled schemas)", C.fmt_pct(s["invalid_refused"], s["invalid"]), s["invalid_refused"] == s["invalid"]),
                 ("compile p50 <= 50 ms", C.fmt_ms(s["compile_ms"]["p50"]), s["compile_ms"]["p50"] <= 50),
                 ("compile p90 <= 500 ms", C.fmt_ms(s["compile_ms"]["p90"]), s["compile_ms"]["p90"] <= 500),
                 ("no compile over 10 s", f"max {C.fmt_ms(s['compile_ms']['max'])}, timeouts {s['timeouts']}", s["compile_ms"]["max"] <= 10_000 and not s["timeouts"]),
                 ("mask p50 <= 10 µs", C.fmt_us(s["mask_us"]["p50"]), s["mask_us"]["p50"] <= 10),
                 ("mask p99 <= 1 ms", C.fmt_us(s["mask_us"]["p99"]), s["mask_us"]["p99"] <= 1000)]
        lines.append("\n## Goals (corral)\n")
        lines.append(C.markdown_table(["goal", "measured", "met"], [[a, b, "yes" if c else "**no**"] for a, b, c in goals]))
        # corral failures by error type
        errs: dict[str, int] = {}
        for r in per_schema:
            e = r["engines"]["corral"]
            if not e.get("compiled"):
                key = (e.get("error") or "?").split(":")[0]
                errs[key] = errs.get(key, 0) + 1
        if errs:
            lines.append("\ncorral compile failures by error: " + ", ".join(f"{k} {v}" for k, v in sorted(errs.items(), key=lambda x: -x[1])))
        wrong = []
        for r in per_schema:
            e = r["engines"]["corral"]
            for meta, res in zip(r["instances"], e.get("instances") or []):
                if meta["valid"] != res["accepted"]:
                    wrong.append(f"- {r['file']}: {'valid refused' if meta['valid'] else 'invalid accepted'}"
                                 f" (jsonschema says {meta['jsonschema']}): {meta['text'][:120]!r}" + (f" [{res['error']}]" if res.get("error") else ""))
        if wrong:
            lines.append(f"\ncorral wrong on {len(wrong)} instance(s) (first 15):")
            lines.extend(wrong[:15])
    return "\n".join(lines), summary


if __name__ == "__main__":
    sys.exit(main())
