"""Faithful-sampling benchmark: GCD vs ASAp vs AWRS vs SMC.

Suites
  toy     enumerable toy problems (the GAD paper's {00000} U 1{0,1}^4 with a fair coin, and
          random-table models over ambiguous multi-byte tokens): KL / TV of each sampler's
          empirical (or weighted) distribution to the exact conditional.
  model   SmolLM2 (embedded) on small finite languages, enumerated exactly: a Lark answer
          grammar and two small JSON Schemas (an enum, a boolean).
  sygus   SmolLM2 on the GAD paper's SyGuS grammars and prompts (SLIA, bv4; infinite
          languages): expected log-likelihood of samples (the GAD paper's metric), runtime,
          AWRS checks per token vs the vocabulary size, SMC's log P(L) estimate.

SMC rows (``method=smc10``) are labelled by ``twist``: ``none`` (the default, locally masked
proposals), ``trie`` (twisted by an ASAp trie that starts empty and learns over the runs),
``lookaheadK`` (the K-token lookahead twist; ``lookaheadKxT``: only the T most probable
candidates).  ``tv_expected_posterior``: TV of the run-averaged weighted-particle distribution
to the exact conditional; ``mc_noise``: half the TV between the even and the odd runs'
averages (the Monte Carlo part of the former).

Run:  python benchmarks/bench_sampling.py --quick            (a few minutes)
      python benchmarks/bench_sampling.py --samples 2000 --suites toy,model,sygus
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "sampling"))

from corral import Grammar  # noqa: E402
from corral.sampling import ASApSampler, AWRSSampler, GCDSampler, Lookahead, smc  # noqa: E402
from corral.sampling.exact import empirical, enumerate_language, kl_divergence, tv_distance  # noqa: E402

SYGUS = Path(os.environ.get("CORRAL_SYGUS", "/work/shared/data/grammars/transformers-GAD/sygus"))
ROWS: list[dict] = []


def row(**kw):
    ROWS.append(kw)
    cells = []
    for k, v in kw.items():
        cells.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    print("  " + "  ".join(cells), flush=True)


def weighted(samples):
    out: dict = {}
    w = np.array([s.weight for s in samples])
    tot = w.sum()
    for s, wi in zip(samples, w):
        if wi > 0:
            out[s.key()] = out.get(s.key(), 0.0) + wi / tot
    return out


def make_twist(spec, lm, g, prompt, max_tokens):
    """``none`` | ``trie`` (a fresh ASAp trie, learning over the runs) | ``lookaheadK[xTOPK]``."""
    if spec == "none":
        return None
    if spec == "trie":
        return ASApSampler(lm, None, g, prompt, seed=0, max_new_tokens=max_tokens)
    if spec.startswith("lookahead"):
        depth, _, top = spec[len("lookahead"):].partition("x")
        return Lookahead(int(depth), top_k=int(top) if top else None)
    raise ValueError(f"unknown twist {spec!r}")


def smc_rows(name, lm, g, prompt, exact, total, smc_runs, max_tokens, twists):
    """SMC(10): expected weighted-particle distribution over runs vs exact; log Z; cost."""
    for spec in twists:
        twist = make_twist(spec, lm, g, prompt, max_tokens)
        t = time.perf_counter()
        post: dict = {}
        first: dict = {}
        halves: list[dict] = [{}, {}]
        zs, checks, steps, look_rows, t_model, t_twist = [], 0, 0, 0, 0.0, 0.0
        n_first = min(100, smc_runs)
        for r in range(smc_runs):
            out = smc(lm, None, g, prompt, n_particles=10, seed=r, max_new_tokens=max_tokens, twist=twist)
            zs.append(math.exp(out.log_z))
            checks += out.n_checks
            steps += out.n_token_steps
            look_rows += out.lookahead_rows
            t_model += out.timings.get("model", 0.0)
            t_twist += out.timings.get("twist", 0.0)
            for k, v in out.posterior().items():
                post[k] = post.get(k, 0.0) + v / smc_runs
                halves[r % 2][k] = halves[r % 2].get(k, 0.0) + v
                if r < n_first:
                    first[k] = first.get(k, 0.0) + v / n_first
        h0 = {k: v / ((smc_runs + 1) // 2) for k, v in halves[0].items()}
        h1 = {k: v / max(smc_runs // 2, 1) for k, v in halves[1].items()}
        secs = time.perf_counter() - t
        extra = {}
        if spec == "trie" and smc_runs > n_first:
            extra["tv_first100"] = tv_distance(first, exact)  # the trie learns over the runs
        row(
            suite=name,
            method="smc10",
            twist=spec,
            runs=smc_runs,
            tv_expected_posterior=tv_distance(post, exact),
            mc_noise=tv_distance(h0, h1) / 2,  # half the TV between even and odd runs' averages
            **extra,
            Zhat_over_PL=float(np.mean(zs)) / total,
            checks_per_tok=checks / max(steps, 1),
            lookahead_rows_per_tok=look_rows / max(steps, 1),
            ms_per_tok=1000 * secs / max(steps, 1),
            secs=secs,
        )


def enumerable_suite(name, lm, g, prompt, n, smc_runs, max_tokens=32, twists=("none",)):
    t = time.perf_counter()
    en = enumerate_language(lm, g, prompt, max_tokens=max_tokens)
    exact = en.conditional
    print(f"[{name}] {len(exact)} sequences, P(L)={en.total:.4g}, enumerated in {time.perf_counter() - t:.1f}s")
    res = {}
    for label, sampler in [
        ("gcd", GCDSampler(lm, g, prompt, seed=0, max_new_tokens=max_tokens)),
        ("asap", ASApSampler(lm, None, g, prompt, seed=0, max_new_tokens=max_tokens)),
        ("awrs", AWRSSampler(lm, g, prompt, seed=0, max_new_tokens=max_tokens)),
    ]:
        t = time.perf_counter()
        ss = sampler.sample(n)
        dt = time.perf_counter() - t
        emp = empirical([s.key() for s in ss])
        kl, tv = kl_divergence(emp, exact), tv_distance(emp, exact)
        extra = {}
        if label == "awrs":
            wd = weighted(ss)
            extra = {"tv_weighted": tv_distance(wd, exact), "Zhat/PL": float(np.mean([s.weight for s in ss])) / en.total}
            steps = sum(s.n_steps for s in ss)
            extra["checks_per_tok"] = sum(s.n_checks for s in ss) / max(steps, 1)
            extra["V"] = g.vocab.size
        res[label] = kl
        row(suite=name, method=label, n=n, kl=kl, tv=tv, secs=dt, **extra)
    row(suite=name, method="asap/gcd", kl_ratio=res["asap"] / res["gcd"] if res["gcd"] > 0 else float("nan"))
    smc_rows(name, lm, g, prompt, exact, en.total, smc_runs, max_tokens, twists)


def toy_suite(n, smc_runs, twists, skip_samplers=False):
    from sampling_toys import gad_problem, random_problem

    problems = [("toy:gad", gad_problem())] + [(f"toy:random{s}", random_problem(s)) for s in (0, 1)]
    for name, (lm, g, prompt) in problems:
        if skip_samplers:
            en = enumerate_language(lm, g, prompt, max_tokens=32)
            print(f"[{name}] {len(en.probs)} sequences, P(L)={en.total:.4g}")
            smc_rows(name, lm, g, prompt, en.conditional, en.total, smc_runs, 32, twists)
        else:
            enumerable_suite(name, lm, g, prompt, n, smc_runs, twists=twists)


# Small enough that every tokenisation of every sentence can be enumerated with the real model.
MODEL_GRAMMAR = r"""
start: "yes" | "no" | "maybe" | "unsure"
"""
MODEL_PROMPT = "Is the sky green? Answer yes, no, maybe or unsure."


# Small JSON Schemas whose every tokenisation of every instance can be enumerated with the model.
MODEL_SCHEMAS = [
    ("model:json-enum", {"enum": ["red", "green", "blue", "yellow"]},
     "What colour is a ripe banana? Answer with a JSON string."),
    # (not an integer range: JSON Schema's "integer" also admits 7.0, 7.00, 70e-1, ... an infinite language)
    ("model:json-boolean", {"type": "boolean"}, "Is the Pacific larger than the Atlantic? Answer with a JSON boolean."),
]


def model_suite(n, smc_runs, twists):
    from corral.api import encode_prompt
    from corral.models import load_default

    model, tok = load_default()
    g = Grammar.from_lark(MODEL_GRAMMAR, tok)
    prompt = encode_prompt(tok, MODEL_PROMPT)
    enumerable_suite("model:answer-finite", model, g, prompt, n, smc_runs, max_tokens=8, twists=twists)
    for name, schema, text in MODEL_SCHEMAS:
        g = Grammar.from_json_schema(schema, tok)
        enumerable_suite(name, model, g, encode_prompt(tok, text), n, smc_runs, max_tokens=8, twists=twists)


def sygus_cases(quick):
    cases = []
    for family in ("SLIA", "bv4"):
        gdir, pdir = SYGUS / "examples" / "sygus" / family, SYGUS / "prompts" / family
        if not gdir.is_dir():
            continue
        names = sorted(p.stem for p in gdir.glob("*.ebnf") if (pdir / f"{p.stem}.txt").is_file())
        names = [x for x in names if "small" in x or family == "bv4"]
        cases += [(family, x, gdir / f"{x}.ebnf", pdir / f"{x}.txt") for x in names[: 1 if quick else 3]]
    return cases


def sygus_suite(n, smc_runs, quick, max_new_tokens):
    from corral.models import load_default

    model, tok = load_default()
    V = len(tok)
    for family, name, gpath, ppath in sygus_cases(quick):
        g = Grammar.from_ebnf(gpath.read_text(), tok)
        prompt_ids = tok(ppath.read_text(), return_tensors="pt").input_ids
        label = f"sygus:{family}/{name}"
        print(f"[{label}] prompt {prompt_ids.shape[1]} tokens")
        for meth, sampler in [
            ("gcd", GCDSampler(model, g, prompt_ids, seed=0, max_new_tokens=max_new_tokens)),
            ("asap", ASApSampler(model, tok, g, prompt_ids, seed=0, max_new_tokens=max_new_tokens)),
            ("awrs", AWRSSampler(model, g, prompt_ids, seed=0, max_new_tokens=max_new_tokens)),
        ]:
            t = time.perf_counter()
            ss = [s for s in sampler.sample(n)]
            dt = time.perf_counter() - t
            ok = [s for s in ss if s.complete]
            extra = {}
            if meth == "awrs":
                steps = sum(s.n_steps for s in ss)
                extra = {"checks_per_tok": sum(s.n_checks for s in ss) / max(steps, 1), "V": V}
                extra["checks_pct_V"] = 100 * extra["checks_per_tok"] / V
            if meth == "asap":
                extra = {"PL_upper": sampler.estimate_pl}
            row(
                suite=label,
                method=meth,
                n=n,
                complete=len(ok),
                exp_loglik=float(np.mean([s.logprob for s in ok])) if ok else float("nan"),
                secs=dt,
                **extra,
            )
        t = time.perf_counter()
        zs, checks, steps, lls = [], 0, 0, []
        for r in range(smc_runs):
            out = smc(model, tok, g, prompt_ids, n_particles=10, seed=r, max_new_tokens=max_new_tokens)
            zs.append(out.log_z)
            checks += out.n_checks
            steps += out.n_token_steps
            if out.log_z > -math.inf:
                w = out.weights
                lls.append(float(sum(wi * s.logprob for wi, s in zip(w, out.particles) if wi > 0)))
        row(
            suite=label,
            method="smc10",
            runs=smc_runs,
            log_PL_hat=float(np.mean(zs)),
            exp_loglik=float(np.mean(lls)) if lls else float("nan"),
            checks_per_tok=checks / max(steps, 1),
            checks_pct_V=100 * checks / max(steps, 1) / V,
            secs=time.perf_counter() - t,
        )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sample counts, one SyGuS grammar per family")
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--smc-runs", type=int, default=None)
    ap.add_argument("--suites", default="toy,model,sygus")
    ap.add_argument("--model-smc-runs", type=int, default=None, help="SMC runs per model suite (default: a tenth of --smc-runs)")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (1 helps on a loaded CPU)")
    ap.add_argument("--smc-twists", default="none,trie,lookahead1,lookahead4",
                    help="SMC twists of the toy suites: none | trie | lookaheadK[xTOPK] (comma-separated)")
    ap.add_argument("--model-smc-twists", default="none,trie,lookahead1x16",
                    help="SMC twists of the model suites (same syntax)")
    ap.add_argument("--smc-only", action="store_true", help="toy suite: skip GCD / ASAp / AWRS, run only the SMC rows")
    a = ap.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    suites = a.suites.split(",")
    n = a.samples or (300 if a.quick else 2000)
    runs = a.smc_runs or (50 if a.quick else 300)
    if "toy" in suites:
        toy_suite(n, runs, a.smc_twists.split(","), a.smc_only)
    if "model" in suites:
        model_suite(max(n // 5, 50) if a.quick else n, a.model_smc_runs or max(runs // 10, 3), a.model_smc_twists.split(","))
    if "sygus" in suites:
        sygus_suite(5 if a.quick else 50, 2 if a.quick else 10, a.quick, a.max_new_tokens)


if __name__ == "__main__":
    main()
