"""Faithful sampling (ASAp, SMC) versus plain masking on a tiny grammar, with a plot.

Plain masked sampling (GCD) renormalises the model's distribution token by token, which biases the
distribution over whole outputs: it is not ``P(x | x in L)``. On a finite grammar we can enumerate
every grammatical token sequence and compute the exact conditional, then compare:

* ``masking``: per-step masked sampling (what ``generate(..., temperature=1)`` does);
* ``asap``: ASAp (approximately aligned sampling; converges to the exact conditional);
* ``smc``: sequential Monte Carlo with AWRS proposals (weighted particles, averaged over runs).

Prints the distributions over answers and their total-variation distance to the exact one, and
writes ``faithful_sampling.png`` (bar chart) when matplotlib is installed.

Run:  python examples/faithful_sampling.py [--model DIR] [--quick] [--samples N] [--out PNG]
"""

from __future__ import annotations

import time
from pathlib import Path

from _common import load_model, parser

from corral import Grammar, smc
from corral.api import encode_prompt
from corral.sampling import ASApSampler, GCDSampler, enumerate_language, tv_distance

GRAMMAR = r"""
start: "yes" | "no" | "maybe" | "unsure"
"""
PROMPT = "Is the sky green? Answer yes, no, maybe or unsure."


def by_text(dist: dict, vocab) -> dict[str, float]:
    """Token-sequence distribution -> distribution over the decoded text (EOS dropped)."""
    eos = set(vocab.eos_ids)
    out: dict[str, float] = {}
    for key, p in dist.items():
        text = vocab.decode_bytes([t for t in key if t not in eos]).decode("utf-8", "replace")
        out[text] = out.get(text, 0.0) + p
    return out


def empirical(samples) -> dict:
    out: dict = {}
    for s in samples:
        out[s.key()] = out.get(s.key(), 0.0) + 1.0 / len(samples)
    return out


def plot(dists: dict[str, dict[str, float]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    answers = sorted(dists["exact"], key=lambda a: -dists["exact"][a])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(dists)
    for i, (name, d) in enumerate(dists.items()):
        ax.bar([j + i * width for j in range(len(answers))], [d.get(a, 0.0) for a in answers], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(answers))], answers)
    ax.set_ylabel("probability")
    ax.set_title("P(answer | grammar): exact vs samplers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=None, help="samples per sampler (default 200, quick 20)")
    p.add_argument("--smc-runs", type=int, default=None, help="SMC runs of 10 particles (default 20, quick 2)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "faithful_sampling.png"))
    args = p.parse_args()
    n = args.samples or (20 if args.quick else 200)
    runs = args.smc_runs or (2 if args.quick else 20)
    model, tokenizer = load_model(args)
    grammar = Grammar.from_lark(GRAMMAR, tokenizer)
    prompt = encode_prompt(tokenizer, PROMPT)
    vocab = grammar.vocab

    t0 = time.perf_counter()
    en = enumerate_language(model, grammar, prompt, max_tokens=8)
    print(f"{len(en.conditional)} grammatical token sequences, P(L) = {en.total:.3g} ({time.perf_counter() - t0:.1f}s)")
    exact = by_text(en.conditional, vocab)

    dists: dict[str, dict[str, float]] = {"exact": exact}
    t0 = time.perf_counter()
    dists["masking"] = by_text(empirical(GCDSampler(model, grammar, prompt, seed=0, max_new_tokens=8).sample(n)), vocab)
    t1 = time.perf_counter()
    dists["asap"] = by_text(empirical(ASApSampler(model, tokenizer, grammar, prompt, seed=0, max_new_tokens=8).sample(n)), vocab)
    t2 = time.perf_counter()
    post: dict = {}
    for r in range(runs):
        res = smc(model, tokenizer, grammar, prompt, n_particles=10, seed=r, max_new_tokens=8)
        for k, v in res.posterior().items():
            post[k] = post.get(k, 0.0) + v / runs
    dists[f"smc (10 particles x {runs})"] = by_text(post, vocab)
    t3 = time.perf_counter()
    secs = {"masking": t1 - t0, "asap": t2 - t1}
    secs[f"smc (10 particles x {runs})"] = t3 - t2

    answers = sorted(exact, key=lambda a: -exact[a])
    print(f"{'':28}" + "".join(f"{a:>9}" for a in answers) + "   TV to exact")
    for name, d in dists.items():
        tv = "" if name == "exact" else f"   {tv_distance(d, exact):.3f} ({secs[name]:.1f}s)"
        print(f"{name:28}" + "".join(f"{d.get(a, 0.0):9.3f}" for a in answers) + tv)
    if plot(dists, Path(args.out)):
        print(f"wrote {args.out}")
    else:
        print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
