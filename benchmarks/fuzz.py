"""Fuzzing corral against oracles (issue 8): random regexes, Lark grammars, JSON schemas.

    python benchmarks/fuzz.py [--cases 2000] [--seed 0] [--kinds regex,lark,schema,matcher]

Each case is generated from a ``random.Random``; the same generators drive the hypothesis
tests in ``tests/test_fuzz.py``. Outcomes per case:

* compile: a ``Grammar`` or a ``CorralError`` (anything else is a *crash*);
* agreement: ``Grammar.accepts`` against the oracle (Python ``re.fullmatch`` for regexes,
  Lark's Earley ``dynamic_complete`` parser for Lark grammars, ``jsonschema`` for schemas)
  on random strings and on the grammar's own random sentences; a disagreement is a
  *wrong mask* (the masks are derived from the same automaton ``accepts`` walks, and the
  ``matcher`` kind checks masks against byte walks directly);
* matcher: random bytes / random token ids fed to a matcher never raise; refused tokens
  return False and leave the state unchanged; every token in a mask is consumable.

Prints: cases tried, crashes, wrong masks, slowest compile.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from typing import Any

# ----------------------------------------------------------------------------- generators
_ALPHA = "abc"


def gen_regex(rng: random.Random, depth: int = 3) -> str:
    """A random Python-dialect regex over a small alphabet (no lookaround / backreferences)."""
    if depth <= 0 or rng.random() < 0.3:
        k = rng.random()
        if k < 0.55:
            return rng.choice(_ALPHA)
        if k < 0.7:
            return rng.choice(["[ab]", "[^a]", "[a-c]", "."])
        if k < 0.8:
            return rng.choice([r"\d", "x", "(?:)"])
        return rng.choice(_ALPHA) + rng.choice(_ALPHA)
    k = rng.random()
    if k < 0.35:
        return "".join(gen_regex(rng, depth - 1) for _ in range(rng.randint(2, 3)))
    if k < 0.6:
        return "(" + "|".join(gen_regex(rng, depth - 1) for _ in range(rng.randint(2, 3))) + ")"
    inner = gen_regex(rng, depth - 1)
    q = rng.choice(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}", "*?", "+?"])
    return "(?:" + inner + ")" + q


def gen_string(rng: random.Random, alphabet: str = _ALPHA + "1", max_len: int = 8) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, max_len)))


def gen_lark(rng: random.Random) -> str:
    """A small random Lark grammar (2-4 rules; literals, classes, EBNF operators, recursion)."""
    n = rng.randint(1, 4)
    names = ["start"] + [f"r{i}" for i in range(1, n)]

    def atom(d: int) -> str:
        k = rng.random()
        if k < 0.4:
            return '"' + rng.choice(["a", "b", "ab", "c"]) + '"'
        if k < 0.55:
            return rng.choice(["/[ab]/", "/a+/", "/b?c/", '"x"i'])
        if k < 0.8:
            return rng.choice(names)
        if d > 0:
            return "(" + alts(d - 1) + ")" + rng.choice(["", "*", "+", "?"])
        return '"a"'

    def seq(d: int) -> str:
        return " ".join(atom(d) + rng.choice(["", "", "", "?", "*"]) for _ in range(rng.randint(1, 3)))

    def alts(d: int) -> str:
        return " | ".join(seq(d) for _ in range(rng.randint(1, 3)))

    lines = [f"{name}: {alts(1)}" for name in names]
    if rng.random() < 0.2:
        lines.append('%ignore " "')
    return "\n".join(lines) + "\n"


def gen_schema(rng: random.Random, depth: int = 2) -> Any:
    """A small random JSON schema (objects have at most one property so key order is fixed)."""
    k = rng.random()
    if depth <= 0 or k < 0.45:
        t = rng.choice(["integer", "string", "boolean", "null", "enum", "const"])
        if t == "integer":
            s: dict = {"type": "integer"}
            if rng.random() < 0.5:
                s["minimum"] = rng.randint(-20, 20)
            if rng.random() < 0.5:
                s["maximum"] = rng.randint(-20, 40)
            if rng.random() < 0.2:
                s["multipleOf"] = rng.choice([2, 3, 5])
            return s
        if t == "string":
            s = {"type": "string"}
            if rng.random() < 0.4:
                s["minLength"] = rng.randint(0, 3)
            if rng.random() < 0.4:
                s["maxLength"] = rng.randint(0, 5)
            if rng.random() < 0.3:
                s["pattern"] = rng.choice(["^a+$", "^[ab]*$", "b", "^a.?$"])
            return s
        if t == "enum":
            return {"enum": rng.sample([0, 1, -3, "a", "b", "", True, None, [1], {"k": 1}], rng.randint(1, 4))}
        if t == "const":
            return {"const": rng.choice([0, "a", None, [], [1, "x"]])}
        return {"type": t}
    if k < 0.65:
        s = {"type": "array", "items": gen_schema(rng, depth - 1)}
        if rng.random() < 0.4:
            s["minItems"] = rng.randint(0, 2)
        if rng.random() < 0.4:
            s["maxItems"] = rng.randint(0, 3)
        return s
    if k < 0.8:
        key = rng.choice(["a", "b", "ü"])
        s = {"type": "object", "properties": {key: gen_schema(rng, depth - 1)}, "additionalProperties": False}
        if rng.random() < 0.5:
            s["required"] = [key]
        return s
    comb = rng.choice(["anyOf", "oneOf", "allOf"])
    out: dict = {comb: [gen_schema(rng, depth - 1) for _ in range(rng.randint(1, 3))]}
    if rng.random() < 0.2:
        out["not"] = gen_schema(rng, 0)
    return out


def gen_value(rng: random.Random, depth: int = 2) -> Any:
    """A random JSON value (integers only: exponent spellings are a representation choice)."""
    k = rng.random()
    if depth <= 0 or k < 0.6:
        return rng.choice([None, True, False, rng.randint(-25, 45), rng.choice(["", "a", "aa", "ab", "b", "ba", "abc", "é"])])
    if k < 0.85:
        return [gen_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return {rng.choice(["a", "b", "ü"]): gen_value(rng, depth - 1)}


def compact(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


# ----------------------------------------------------------------------------- checks
class Result:
    def __init__(self) -> None:
        self.cases = 0
        self.compiled = 0
        self.errors = 0  # documented corral errors (fine)
        self.crashes: list[str] = []
        self.wrong: list[str] = []
        self.slowest = (0.0, "")
        self.checks = 0

    def timed_compile(self, label: str, fn):
        from corral import CorralError

        self.cases += 1
        t0 = time.perf_counter()
        try:
            g = fn()
        except CorralError:
            self.errors += 1
            g = None
        except Exception as e:  # noqa: BLE001 - this is what we hunt for
            self.crashes.append(f"{label}: {type(e).__name__}: {e}")
            g = None
        dt = time.perf_counter() - t0
        if dt > self.slowest[0]:
            self.slowest = (dt, label)
        if g is not None:
            self.compiled += 1
        return g

    def summary(self) -> str:
        return (f"cases tried: {self.cases} (compiled {self.compiled}, documented errors {self.errors}), "
                f"oracle checks: {self.checks}, crashes: {len(self.crashes)}, wrong masks: {len(self.wrong)}, "
                f"slowest compile: {self.slowest[0]:.3f}s ({self.slowest[1][:80]})")


def regex_case(rng: random.Random, res: Result, n_strings: int = 30) -> None:
    from corral import Grammar
    from corral.testing import random_sentence

    pat = gen_regex(rng)
    try:
        rx = re.compile(pat)
    except re.error:
        rx = None
    g = res.timed_compile(f"regex {pat!r}", lambda: Grammar.from_regex(pat))
    if g is None or rx is None:
        if g is not None and rx is None:
            res.wrong.append(f"regex {pat!r}: compiles but Python re rejects it")
        return
    strings = [gen_string(rng) for _ in range(n_strings)]
    strings += [random_sentence(g.ir, rng).decode("utf-8") for _ in range(5)]
    for s in strings:
        res.checks += 1
        if g.accepts(s) != bool(rx.fullmatch(s)):
            res.wrong.append(f"regex {pat!r} on {s!r}: corral {g.accepts(s)}, re {not g.accepts(s)}")


def _lark_oracle(text: str):
    import lark

    try:
        return lark.Lark(text, parser="earley", lexer="dynamic_complete")
    except Exception:  # noqa: BLE001 - oracle could not load: skip the agreement part
        return None


def lark_case(rng: random.Random, res: Result, n_strings: int = 20) -> None:
    import lark

    from corral import Grammar
    from corral.testing import random_sentence

    text = gen_lark(rng)
    g = res.timed_compile(f"lark {text!r}", lambda: Grammar.from_lark(text))
    if g is None:
        return
    oracle = _lark_oracle(text)
    if oracle is None:
        return
    strings = [gen_string(rng, "abcx ", 6) for _ in range(n_strings)]
    strings += [random_sentence(g.ir, rng, max_depth=6).decode("utf-8") for _ in range(5)]
    for s in strings:
        if len(s) > 40:
            continue
        try:
            oracle.parse(s)
            want = True
        except lark.exceptions.LarkError:
            want = False
        except RecursionError:
            continue
        res.checks += 1
        got = g.accepts(s)
        if got != want:
            res.wrong.append(f"lark {text!r} on {s!r}: corral {got}, lark {want}")


def schema_case(rng: random.Random, res: Result, n_values: int = 25) -> None:
    import jsonschema

    from corral import Grammar
    from corral.testing import random_sentence

    schema = gen_schema(rng)
    g = res.timed_compile(f"schema {compact(schema)}", lambda: Grammar.from_json_schema(schema))
    if g is None:
        return
    validator = jsonschema.Draft202012Validator(schema)
    texts = [compact(gen_value(rng)) for _ in range(n_values)]
    if g.ir.rules:
        for _ in range(5):
            s = random_sentence(g.ir, rng, max_depth=8).decode("utf-8")
            texts.append(s)
    for text in texts:
        v = json.loads(text)
        if compact(v) != text:
            # A grammar sentence in another spelling (escapes, 1.0 for 1): only the validator applies.
            if not validator.is_valid(v):
                res.wrong.append(f"schema {compact(schema)}: grammar sentence {text!r} does not validate")
            res.checks += 1
            continue
        res.checks += 1
        want = validator.is_valid(v)
        got = g.accepts(text)
        if got != want:
            res.wrong.append(f"schema {compact(schema)} on {text}: corral {got}, jsonschema {want}")


_VOCAB = None


def fuzz_vocab():
    """A small vocabulary: EOS (None), all 256 bytes, and some multi-byte tokens."""
    global _VOCAB
    if _VOCAB is None:
        from corral import Vocabulary

        toks: list[bytes | None] = [None] + [bytes([b]) for b in range(256)]
        toks += [b"ab", b"ba", b"aa", b"abc", b'":', b'{"', b'"}', b"[1", b",", b"null", b"true", b"\xc3\xa9", b"\xc3"]
        _VOCAB = Vocabulary(toks, eos_ids=[0])
    return _VOCAB


def matcher_case(rng: random.Random, res: Result, steps: int = 40) -> None:
    """Random bytes and token ids against a matcher; masks checked against byte walks."""
    import numpy as np

    from corral import Grammar

    k = rng.random()
    if k < 0.4:
        src = ("regex", gen_regex(rng))
    elif k < 0.7:
        src = ("lark", gen_lark(rng))
    else:
        src = ("schema", gen_schema(rng))
    vocab = fuzz_vocab()

    def build():
        if src[0] == "regex":
            return Grammar.from_regex(src[1], vocab)
        if src[0] == "lark":
            return Grammar.from_lark(src[1], vocab)
        return Grammar.from_json_schema(src[1], vocab)

    label = f"matcher {src[0]} {src[1]!r}"
    g = res.timed_compile(label, build)
    if g is None:
        return
    try:
        m = g.matcher()
        for _ in range(steps):
            if m.is_terminated():
                break
            r = rng.random()
            if r < 0.3:
                tid = rng.randrange(-3, vocab.size + 5)  # includes out-of-range ids
                before = m.state
                ok = m.consume_token(tid)
                if not ok and m.state != before:
                    res.wrong.append(f"{label}: refused token {tid} changed the state")
            elif r < 0.5:
                data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
                m.consume_bytes(data)
            else:
                mask = m.next_token_mask()
                bits = np.unpackbits(mask.view(np.uint8), bitorder="little")[: vocab.size]
                allowed = np.flatnonzero(bits)
                # every allowed token is consumable, a sample of refused ones is refused
                for tid in rng.sample(list(allowed), min(5, len(allowed))):
                    res.checks += 1
                    if not m.is_token_allowed(int(tid)):
                        res.wrong.append(f"{label}: token {tid} in mask but not allowed")
                refused = np.flatnonzero(bits == 0)
                for tid in rng.sample(list(refused), min(5, len(refused))):
                    res.checks += 1
                    if m.is_token_allowed(int(tid)):
                        res.wrong.append(f"{label}: token {tid} not in mask but allowed")
                if len(allowed):
                    m.consume_token(int(rng.choice(list(allowed))))
            if rng.random() < 0.1 and m.num_tokens:
                m.rollback(1)
    except Exception as e:  # noqa: BLE001
        res.crashes.append(f"{label}: matcher raised {type(e).__name__}: {e}")


KINDS = {"regex": regex_case, "lark": lark_case, "schema": schema_case, "matcher": matcher_case}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2000, help="cases per kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--show", type=int, default=5, help="failures to print per category")
    args = ap.parse_args(argv)
    total = Result()
    t0 = time.perf_counter()
    for kind in args.kinds.split(","):
        res = Result()
        rng = random.Random(f"{args.seed}-{kind}")
        for _ in range(args.cases):
            KINDS[kind](rng, res)
        print(f"[{kind}] {res.summary()}", flush=True)
        for line in (res.crashes[: args.show] + res.wrong[: args.show]):
            print("   ", line[:300])
        total.cases += res.cases
        total.compiled += res.compiled
        total.errors += res.errors
        total.checks += res.checks
        total.crashes += res.crashes
        total.wrong += res.wrong
        total.slowest = max(total.slowest, res.slowest)
    print(f"[total] {total.summary()} in {time.perf_counter() - t0:.0f}s")
    return 1 if total.crashes or total.wrong else 0


if __name__ == "__main__":
    sys.exit(main())
