"""Conformance runner: JSON-Schema-Test-Suite and MaskBench-style files against the JSON Schema compiler.

``run_suite(kind)`` compiles each schema, serialises each case compactly (keys in schema
property order where possible) and records whether ``Grammar.accepts`` agrees with
``valid``. Case ids are ``<relative file>#<group>/<case>``.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
SUITE = DATA / "json-schema-test-suite"
MASKBENCH = DATA / "maskbench-dev"


def data_available() -> bool:
    return SUITE.is_dir() or MASKBENCH.is_dir()


def _suite_resolver(uri: str):
    prefix = "http://localhost:1234/"
    if uri.startswith(prefix):
        p = SUITE / "remotes" / uri[len(prefix):]
        if p.is_file():
            return json.loads(p.read_text())
    for draft, name in (("draft2020-12", "https://json-schema.org/draft/2020-12/schema"),
                        ("draft7", "http://json-schema.org/draft-07/schema")):
        if uri.rstrip("#") == name:
            return None
    return None


def property_order(schema) -> dict[str, int]:
    """Rank of each property name by first appearance in a `properties` keyword (document order)."""
    rank: dict[str, int] = {}

    def walk(s, second=False):
        if isinstance(s, dict):
            for k, v in s.items():
                if k == "properties" and isinstance(v, dict):
                    for n in v:
                        rank.setdefault(n, len(rank))
                    for x in v.values():
                        walk(x, second)
                elif not second and k in ("const", "enum", "required", "dependentRequired", "dependencies"):
                    continue
                elif k in ("const", "enum"):
                    keys_of(v)
                elif k in ("examples", "default"):
                    continue
                elif k == "required" and isinstance(v, list):
                    for n in v:
                        if isinstance(n, str):
                            rank.setdefault(n, len(rank))
                elif k in ("dependentRequired", "dependencies") and isinstance(v, dict):
                    for n, req in v.items():
                        rank.setdefault(n, len(rank))
                        if isinstance(req, list):
                            for r in req:
                                rank.setdefault(r, len(rank)) if isinstance(r, str) else None
                        else:
                            walk(req, second)
                else:
                    walk(v, second)
        elif isinstance(s, list):
            for x in s:
                walk(x, second)

    def keys_of(v):
        if isinstance(v, dict):
            for n, x in v.items():
                rank.setdefault(n, len(rank))
                keys_of(x)
        elif isinstance(v, list):
            for x in v:
                keys_of(x)

    walk(schema)
    walk(schema, True)
    return rank


def reorder(x, rank):
    if isinstance(x, dict):
        keys = sorted(x, key=lambda k: (0, rank[k]) if k in rank else (1, 0))
        return {k: reorder(x[k], rank) for k in keys}
    if isinstance(x, list):
        return [reorder(v, rank) for v in x]
    return x


def _deref(s, root, depth=0):
    if isinstance(s, dict) and isinstance(s.get("$ref"), str) and s["$ref"].startswith("#") and depth < 20:
        t = root
        for part in s["$ref"][1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(t, dict) and part in t:
                t = t[part]
            else:
                return s
        return _deref(t, root, depth + 1)
    return s


def _modern(root) -> bool:
    """Whether $ref siblings apply (2019-09 and later): then the schema's own properties come first."""
    sch = root.get("$schema", "") if isinstance(root, dict) else ""
    return _MODERN and not (isinstance(sch, str) and "draft-0" in sch)


_MODERN = True


def _branches(s, root, depth=0):
    """The schema and every subschema applied in place (refs, allOf/anyOf/oneOf, if/then/else)."""
    if isinstance(s, dict) and isinstance(s.get("$ref"), str) and _modern(root) and (
            set(s) & {"properties", "required", "allOf", "anyOf", "oneOf", "if"}):
        if depth > 8:
            return []
        out = [s] + _branches(_deref({"$ref": s["$ref"]}, root), root, depth + 1)
    else:
        s = _deref(s, root)
        if not isinstance(s, dict) or depth > 8:
            return []
        out = [s]
        if isinstance(s.get("$ref"), str):
            out += (_branches({"$ref": s["$ref"]}, root, depth + 1)
                    if _deref({"$ref": s["$ref"]}, root) is not s else [])
    for k in ("allOf", "anyOf", "oneOf"):
        if isinstance(s.get(k), list):
            for x in s[k]:
                out += _branches(x, root, depth + 1)
    for k in ("if", "then", "else"):
        if isinstance(s.get(k), dict):
            out += _branches(s[k], root, depth + 1)
    return out


def guided(x, s, root, rank):
    """Reorder keys following the schema at this location (best-matching branch first), else global rank."""
    br = _branches(s, root) if s is not None else []
    if isinstance(x, dict):
        props = [b["properties"] for b in br if isinstance(b.get("properties"), dict)]
        props.sort(key=lambda p: -len(set(p) & set(x)))
        order: dict[str, int] = {}
        for p in props:
            for n in p:
                order.setdefault(n, len(order))
        keys = sorted(x, key=lambda k: (0, order[k]) if k in order else (1, rank.get(k, 1 << 30)))
        out = {}
        for k in keys:
            sub = next((p[k] for p in props if k in p), None)
            if sub is None:
                for b in br:
                    if isinstance(b.get("additionalProperties"), dict):
                        sub = b["additionalProperties"]
                        break
            out[k] = guided(x[k], sub, root, rank)
        return out
    if isinstance(x, list):
        res = []
        for i, v in enumerate(x):
            sub = None
            for b in br:
                pi = b.get("prefixItems") if isinstance(b.get("prefixItems"), list) else (
                    b.get("items") if isinstance(b.get("items"), list) else None)
                if pi is not None and i < len(pi):
                    sub = pi[i]
                    break
                if isinstance(b.get("items"), dict):
                    sub = b["items"]
                    break
            res.append(guided(v, sub, root, rank))
        return res
    return x


def serialise(data, schema, modern: bool = True) -> str:
    global _MODERN
    _MODERN = modern
    rank = property_order(schema)
    try:
        data = guided(data, schema, schema, rank)
    except RecursionError:
        data = reorder(data, rank)
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def groups(kind: str):
    """Yield (group_id, schema, [(case_id, data, valid)])."""
    if kind in ("draft2020-12", "draft7"):
        base = SUITE / "tests" / kind
        for f in sorted(base.glob("*.json")):
            for gi, g in enumerate(json.loads(f.read_text())):
                gid = f"{kind}/{f.name}#{gi}"
                yield gid, g["schema"], [(f"{gid}/{ci}", c["data"], c["valid"]) for ci, c in enumerate(g["tests"])]
    elif kind == "maskbench":
        for f in sorted(glob.glob(str(MASKBENCH / "*" / "*.json"))):
            d = json.loads(Path(f).read_text())
            gid = "maskbench/" + os.path.relpath(f, MASKBENCH)
            yield gid, d["schema"], [(f"{gid}/{ci}", c["data"], c["valid"]) for ci, c in enumerate(d["tests"])]
    else:
        raise ValueError(kind)


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_group(gid, schema, cases, timeout: float = 20.0, **options):
    from corral.automaton.grammar import Grammar
    from corral.errors import CorralError
    from corral.sources.json_schema import json_schema_to_ir

    out = {"group": gid, "compiled": False, "error": None, "compile_s": None, "cases": {}}
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        t = time.perf_counter()
        try:
            ir = json_schema_to_ir(schema, resolver=_suite_resolver, **options)
            g = Grammar.from_ir(ir)
            out["compiled"] = True
        except (CorralError, RecursionError) as e:
            out["error"] = f"{type(e).__name__}: {e}"[:300]
        except _Timeout:
            out["error"] = "timeout"
        out["compile_s"] = time.perf_counter() - t
        for cid, data, valid in cases:
            if not out["compiled"]:
                out["cases"][cid] = False
                continue
            try:
                ok = g.accepts(serialise(data, schema, options.get("default_draft", 2020) >= 2019)) == valid
            except _Timeout:
                ok = False
                out["error"] = "timeout while matching"
            out["cases"][cid] = ok
    except _Timeout:
        out["error"] = "timeout"
        for cid, _, _ in cases:
            out["cases"].setdefault(cid, False)
    except Exception as e:  # a crash is a bug: record it, never hide it
        out["error"] = f"CRASH {type(e).__name__}: {e}"[:300]
        for cid, _, _ in cases:
            out["cases"][cid] = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return out


def _run_one(args):
    gid, schema, cases, options = args
    return run_group(gid, schema, cases, **options)


def run_suite(kind: str, *, processes: int = 2, verbose: bool = False, limit: int | None = None,
              stride: int = 1, **options) -> dict:
    """Run one suite ("draft2020-12", "draft7" or "maskbench"); returns a results dict.

    ``stride=k`` runs every k-th schema only (a deterministic sample).
    """
    if kind in ("draft2020-12", "draft7"):
        # the suite's required tests treat format as an annotation (the specification's default)
        options.setdefault("format_assertion", False)
        options.setdefault("default_draft", 7 if kind == "draft7" else 2020)
    work = [(gid, s, cs, options) for gid, s, cs in groups(kind)][::stride][:limit]
    if processes > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(processes) as pool:
            res = pool.map(_run_one, work, chunksize=4)
    else:
        res = [_run_one(w) for w in work]
    cases = {}
    for r in res:
        cases.update(r["cases"])
    times = sorted(r["compile_s"] for r in res if r["compiled"])
    ok_compiled = [r for r in res if r["compiled"]]
    n_cases_compiled = sum(len(r["cases"]) for r in ok_compiled)
    right_compiled = sum(sum(r["cases"].values()) for r in ok_compiled)

    def pct(q):
        return times[min(len(times) - 1, int(q * len(times)))] if times else None

    summary = {
        "kind": kind,
        "schemas": len(res),
        "compiled": len(ok_compiled),
        "compiled_pct": 100.0 * len(ok_compiled) / max(1, len(res)),
        "cases": len(cases),
        "right": sum(cases.values()),
        "right_pct": 100.0 * sum(cases.values()) / max(1, len(cases)),
        "right_of_compiled_pct": 100.0 * right_compiled / max(1, n_cases_compiled),
        "compile_p50_s": pct(0.5),
        "compile_p90_s": pct(0.9),
        "compile_max_s": times[-1] if times else None,
    }
    return {"summary": summary, "cases": cases, "groups": res}


def print_summary(s: dict) -> None:
    print(f"{s['kind']}: schemas compiled {s['compiled']}/{s['schemas']} ({s['compiled_pct']:.1f}%), "
          f"cases right {s['right']}/{s['cases']} ({s['right_pct']:.1f}%), "
          f"right on compiled {s['right_of_compiled_pct']:.2f}%, compile p50 {1000 * (s['compile_p50_s'] or 0):.0f} ms "
          f"p90 {1000 * (s['compile_p90_s'] or 0):.0f} ms max {1000 * (s['compile_max_s'] or 0):.0f} ms")


def ratchet_path(kind: str) -> Path:
    return Path(__file__).with_name(f"ratchet-{kind}.json")


def write_ratchet(kind: str, results: dict) -> None:
    """Passing cases as {group: [case indices]} (sorted), one group per line."""
    by_group: dict[str, list[int]] = {}
    for k, v in results["cases"].items():
        if v:
            g, i = k.rsplit("/", 1)
            by_group.setdefault(g, []).append(int(i))
    lines = [json.dumps(g) + ": " + json.dumps(sorted(ix)) for g, ix in sorted(by_group.items())]
    ratchet_path(kind).write_text("{\n" + ",\n".join(lines) + "\n}\n")


def read_ratchet(kind: str) -> list[str]:
    d = json.loads(ratchet_path(kind).read_text())
    if "passing" in d:
        return d["passing"]
    return sorted(f"{g}/{i}" for g, ix in d.items() for i in ix)


if __name__ == "__main__":
    import sys

    kinds = sys.argv[1:] or ["maskbench", "draft2020-12", "draft7"]
    for k in kinds:
        t = time.time()
        r = run_suite(k)
        print_summary(r["summary"])
        print(f"  ({time.time() - t:.0f} s)")
        if os.environ.get("WRITE_RATCHET"):
            write_ratchet(k, r)
        if os.environ.get("SHOW_FAIL"):
            for g in r["groups"]:
                bad = [c for c, v in g["cases"].items() if not v]
                if bad:
                    print(g["group"], g["error"], len(bad))
