"""ASAp converges to the exact conditional P(x | x in L); GCD fails the same test (negative
control).  Test level: TV(empirical, exact) <= tv_bound(exact, n, delta=1e-4), which an i.i.d.
exact sampler exceeds with probability <= 1e-4 (see corral.sampling.exact.tv_bound); seeds fixed.
"""

from __future__ import annotations

import math

import pytest

from corral.sampling import ASApSampler, GCDSampler
from corral.sampling.exact import empirical, enumerate_language, kl_divergence, tv_bound, tv_distance

from sampling_toys import gad_problem, random_problem


def test_gad_example_asap_converges_and_gcd_is_detected_as_biased():
    lm, g, prompt = gad_problem()
    en = enumerate_language(lm, g, prompt)
    exact = en.conditional
    k0 = (0, 0, 0, 0, 0, 2)
    assert len(exact) == 17 and exact[k0] == pytest.approx(1 / 17)
    n = 2000
    bound = tv_bound(exact, n)
    asap = ASApSampler(lm, None, g, prompt, seed=0)
    emp = empirical([s.key() for s in asap.sample(n)])
    assert tv_distance(emp, exact) < bound
    assert kl_divergence(emp, exact) < 0.02
    assert asap.estimate_pl == pytest.approx(en.total, rel=1e-9)  # fully explored: the bound is exact
    gcd = empirical([s.key() for s in GCDSampler(lm, g, prompt, seed=0).sample(n)])
    assert tv_distance(gcd, exact) > bound  # negative control
    assert gcd[k0] == pytest.approx(0.5, abs=0.05)
    assert kl_divergence(gcd, exact) > 5 * kl_divergence(emp, exact)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_model_asap_converges_gcd_does_not(seed):
    """A random-table model over ambiguous multi-byte tokens; 544 token sequences.  After 2,000
    burn-in samples the next 4,000 pass the test; 4,000 GCD samples fail it."""
    lm, g, prompt = random_problem(seed)
    en = enumerate_language(lm, g, prompt)
    exact = en.conditional
    asap = ASApSampler(lm, None, g, prompt, seed=seed)
    burn = asap.sample(2000)
    assert all(g.accepts(s.text) for s in burn)
    n = 4000
    emp = empirical([s.key() for s in asap.sample(n)])
    bound = tv_bound(exact, n)
    assert tv_distance(emp, exact) < bound
    assert asap.estimate_pl >= en.total * (1 - 1e-12)  # always an over-approximation
    gcd = empirical([s.key() for s in GCDSampler(lm, g, prompt, seed=seed).sample(n)])
    assert tv_distance(gcd, exact) > bound


def test_estimate_is_an_upper_bound_that_decreases():
    lm, g, prompt = random_problem(2)
    total = enumerate_language(lm, g, prompt).total
    asap = ASApSampler(lm, None, g, prompt, seed=2)
    prev = asap.estimate_pl
    for _ in range(300):
        asap.sample_one()
        cur = asap.estimate_pl
        assert total * (1 - 1e-12) <= cur <= prev * (1 + 1e-12)
        prev = cur


def test_save_load_round_trip(tmp_path):
    lm, g, prompt = random_problem(0)
    a = ASApSampler(lm, None, g, prompt, seed=5)
    a.sample(200)
    path = tmp_path / "trie.npz"
    a.save(path)
    b = ASApSampler.load(path, lm, None, g, prompt, seed=9)
    assert b.estimate_pl == a.estimate_pl and b.n_nodes == a.n_nodes and b.n_samples == 200
    a.rng = __import__("numpy").random.default_rng(9)
    assert [s.key() for s in a.sample(50)] == [s.key() for s in b.sample(50)]
    with pytest.raises(ValueError, match="prompt"):
        ASApSampler.load(path, lm, None, g, prompt + [0])


def test_length_limit_and_dead_ends_are_recorded():
    """With max_new_tokens too small for part of the language, ASAp targets L restricted to
    that length, and samples never exceed it."""
    lm, g, prompt = gad_problem()
    a = ASApSampler(lm, None, g, prompt, seed=1, max_new_tokens=6)
    ss = a.sample(100)
    assert all(len(s.token_ids) <= 6 and s.complete for s in ss)
    with pytest.raises(RuntimeError):
        ASApSampler(lm, None, g, prompt, seed=1, max_new_tokens=4).sample_one()
    assert math.isfinite(a.estimate_pl)


def test_max_new_tokens_counts_eos_in_every_sampler():
    """Every sentence of the GAD language is five tokens and EOS. With max_new_tokens=6 each
    sampler finds them; with 5 none does: ASAp raises, AWRS stops at the limit, SMC's
    normalising-constant estimate is 0. (ASAp used to allow EOS past the limit.)"""
    from corral.sampling import AWRSSampler, smc

    lm, g, prompt = gad_problem()
    assert len(ASApSampler(lm, None, g, prompt, seed=0, max_new_tokens=6).sample_one().token_ids) == 6
    assert AWRSSampler(lm, g, prompt, seed=0, max_new_tokens=6).sample_one().complete
    assert smc(lm, None, g, prompt, n_particles=4, seed=0, max_new_tokens=6).log_z > -math.inf
    with pytest.raises(RuntimeError, match="max_new_tokens"):
        ASApSampler(lm, None, g, prompt, seed=0, max_new_tokens=5).sample_one()
    assert AWRSSampler(lm, g, prompt, seed=0, max_new_tokens=5).sample_one().finish_reason == "max_new_tokens"
    assert smc(lm, None, g, prompt, n_particles=4, seed=0, max_new_tokens=5).log_z == -math.inf
