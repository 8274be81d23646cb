"""Speculative constrained decoding vs plain constrained decoding vs unconstrained ``model.generate``.

JSON generation on dev schemas (maskbench-dev) with the embedded SmolLM2-135M model on CPU.

    python benchmarks/bench_speculative.py [--n-schemas 6] [--max-new-tokens 200] [--threads N]

Per schema, greedy: plain constrained (``corral.generate``), speculative with each drafter alone
and with all of them (``speculative_generate``), and unconstrained ``model.generate`` forced to
produce the same number of tokens (``min_new_tokens = max_new_tokens = n``); sampled (T=0.7):
plain vs speculative (default drafters).  Reports wall-clock, tokens per target forward,
acceptance, time split (draft / mask / forward / verify), and whether greedy outputs are identical.
Writes ``benchmarks/results/speculative.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DATA = Path(os.environ.get("MASKBENCH_DEV", "/work/shared/data/maskbench-dev"))
DEFAULT_GLOBS = ["Github_easy", "Github_medium", "Glaiveai2K", "Handwritten", "Kubernetes", "Snowplow"]


def pick_schemas(n: int, tok, model) -> list[tuple[str, dict, object]]:
    import corral

    out = []
    for group in DEFAULT_GLOBS:
        files = sorted(glob.glob(str(DATA / group / "*.json")))
        for f in files[:40]:
            spec = json.load(open(f))
            schema = spec.get("schema", spec)
            text = json.dumps(schema)
            if len(text) > 1500 or len(text) < 150:
                continue
            try:
                g = corral.api.compile_json_schema(schema, tok, model)
            except Exception:  # noqa: BLE001 - unsupported schema: skip
                continue
            out.append((Path(f).stem, schema, g))
            break
        if len(out) >= n:
            break
    return out


def prompt_for(schema: dict) -> str:
    return (
        "Generate a realistic JSON object that validates against this JSON Schema. "
        "Reply with the JSON only.\nSchema:\n" + json.dumps(schema)
    )


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-schemas", type=int, default=6)
    ap.add_argument("--max-new-tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-sampled", action="store_true")
    ap.add_argument("--out", default=str(RESULTS / "speculative"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    import corral
    from corral.api import encode_prompt
    from corral.models import load_default
    from corral.speculative import SpeculativeConfig, speculative_generate

    model, tok = load_default()
    schemas = pick_schemas(args.n_schemas, tok, model)
    print(f"{len(schemas)} schemas: {[s[0] for s in schemas]}", flush=True)
    drafter_cfgs = {
        "spec:grammar": SpeculativeConfig(drafters=("grammar",)),
        "spec:lookup": SpeculativeConfig(drafters=("lookup",)),
        "spec:recycle": SpeculativeConfig(drafters=("recycle",)),
        "spec:all": SpeculativeConfig(),
    }
    rows = []
    # warm-up (allocator, masks)
    name0, schema0, g0 = schemas[0]
    corral.generate(model, tok, prompt_for(schema0), g0, max_new_tokens=8, allow_incomplete=True)

    for name, schema, grammar in schemas:
        prompt = prompt_for(schema)
        pids = encode_prompt(tok, prompt)
        row = {"schema": name, "prompt_tokens": int(pids.shape[1])}
        plain, t_plain = timed(
            lambda: corral.generate(model, tok, prompt, grammar, max_new_tokens=args.max_new_tokens, allow_incomplete=True)
        )
        n = len(plain.token_ids)
        row["plain"] = {"time": t_plain, "tokens": n, "text": plain.text, "mask": plain.timings.get("mask", 0.0)}
        for label, cfg in drafter_cfgs.items():
            (ids, fin, lp, st), t = timed(
                lambda: speculative_generate(model, tok, pids, grammar, config=cfg, max_new_tokens=args.max_new_tokens)
            )
            row[label] = {
                "time": t,
                "tokens": len(ids),
                "identical": ids == plain.token_ids,
                **st.as_dict(),
            }
        # unconstrained: same number of new tokens, greedy
        am = torch.ones_like(pids)
        _, t_unc = timed(
            lambda: model.generate(
                pids, attention_mask=am, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                pad_token_id=tok.eos_token_id,
            )
        )
        row["unconstrained"] = {"time": t_unc, "tokens": n}
        if not args.no_sampled:
            ps, t_ps = timed(
                lambda: corral.generate(model, tok, prompt, grammar, max_new_tokens=args.max_new_tokens,
                                        temperature=0.7, seed=0, allow_incomplete=True)
            )
            (ids, fin, lp, st), t_ss = timed(
                lambda: speculative_generate(model, tok, pids, grammar, config=SpeculativeConfig(),
                                             max_new_tokens=args.max_new_tokens, temperature=0.7, seed=0)
            )
            row["sampled_plain"] = {"time": t_ps, "tokens": len(ps.token_ids)}
            row["sampled_spec"] = {"time": t_ss, "tokens": len(ids), **st.as_dict()}
        rows.append(row)
        s = row["spec:all"]
        print(
            f"{name}: n={n} plain {t_plain:.2f}s  spec {s['time']:.2f}s ({t_plain / s['time']:.2f}x, "
            f"{s['tokens_per_forward']:.2f} tok/fwd, identical={s['identical']})  unconstrained {t_unc:.2f}s",
            flush=True,
        )

    report(rows, args)
    return 0


def tps(r: dict) -> float:
    return r["tokens"] / r["time"] if r["time"] > 0 else 0.0


def report(rows: list[dict], args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json.dump(rows, open(f"{out}.json", "w"), indent=1, default=str)
    methods = ["plain", "spec:grammar", "spec:lookup", "spec:recycle", "spec:all", "unconstrained"]
    lines = [
        "# Speculative constrained decoding (SmolLM2-135M, CPU, greedy)",
        "",
        f"Command: `python benchmarks/bench_speculative.py --n-schemas {args.n_schemas} "
        f"--max-new-tokens {args.max_new_tokens}" + (f" --threads {args.threads}" if args.threads else "") + "`",
        f"torch threads: {torch.get_num_threads()}, load average at the end: {os.getloadavg()[0]:.1f}",
        "",
        "Wall-clock seconds per schema (tokens/s in brackets); unconstrained = `model.generate` for the same "
        "number of tokens.",
        "",
        "| schema | tokens | " + " | ".join(methods) + " | speedup vs plain | vs unconstrained | tok/fwd | identical |",
        "|" + "---|" * (len(methods) + 6),
    ]
    for r in rows:
        cells = [f"{r[m]['time']:.2f} ({tps(r[m]):.1f})" for m in methods]
        s = r["spec:all"]
        lines.append(
            f"| {r['schema']} | {r['plain']['tokens']} | " + " | ".join(cells)
            + f" | {r['plain']['time'] / s['time']:.2f}x | {r['unconstrained']['time'] / s['time']:.2f}x"
            f" | {s['tokens_per_forward']:.2f} | {s['identical']} |"
        )
    tot = {m: sum(r[m]["time"] for r in rows) for m in methods}
    lines += [
        "",
        "## Totals over all schemas",
        "",
        "| method | total s | speedup vs plain | speedup vs unconstrained | tok/fwd | acceptance | draft s | mask s | forward s | verify s | identical greedy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        extra = "| | | | | | |"
        if m.startswith("spec"):
            tpf = sum(r[m]["n_tokens"] for r in rows) / max(1, sum(r[m]["n_forwards"] for r in rows))
            dr = sum(sum(r[m]["drafted"].values()) for r in rows)
            ac = sum(sum(r[m]["accepted"].values()) for r in rows)
            tm = {k: sum(r[m]["timings"].get(k, 0.0) for r in rows) for k in ("draft", "mask", "forward", "verify")}
            ident = sum(bool(r[m]["identical"]) for r in rows)
            extra = (
                f"| {tpf:.2f} | {ac / max(1, dr):.2f} | {tm['draft']:.2f} | {tm['mask']:.2f} | {tm['forward']:.2f} | "
                f"{tm['verify']:.2f} | {ident}/{len(rows)} |"
            )
        lines.append(
            f"| {m} | {tot[m]:.2f} | {tot['plain'] / tot[m]:.2f}x | {tot['unconstrained'] / tot[m]:.2f}x " + extra
        )
    if rows and "sampled_spec" in rows[0]:
        sp = sum(r["sampled_plain"]["time"] for r in rows)
        ss = sum(r["sampled_spec"]["time"] for r in rows)
        ntp = sum(r["sampled_plain"]["tokens"] for r in rows)
        nts = sum(r["sampled_spec"]["tokens"] for r in rows)
        tpf = nts / max(1, sum(r["sampled_spec"]["n_forwards"] for r in rows))
        lines += [
            "",
            "## Sampled (temperature 0.7, seed 0; outputs differ, compare tokens/s)",
            "",
            "| method | total s | tokens | tokens/s | tok/fwd |",
            "|---|---|---|---|---|",
            f"| plain | {sp:.2f} | {ntp} | {ntp / sp:.1f} | 1.00 |",
            f"| spec:all | {ss:.2f} | {nts} | {nts / ss:.1f} | {tpf:.2f} |",
        ]
    Path(f"{out}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
        names = [r["schema"].split("---")[-1][:14] for r in rows]
        w = 0.8 / len(methods)
        for i, m in enumerate(methods):
            axes[0].bar([j + i * w for j in range(len(rows))], [tps(r[m]) for r in rows], w, label=m)
        axes[0].set_xticks([j + 0.4 - w / 2 for j in range(len(rows))], names, rotation=30, ha="right", fontsize=8)
        axes[0].set_ylabel("tokens / s (greedy)")
        axes[0].legend(fontsize=7)
        axes[0].set_title("Throughput per schema")
        spec = [m for m in methods if m.startswith("spec")]
        keys = ["draft", "mask", "forward", "verify"]
        bottom = [0.0] * len(spec)
        for k in keys:
            vals = [sum(r[m]["timings"].get(k, 0.0) for r in rows) for m in spec]
            axes[1].bar(spec, vals, bottom=bottom, label=k)
            bottom = [b + v for b, v in zip(bottom, vals)]
        axes[1].axhline(tot["plain"], color="k", ls="--", lw=1, label="plain total")
        axes[1].axhline(tot["unconstrained"], color="r", ls=":", lw=1, label="unconstrained total")
        axes[1].set_ylabel("seconds (all schemas)")
        axes[1].set_title("Time split per drafter")
        axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(f"{out}.png", dpi=110)
        print(f"wrote {out}.png")
    except ImportError:
        print("matplotlib missing: no plot")


if __name__ == "__main__":
    sys.exit(main())
