"""The faithful samplers on the embedded SmolLM2 model: outputs are grammatical."""

from __future__ import annotations

import math

import pytest

from corral import Grammar

pytestmark = [pytest.mark.model, pytest.mark.slow]

GRAMMAR = r"""
start: "{" "\"ok\": " BOOL ", \"n\": " DIGIT "}"
BOOL: "true" | "false"
DIGIT: /[0-9]/
"""


@pytest.fixture(scope="module")
def model_and_tokenizer():
    try:
        from corral.models import load_default

        return load_default()
    except Exception as e:  # noqa: BLE001  (missing package, conversion failure, ...)
        pytest.skip(f"embedded model unavailable: {e}")


def test_smc_awrs_asap_produce_grammatical_json(model_and_tokenizer):
    from corral.api import encode_prompt
    from corral.sampling import ASApSampler, AWRSSampler, smc

    model, tok = model_and_tokenizer
    g = Grammar.from_lark(GRAMMAR, tok)
    prompt = encode_prompt(tok, "Reply with a JSON object with keys ok (boolean) and n (a digit).")
    res = smc(model, tok, g, prompt, n_particles=3, max_new_tokens=24, seed=0)
    assert math.isfinite(res.log_z) and res.log_z < 0
    for s, w in zip(res.particles, res.log_weights):
        if w > -math.inf:
            assert g.accepts(s.text), s.text
    assert res.n_checks / res.n_token_steps < 0.01 * len(tok)
    for s in AWRSSampler(model, g, prompt, max_new_tokens=24, seed=1).sample(1):
        assert s.complete and g.accepts(s.text)
    a = ASApSampler(model, tok, g, prompt, max_new_tokens=24, seed=2)
    for s in a.sample(2):
        assert g.accepts(s.text)
    assert 0 < a.estimate_pl <= 1


def test_generate_dispatches_to_faithful_samplers(model_and_tokenizer):
    import corral.sampling.registry  # noqa: F401  (registers asap / awrs / smc)
    from corral.api import generate

    model, tok = model_and_tokenizer
    g = Grammar.from_lark(GRAMMAR, tok)
    for name in ("smc", "asap"):
        r = generate(model, tok, "JSON please:", g, sampler=name, seed=0, max_new_tokens=24, n_particles=2)
        assert g.accepts(r.text), (name, r.text)


def test_generate_smc_with_twists(model_and_tokenizer):
    """generate(..., sampler="smc", twist=...): the lookahead (top-8 candidates) and the ASAp
    trie (shared with sampler="asap", extended by every SMC run) give grammatical outputs."""
    import corral.sampling.registry  # noqa: F401
    from corral.api import generate
    from corral.sampling import ASApSampler

    model, tok = model_and_tokenizer
    g = Grammar.from_lark(GRAMMAR, tok)
    r = generate(model, tok, "JSON please:", g, sampler="smc", seed=0, max_new_tokens=24, n_particles=2,
                 twist="lookahead", twist_top_k=8)
    assert g.accepts(r.text), r.text
    trie = ASApSampler(model, tok, g, "JSON please:", max_new_tokens=24)
    for seed in (0, 1):
        r = generate(model, tok, "JSON please:", g, sampler="smc", seed=seed, max_new_tokens=24, n_particles=2,
                     twist="trie", asap_sampler=trie)
        assert g.accepts(r.text), r.text
    assert trie.n_nodes > 10 and trie.estimate_pl < 1.0
