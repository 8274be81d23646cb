"""The speculative loop is lossless.

- greedy: token-identical to plain constrained greedy decoding (float64 tiny random llama with a
  real tokenizer's 49,152 ids; and the embedded SmolLM2 model, marked ``model``);
- sampling: the emitted distribution equals plain constrained sampling, by enumeration on a toy LM
  (deterministic drafters, and a draft model with the min(1, p/q) rule);
- the KV cache and the matcher stay consistent after every accept / reject pattern (hypothesis
  drives a drafter that proposes random runs, grammatical or not).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from corral import Grammar
from corral.api import mask_logits
from corral.sampling.exact import empirical, enumerate_language, tv_bound, tv_distance
from corral.sampling.toy import ToyTokenizer, random_lm, toy_vocabulary
from corral.speculative import SpeculativeConfig, speculative_generate
from corral.speculative.drafters import GrammarDrafter, LookupDrafter, crop_cache

JSONISH = r"""
start: "{" "\"name\":" STRING "," "\"age\":" INT "," "\"tags\":" "[" (STRING ("," STRING)*)? "]" "," "\"ok\":" BOOL "}"
STRING: /"[a-z ]{0,12}"/
INT: /(0|[1-9][0-9]{0,2})/
BOOL: "true" | "false"
"""

JSON_VALUE = r"""
start: value
value: object | array | STRING | NUMBER | "true" | "false" | "null"
object: "{" (pair ("," pair)*)? "}"
pair: STRING ":" value
array: "[" (value ("," value)*)? "]"
STRING: /"[a-z]{0,8}"/
NUMBER: /-?(0|[1-9][0-9]{0,3})/
"""

CONFIGS = {
    "default": SpeculativeConfig(),
    "fixed8": SpeculativeConfig(adaptive=False, max_draft=8),
    "grammar_nobackoff": SpeculativeConfig(drafters=("grammar",), backoff=0, adaptive=False),
    "lookup": SpeculativeConfig(drafters=("lookup",), adaptive=False, max_draft=5),
    "recycle": SpeculativeConfig(drafters=("recycle",), adaptive=False, max_draft=4),
    "short": SpeculativeConfig(max_draft=1, max_forced=2),
}


# ----------------------------------------------------------------------------- references
def plain_greedy(model, grammar, prompt: list[int], max_new_tokens: int) -> list[int]:
    """Independent reference: full recompute (no KV cache), masked argmax, one token at a time."""
    m = grammar.matcher()
    bm = torch.zeros((1, grammar.vocab.n_words), dtype=torch.int32)
    eos = set(grammar.vocab.eos_ids)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=torch.tensor([prompt + out])).logits[0, -1].float()
            m.fill_next_token_bitmask(bm, 0)
            tid = int(torch.argmax(mask_logits(logits.unsqueeze(0), bm)[0]))
            assert m.consume_token(tid)
            out.append(tid)
            if tid in eos:
                break
    return out


def invariant_checker(prompt: list[int], toy: bool = False):
    """on_round hook: cache length, cache contents (toy) and matcher position match the sequence."""
    log = []

    def check(s):
        seq, cached, cache, m, out = s["seq"], s["cached"], s["cache"], s["matcher"], s["out"]
        assert seq == prompt + out
        assert cached == len(seq) - 1
        assert cache.get_seq_length() == cached
        if toy:
            assert cache.rows[0] == seq[:cached]
        assert m.num_tokens == len(out)
        assert s["emitted"][: s["accepted"]] == s["draft"][: s["accepted"]]
        assert len(s["emitted"]) in (s["accepted"], s["accepted"] + 1)
        log.append((len(s["draft"]), s["accepted"]))

    return check, log


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def smol_vocab(smollm_tokenizer):
    from corral.vocab import Vocabulary

    return Vocabulary.from_tokenizer(smollm_tokenizer)


@pytest.fixture(scope="module")
def tiny_llama(smol_vocab):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=smol_vocab.size, max_position_embeddings=512,
    )
    return LlamaForCausalLM(cfg).to(torch.float64).eval()


@pytest.fixture(scope="module")
def tiny_draft_llama(smol_vocab):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=smol_vocab.size, max_position_embeddings=512,
    )
    return LlamaForCausalLM(cfg).to(torch.float64).eval()


@pytest.fixture(scope="module")
def jsonish(smol_vocab):
    return Grammar.from_lark(JSONISH, smol_vocab)


@pytest.fixture(scope="module")
def json_value(smol_vocab):
    return Grammar.from_lark(JSON_VALUE, smol_vocab)


PROMPTS = [
    'Write a JSON object: {"name":"bob","age":7,"tags":["x"],"ok":true}',
    "Hello",
    '{"name":"ann","age":30,"tags":[],"ok":false} and again',
]


# ----------------------------------------------------------------------------- greedy
@pytest.mark.parametrize("cfg_name", sorted(CONFIGS))
@pytest.mark.parametrize("gname", ["jsonish", "json_value"])
def test_greedy_identical_tiny_llama_float64(cfg_name, gname, request, tiny_llama, smollm_tokenizer):
    grammar = request.getfixturevalue(gname)
    for text in PROMPTS:
        prompt = smollm_tokenizer(text)["input_ids"]
        ref = plain_greedy(tiny_llama, grammar, prompt, 40)
        cfg = CONFIGS[cfg_name]
        check, log = invariant_checker(prompt)
        cfg = SpeculativeConfig(**{**cfg.__dict__, "on_round": check})
        ids, finish, lp, stats = speculative_generate(
            tiny_llama, smollm_tokenizer, prompt, grammar, config=cfg, max_new_tokens=40
        )
        assert ids == ref, (cfg_name, text)
        assert finish == ("eos" if ref[-1] in grammar.vocab.eos_ids else "max_new_tokens")
        assert stats.n_tokens == len(ids)
        assert stats.n_forwards == len(log)


def test_greedy_matches_api_plain_path(tiny_llama, smollm_tokenizer, jsonish):
    """Against corral.api's own greedy loop (KV cache, one token per forward), and through the hook."""
    import corral

    text = PROMPTS[0]
    plain = corral.generate(tiny_llama, smollm_tokenizer, text, jsonish, max_new_tokens=40, chat=False,
                            allow_incomplete=True)
    spec = corral.generate(tiny_llama, smollm_tokenizer, text, jsonish, max_new_tokens=40, chat=False,
                           allow_incomplete=True, speculative=True)
    spec2 = corral.generate(tiny_llama, smollm_tokenizer, text, jsonish, max_new_tokens=40, chat=False,
                            allow_incomplete=True, speculative={"max_draft": 3, "drafters": ("grammar", "recycle")})
    assert spec.token_ids == plain.token_ids == spec2.token_ids
    assert spec.finish_reason == plain.finish_reason
    assert spec.logprob == pytest.approx(plain.logprob, abs=1e-4)
    assert spec.complete == plain.complete


def test_greedy_draft_model_identical(tiny_llama, tiny_draft_llama, smollm_tokenizer, json_value):
    cfg = SpeculativeConfig(drafters=("model",), draft_model=tiny_draft_llama, draft_max=4)
    for text in PROMPTS[:2]:
        prompt = smollm_tokenizer(text)["input_ids"]
        ref = plain_greedy(tiny_llama, json_value, prompt, 30)
        ids, _, _, _ = speculative_generate(tiny_llama, smollm_tokenizer, prompt, json_value, config=cfg,
                                            max_new_tokens=30)
        assert ids == ref


def test_self_draft_model_accepts_everything(tiny_llama, smollm_tokenizer, jsonish):
    """The target as its own draft model: every greedy draft is accepted."""
    cfg = SpeculativeConfig(drafters=("model",), draft_model=tiny_llama, draft_max=5)
    prompt = smollm_tokenizer(PROMPTS[1])["input_ids"]
    ids, _, _, stats = speculative_generate(tiny_llama, smollm_tokenizer, prompt, jsonish, config=cfg,
                                            max_new_tokens=30)
    assert ids == plain_greedy(tiny_llama, jsonish, prompt, 30)
    assert stats.acceptance_rate == 1.0
    assert stats.tokens_per_forward > 4


def test_max_new_tokens_respected(tiny_llama, smollm_tokenizer, json_value):
    prompt = smollm_tokenizer(PROMPTS[0])["input_ids"]
    for n in (1, 2, 3, 7):
        ids, finish, _, _ = speculative_generate(tiny_llama, smollm_tokenizer, prompt, json_value,
                                                 config=SpeculativeConfig(adaptive=False), max_new_tokens=n)
        assert ids == plain_greedy(tiny_llama, json_value, prompt, n)
        assert len(ids) <= n


# ----------------------------------------------------------------------------- drafters
def test_grammar_drafter_canonical_tokens(smollm_tokenizer, smol_vocab, jsonish):
    d = GrammarDrafter(smol_vocab, smollm_tokenizer, backoff=1)
    m = jsonish.matcher()
    toks, src = d.propose([], m, 16)
    canon = smollm_tokenizer.encode('{"name":"', add_special_tokens=False)
    assert toks == canon[:-1] and src == "grammar"
    assert m.num_tokens == 0  # the matcher is only read
    d0 = GrammarDrafter(smol_vocab, smollm_tokenizer, backoff=0)
    assert d0.propose([], m, 16)[0] == canon


def test_lookup_drafter():
    d = LookupDrafter(ngram_max=3)
    d.extend([1, 2, 3, 4, 5, 1, 2, 9])
    assert d.propose([7, 1, 2], None, 3)[0] == [9]  # most recent occurrence of (1, 2)
    assert d.propose([3, 4], None, 2)[0] == [5, 1]
    assert d.propose([8], None, 2)[0] == []


def test_crop_cache_dynamic():
    from transformers import DynamicCache

    c = DynamicCache()
    k = torch.randn(1, 2, 7, 4)
    c.update(k, k.clone(), 0)
    crop_cache(c, 4)
    assert c.get_seq_length() == 4
    crop_cache(c, 4)
    assert c.get_seq_length() == 4


# ----------------------------------------------------------------------------- sampling
TOY_TOKENS = ["{", "}", "a", "b", "ab", "{a", "b}", "ba"]


@pytest.fixture(scope="module")
def toy_setup():
    vocab = toy_vocabulary(TOY_TOKENS)
    grammar = Grammar.from_regex(r"\{[ab]{1,3}\}", vocab)
    bos = vocab.size - 1
    model = random_lm(vocab.size, seed=3, concentration=0.7, zero_ids=[bos])
    tok = ToyTokenizer(vocab)
    prompt = [bos, 0, 2, 3, 1, 0, 4]  # "{ab}{ab" gives the n-gram drafter something to copy
    return vocab, grammar, model, tok, prompt


SAMPLE_CONFIGS = {
    "deterministic": SpeculativeConfig(adaptive=False, max_draft=4, backoff=0),
    "recycle": SpeculativeConfig(drafters=("recycle", "lookup"), adaptive=False, max_draft=3),
}


@pytest.mark.parametrize("name", ["deterministic", "recycle", "model"])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_sampling_distribution_equals_plain(name, temperature, toy_setup):
    vocab, grammar, model, tok, prompt = toy_setup
    enum = enumerate_language(model, grammar, prompt, max_tokens=8, temperature=temperature)
    target = enum.gcd_distribution()
    if name == "model":
        draft = random_lm(vocab.size, seed=11, concentration=0.7, zero_ids=[vocab.size - 1])
        cfg = SpeculativeConfig(drafters=("model",), draft_model=draft, draft_max=3)
    else:
        cfg = SAMPLE_CONFIGS[name]
    n = 3000
    gen = torch.Generator().manual_seed(1234)
    keys = []
    n_fwd = 0
    for _ in range(n):
        ids, finish, _, stats = speculative_generate(model, tok, prompt, grammar, config=cfg, max_new_tokens=8,
                                                     temperature=temperature, generator=gen)
        assert finish == "eos"
        keys.append(tuple(ids))
        n_fwd += stats.n_forwards
    emp = empirical(keys)
    assert set(emp) <= set(target)
    tv = tv_distance(emp, target)
    assert tv < tv_bound(len(target), n), (tv, tv_bound(len(target), n))
    # the drafts are really used
    assert n_fwd < sum(len(k) for k in keys)


def test_sampling_logprob_is_target_logprob(toy_setup):
    vocab, grammar, model, tok, prompt = toy_setup
    enum = enumerate_language(model, grammar, prompt, max_tokens=8)
    target = enum.gcd_distribution()
    for seed in range(20):
        ids, _, lp, _ = speculative_generate(model, tok, prompt, grammar, config=SAMPLE_CONFIGS["deterministic"],
                                             max_new_tokens=8, temperature=1.0, seed=seed)
        assert lp == pytest.approx(np.log(target[tuple(ids)]), abs=1e-5)


# ----------------------------------------------------------------------------- consistency
class ScriptedDrafter:
    """Proposes runs drawn by hypothesis: allowed tokens, random ids, or the target's greedy choice."""

    name = "scripted"

    def __init__(self, data, vocab_size: int) -> None:
        self.data = data
        self.V = vocab_size

    def propose(self, seq, matcher, k):
        n = self.data.draw(st.integers(0, min(k, 6)), label="run")
        out = []
        w = matcher.copy()
        for _ in range(n):
            kind = self.data.draw(st.sampled_from(["allowed", "allowed", "random"]), label="kind")
            if kind == "random":
                t = self.data.draw(st.integers(0, self.V - 1), label="tid")
            else:
                allowed = w.allowed_token_ids().tolist()
                if not allowed:
                    break
                t = allowed[self.data.draw(st.integers(0, len(allowed) - 1), label="pick")]
            out.append(t)
            if not w.consume_token(t):
                break
        return out, self.name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), sampling=st.booleans(), max_new=st.integers(1, 14))
def test_cache_and_matcher_consistent_random_drafts(toy_setup, data, sampling, max_new):
    vocab, grammar, model, tok, prompt = toy_setup
    check, log = invariant_checker(prompt, toy=True)
    cfg = SpeculativeConfig(drafters=(ScriptedDrafter(data, vocab.size),), adaptive=False, max_draft=6,
                            on_round=check)
    ids, finish, _, stats = speculative_generate(model, tok, prompt, grammar, config=cfg, max_new_tokens=max_new,
                                                 temperature=1.0 if sampling else 0.0, seed=5)
    assert len(ids) <= max_new
    m = grammar.matcher()
    assert m.consume_tokens(ids) == len(ids)
    if not sampling:
        assert ids == plain_greedy(model, grammar, prompt, max_new)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_kv_cache_consistent_random_drafts_llama(tiny_llama, smollm_tokenizer, json_value, data):
    prompt = smollm_tokenizer(PROMPTS[0])["input_ids"]
    check, _ = invariant_checker(prompt)
    cfg = SpeculativeConfig(drafters=(ScriptedDrafter(data, json_value.vocab.size),), adaptive=False,
                            max_draft=6, on_round=check)
    ids, _, _, _ = speculative_generate(tiny_llama, smollm_tokenizer, prompt, json_value, config=cfg,
                                        max_new_tokens=16)
    assert ids == plain_greedy(tiny_llama, json_value, prompt, 16)


# ----------------------------------------------------------------------------- embedded model
@pytest.mark.model
@pytest.mark.slow
def test_greedy_identical_embedded_model():
    """fp32 SmolLM2: identical tokens, or the first difference is at a float32 near-tie."""
    import corral
    from corral.models import load_default

    model, tok = load_default()
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "age": {"type": "integer"},
            "city": {"enum": ["Paris", "London", "Berlin"]},
        },
        "required": ["name", "age", "city"],
        "additionalProperties": False,
    }
    try:
        grammar = corral.api.compile_json_schema(schema, tok, model)
    except Exception:  # noqa: BLE001 - JSON Schema front end not available: an equivalent Lark grammar
        from corral.api import _model_vocab

        grammar = Grammar.from_lark(
            r"""start: "{\"name\":" STRING ",\"age\":" INT ",\"city\":" CITY "}"
STRING: /"[a-zA-Z ]{0,20}"/
INT: /-?(0|[1-9][0-9]{0,8})/
CITY: "\"Paris\"" | "\"London\"" | "\"Berlin\""
""",
            _model_vocab(tok, model),
        )
    prompts = [
        "Describe a person living in Europe as JSON.",
        "Give me a JSON object for Alice, 31, who lives in Paris.",
        "JSON please: a user called Bob from London aged 45.",
    ]
    for p in prompts:
        plain = corral.generate(model, tok, p, grammar, max_new_tokens=48, allow_incomplete=True)
        spec = corral.generate(model, tok, p, grammar, max_new_tokens=48, allow_incomplete=True, speculative=True)
        if spec.token_ids != plain.token_ids:
            i = next(j for j, (a, b) in enumerate(zip(spec.token_ids, plain.token_ids)) if a != b)
            prompt_ids = corral.api.encode_prompt(tok, p)[0].tolist()
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([prompt_ids + plain.token_ids[:i]])).logits[0, -1].float()
            m = grammar.matcher()
            m.consume_tokens(plain.token_ids[:i])
            bm = torch.zeros((1, grammar.vocab.n_words), dtype=torch.int32)
            m.fill_next_token_bitmask(bm, 0)
            top2 = torch.topk(mask_logits(logits.unsqueeze(0), bm)[0], 2).values
            assert float(top2[0] - top2[1]) < 1e-3, (p, i, spec.text, plain.text)
