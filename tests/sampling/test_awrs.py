"""AWRS: one step is an exact draw from the locally masked distribution, and its weight is an
unbiased, properly weighted estimate of the allowed mass.

Statistical tests use fixed seeds (so they are deterministic) and state their error bounds; each
has a negative control showing the same check rejects a wrong sampler / estimator.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from corral.sampling.awrs import AWRSSampler, awrs_step, expected_inverse_count
from corral.sampling.exact import empirical, enumerate_language, tv_bound, tv_distance

from sampling_toys import gad_problem


def _case(seed: int, v: int, n_allowed: int, tiny: bool = False):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(v, 0.7))
    allowed = set(rng.choice(v, size=n_allowed, replace=False).tolist())
    if tiny:  # push most of the mass onto disallowed tokens
        for t in allowed:
            p[t] *= 0.1
        p /= p.sum()
    return np.log(p), allowed


def _masked(logp, allowed):
    p = np.exp(logp)
    z = sum(p[t] for t in allowed)
    return {t: p[t] / z for t in allowed}, z


def _plackett_luce_prefixes(p: np.ndarray):
    """Every ordering of the tokens with its probability under sampling without replacement."""
    v = len(p)
    for perm in itertools.permutations(range(v)):
        prob, rest = 1.0, 1.0
        for t in perm:
            prob *= p[t] / rest
            rest -= p[t]
        yield list(perm), prob


@pytest.mark.parametrize("seed,n_allowed", [(0, 1), (1, 2), (2, 3), (3, 5)])
def test_one_step_equals_masked_distribution_by_enumeration(seed, n_allowed):
    """Enumerate every without-replacement order (V=6: 720 orders, each with its Plackett-Luce
    probability) and run the step's own code on each: the output law equals the masked law."""
    logp, allowed = _case(seed, 6, n_allowed)
    target, _ = _masked(logp, allowed)
    p = np.exp(logp)
    law: dict[int, float] = {}
    for perm, prob in _plackett_luce_prefixes(p):
        st = awrs_step(logp, allowed.__contains__, np.random.default_rng(0), proper_weights=False, _orders=lambda r, ex, perm=perm: perm)
        law[st.token] = law.get(st.token, 0.0) + prob
    assert tv_distance(law, target) < 1e-12


@pytest.mark.parametrize("seed,n_allowed,tiny", [(4, 3, False), (5, 2, True)])
def test_one_step_with_gumbel_noise_matches_masked_distribution(seed, n_allowed, tiny):
    """10,000 real draws (seed fixed): TV to the masked law below tv_bound(delta=1e-4)."""
    logp, allowed = _case(seed, 50, n_allowed, tiny)
    target, _ = _masked(logp, allowed)
    rng = np.random.default_rng(seed)
    n = 10_000
    draws = [awrs_step(logp, allowed.__contains__, rng).token for _ in range(n)]
    emp = empirical(draws)
    assert tv_distance(emp, target) < tv_bound(target, n)
    # negative control: unconstrained sampling restricted afterwards is not the masked law
    p = np.exp(logp)
    bad = {t: (p[t] + 0.05) / sum(p[u] + 0.05 for u in allowed) for t in allowed}
    assert tv_distance(emp, bad) > tv_bound(target, n) or len(allowed) == 1


def _weight_stats(logp, allowed, n, seed, **kw):
    rng = np.random.default_rng(seed)
    ws = np.empty(n)
    toks = np.empty(n, dtype=np.int64)
    checks = 0
    for i in range(n):
        st = awrs_step(logp, allowed.__contains__, rng, **kw)
        ws[i] = math.exp(st.log_weight)
        toks[i] = st.token
        checks += st.n_checks
    return ws, toks, checks / n


def _assert_unbiased(ws, z, k=5.0):
    """|mean - Z| <= k standard errors (k=5: a false alarm has probability < 1e-6 for a
    normal mean; the seed is fixed)."""
    se = ws.std(ddof=1) / math.sqrt(len(ws))
    return abs(ws.mean() - z) <= k * se + 1e-15, (ws.mean(), z, se)


@pytest.mark.parametrize(
    "seed,v,n_allowed,tiny,max_checks",
    [(6, 40, 4, False, 256), (7, 40, 2, True, 256), (8, 40, 1, True, 256), (9, 40, 3, True, 3), (10, 40, 2, True, 1)],
)
def test_weights_are_unbiased_and_properly_weighted(seed, v, n_allowed, tiny, max_checks):
    """E[w] = Z, and E[w 1{x=a}] = p(a) for every allowed a (proper weighting), including the
    runs that exhaust a small check budget and fall back to the full mask."""
    logp, allowed = _case(seed, v, n_allowed, tiny)
    target, z = _masked(logp, allowed)
    mask = np.array(sorted(allowed))
    ws, toks, _ = _weight_stats(logp, allowed, 8_000, seed, max_checks=max_checks, full_mask=lambda: mask)
    ok, info = _assert_unbiased(ws, z)
    assert ok, info
    p = np.exp(logp)
    for a in allowed:
        ok, info = _assert_unbiased(ws * (toks == a), p[a])
        assert ok, (a, info)


def test_weight_check_detects_a_biased_estimator():
    """Negative control: the one-round estimator 1/(rejections+1) (round 1 only) is biased
    (its mean is -Z ln Z / (1 - Z)); the same 5-standard-error check rejects it."""
    logp, allowed = _case(7, 40, 2, True)
    _, z = _masked(logp, allowed)
    rng = np.random.default_rng(7)
    ws = np.array(
        [1.0 / (awrs_step(logp, allowed.__contains__, rng, proper_weights=False).n_rejections + 1) for _ in range(8_000)]
    )
    ok, info = _assert_unbiased(ws, z)
    assert not ok, info


@pytest.mark.parametrize("z,a,r", [(0.3, 0, 1), (0.3, 0, 2), (0.05, 7, 1), (0.05, 7, 2), (0.9, 3, 2)])
def test_expected_inverse_count_matches_series(z, a, r):
    f = np.arange(0, 20_000)
    pf = (z**r) * (1 - z) ** f * (f + 1 if r == 2 else 1)
    assert expected_inverse_count(z, a, r) == pytest.approx(float(np.sum(pf / (a + 1 + f))), rel=1e-9)
    if a == 0 and r == 2:
        assert expected_inverse_count(z, 0, 2) == pytest.approx(z)


def test_checks_are_counted_and_few_for_large_vocabularies():
    """n_checks equals the distinct single-token checks made; with a peaked distribution over
    5,000 tokens where the likely tokens are allowed, checks stay far below 1% of V."""
    rng = np.random.default_rng(11)
    v = 5000
    logits = rng.normal(size=v) * 3.0
    logp = logits - np.logaddexp.reduce(logits)
    allowed = set(np.argsort(-logp)[:200:3].tolist()) | set(rng.choice(v, 300, replace=False).tolist())
    calls: list[int] = []

    def check(t):
        calls.append(t)
        return t in allowed

    tot = 0
    for _ in range(500):
        calls.clear()
        st = awrs_step(logp, check, rng)
        assert st.n_checks == len(set(calls)) == len(calls)
        tot += st.n_checks
    assert tot / 500 < 0.01 * v


def test_sequence_sampler_is_gcd_in_law_and_weights_estimate_pl():
    """Whole sequences: AWRS sequences follow the GCD law; mean weight estimates P(L)."""
    lm, g, prompt = gad_problem()
    en = enumerate_language(lm, g, prompt)
    n = 1500
    ss = AWRSSampler(lm, g, prompt, seed=3).sample(n)
    gcd = en.gcd_distribution()
    assert tv_distance(empirical([s.key() for s in ss]), gcd) < tv_bound(gcd, n)
    ok, info = _assert_unbiased(np.array([s.weight for s in ss]), en.total)
    assert ok, info
    # self-normalised importance weights recover the conditional of 00000 (1/17, GCD gives 1/2)
    w = np.array([s.weight for s in ss])
    k0 = (0, 0, 0, 0, 0, 2)
    est = float(sum(wi for wi, s in zip(w, ss) if s.key() == k0) / w.sum())
    assert abs(est - 1 / 17) < 0.03
    assert abs(gcd[k0] - 0.5) < 1e-12 and abs(en.conditional[k0] - 1 / 17) < 1e-12
