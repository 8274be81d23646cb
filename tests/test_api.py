"""corral.api: generate / generate_json with the embedded model, plus model-free unit tests."""

from __future__ import annotations

import math
import os

import jsonschema
import pytest
import torch

from corral import api
from corral.api import GenerationResult, generate, generate_json, warp
from corral.automaton.grammar import Grammar
from corral.errors import GenerationError

# ----------------------------------------------------------------------------- no model


def test_warp_top_k_top_p():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0, float("-inf")])
    lp = warp(logits, 1.0, 0, 1.0)
    assert math.isclose(float(lp.exp().sum()), 1.0, rel_tol=1e-6)
    assert lp[4] == float("-inf")
    lp = warp(logits, 1.0, 2, 1.0)
    assert torch.isfinite(lp).nonzero().flatten().tolist() == [0, 1]
    lp = warp(logits, 1.0, 0, 0.5)  # p(0) ~ 0.66 >= 0.5: only the top token survives
    assert torch.isfinite(lp).nonzero().flatten().tolist() == [0]
    lp = warp(logits, 0.5, 0, 1.0)
    assert float(lp[0]) > float(warp(logits, 1.0, 0, 1.0)[0])


def test_mask_logits_wider_than_vocab():
    logits = torch.zeros((1, 70))
    bm = torch.tensor([[1, 0]], dtype=torch.int32)
    out = api.mask_logits(logits, bm)
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [0]


def test_sampler_registry_has_greedy_and_sample():
    assert {"greedy", "sample"} <= set(api.SAMPLERS)


def test_register_sampler_plugs_in(monkeypatch):
    calls = []

    def fake(ctx):
        calls.append(ctx.max_new_tokens)
        return api.DecodeOutput([ctx.eos_ids[0]], "eos", 0.0, True, {})

    monkeypatch.setitem(api.SAMPLERS, "fake", fake)

    class Tok:
        chat_template = None

        def __call__(self, text, **kw):
            return {"input_ids": [1, 2, 3]}

    from corral.vocab import Vocabulary

    g = Grammar.from_lark('start: "a"?', Vocabulary([b"a", None], eos_ids=[1]))
    res = generate(object(), Tok(), "hi", g, sampler="fake", max_new_tokens=5)
    assert calls == [5]
    assert res.text == "" and res.finish_reason == "eos" and res.token_ids == [1]


# ----------------------------------------------------------------------------- model

SCHEMAS = [
    {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
        "required": ["name", "age"],
        "additionalProperties": False,
    },
    {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "minItems": 2, "maxItems": 4},
    {"enum": ["red", "green", "blue"]},
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "ok": {"type": "boolean"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]{1,6}$"}, "maxItems": 2},
        },
        "required": ["ok", "tags"],
        "additionalProperties": False,
    },
    {"type": "string", "format": "date"},
]
PROMPTS = [
    "Describe a person as JSON.",
    "List a few small numbers as a JSON array.",
    "Name a color.",
    "Rate this sentence and tag it: 'the cat sat'.",
    "When did the Berlin wall fall? Answer with a date.",
]


@pytest.fixture(scope="session")
def model_and_tokenizer():
    from corral.models import ModelNotAvailableError, load_default

    try:
        pair = load_default()
    except ModelNotAvailableError as exc:
        pytest.skip(str(exc))
    # Two OpenMP threads on a busy 2-core machine can be 20x slower than one; override with
    # CORRAL_TEST_TORCH_THREADS (0 = leave torch's default).
    threads = int(os.environ.get("CORRAL_TEST_TORCH_THREADS", "1"))
    if threads > 0:
        torch.set_num_threads(threads)
    return pair


@pytest.mark.model
@pytest.mark.parametrize("i", range(len(SCHEMAS)))
def test_generate_json_greedy_is_valid(model_and_tokenizer, i):
    model, tok = model_and_tokenizer
    value = generate_json(model, tok, SCHEMAS[i], PROMPTS[i], max_new_tokens=48)
    jsonschema.validate(value, SCHEMAS[i], format_checker=jsonschema.FormatChecker())


@pytest.mark.model
@pytest.mark.parametrize("seed", [1, 2])
def test_generate_json_sampled_is_valid_and_reproducible(model_and_tokenizer, seed):
    model, tok = model_and_tokenizer
    schema = SCHEMAS[0]
    a, ra = generate_json(model, tok, schema, PROMPTS[0], temperature=1.0, seed=seed, max_new_tokens=48, return_result=True)
    b = generate_json(model, tok, schema, PROMPTS[0], temperature=1.0, seed=seed, max_new_tokens=48)
    jsonschema.validate(a, schema)
    assert a == b
    assert ra.logprob <= 0.0 and math.isfinite(ra.logprob)


@pytest.mark.model
def test_generate_result_fields_and_chat_messages(model_and_tokenizer):
    model, tok = model_and_tokenizer
    g = Grammar.from_lark('start: "yes" | "no"', tok)
    res = generate(model, tok, [{"role": "user", "content": "Is the sky blue? Answer yes or no."}], g, max_new_tokens=8)
    assert isinstance(res, GenerationResult)
    assert res.text in ("yes", "no")
    assert res.finish_reason == "eos"
    assert res.token_ids[-1] in g.vocab.eos_ids
    assert res.n_tokens == len(res.token_ids)
    assert res.logprob <= 0.0
    assert res.timings["total"] > 0


@pytest.mark.model
def test_max_new_tokens_too_small_raises_with_partial_text(model_and_tokenizer):
    model, tok = model_and_tokenizer
    schema = SCHEMAS[0]
    with pytest.raises(GenerationError) as info:
        generate_json(model, tok, schema, PROMPTS[0], max_new_tokens=3)
    assert info.value.finish_reason == "max_new_tokens"
    assert info.value.partial_text.startswith("{")
    g = Grammar.from_lark('start: "[" "1"~5 "]"', tok)
    res = generate(model, tok, "Go.", g, max_new_tokens=2, allow_incomplete=True)
    assert res.finish_reason == "max_new_tokens" and not res.complete
    assert res.text.startswith("[")


@pytest.mark.model
def test_prompt_with_special_tokens_in_its_text(model_and_tokenizer):
    # a raw prompt whose text holds the chat markers (tokenized as special tokens): the output
    # still comes only from the grammar, never a special token
    model, tok = model_and_tokenizer
    prompt = "<|im_start|>user\nIs fire cold? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert set(ids) & set(tok.all_special_ids), "the prompt should contain special tokens"
    g = Grammar.from_lark('start: "yes" | "no"', tok)
    res = generate(model, tok, prompt, g, max_new_tokens=8)
    assert res.text in ("yes", "no") and res.finish_reason == "eos"
    specials = set(tok.all_special_ids) - set(g.vocab.eos_ids)
    assert not specials & set(res.token_ids)
