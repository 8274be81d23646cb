"""corral.integrations.hf.LogitsProcessor: unit tests on a toy vocabulary, then model.generate modes."""

from __future__ import annotations

import os
import random

import pytest
import torch

from corral.automaton.grammar import Grammar
from corral.integrations.hf import LogitsProcessor, apply_bitmask, unpack_bitmask
from corral.vocab import Vocabulary

# ----------------------------------------------------------------------------- toy vocabulary

TOY_TOKENS = [b"a", b"b", b"ab", b"(", b")", b"((", b"))", b"ba", None]  # id 8: EOS
EOS = 8
BALANCED = 'start: "(" start ")" | ("a" | "b")*'


@pytest.fixture(scope="module")
def toy_grammar():
    return Grammar.from_lark(BALANCED, Vocabulary(TOY_TOKENS, eos_ids=[EOS]))


def _replay_mask(grammar, seq):
    """Reference: allowed bool[V] for a generated prefix, by replaying from scratch (None if refused)."""
    m = grammar.matcher()
    for t in seq:
        if m.is_terminated():
            break
        if not m.consume_token(t):
            return None
    v = grammar.vocab.size
    if m.is_terminated():
        allowed = torch.zeros(v, dtype=torch.bool)
        allowed[EOS] = True
        return allowed
    bm = torch.zeros((1, grammar.vocab.n_words), dtype=torch.int32)
    m.fill_next_token_bitmask(bm, 0)
    return unpack_bitmask(bm, v)[0]


def test_unpack_bitmask_bits_and_width():
    bm = torch.tensor([[0b1011, 0], [0, -(2**31)]], dtype=torch.int32)  # bit 31 of word 1 -> id 63
    out = unpack_bitmask(bm, 70)
    assert out.shape == (2, 70)
    assert out[0].nonzero().flatten().tolist() == [0, 1, 3]
    assert out[1].nonzero().flatten().tolist() == [63]
    assert unpack_bitmask(bm, 40).shape == (2, 40)


def test_apply_bitmask_is_out_of_place():
    scores = torch.zeros((1, 40))
    bm = torch.tensor([[0b101, 0]], dtype=torch.int32)
    out = apply_bitmask(scores, bm)
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [0, 2]
    assert torch.all(scores == 0)  # input untouched (transformers' prompt lookup reuses it)


@pytest.mark.parametrize("bias_cache_bytes", [None, 100])
def test_processor_matches_replay_on_random_jumps(toy_grammar, bias_cache_bytes, monkeypatch):
    """Prefixes that grow, shrink, fork and move between rows: masks equal a fresh replay.

    With a 100-byte bias cache (two rows of this vocabulary) states are evicted all the time.
    """
    if bias_cache_bytes is not None:
        monkeypatch.setattr("corral.integrations.hf._BIAS_CACHE_BYTES", bias_cache_bytes)
    rng = random.Random(0)
    prompt = [[7, 7, 7], [6, 6, 6]]  # arbitrary prompt ids, two rows
    lp = LogitsProcessor(toy_grammar, prompt_length=3)
    v = toy_grammar.vocab.size
    seqs: list[list[int]] = [[], []]
    for _ in range(300):
        # each row: mostly extend by an allowed token, sometimes shrink, sometimes copy the other row
        for r in range(2):
            op = rng.random()
            if op < 0.15 and seqs[r]:
                del seqs[r][rng.randrange(len(seqs[r])) :]
            elif op < 0.25:
                seqs[r] = list(seqs[1 - r])
            else:
                ref = _replay_mask(toy_grammar, seqs[r])
                choices = ref.nonzero().flatten().tolist() if ref is not None else [EOS]
                if len(seqs[r]) > 12:
                    choices = [EOS] if EOS in choices else choices
                seqs[r].append(rng.choice(choices))
        n = max(len(s) for s in seqs)
        # equal lengths per call, as in transformers: pad the shorter row with EOS after its end
        rows = []
        for r in range(2):
            s = seqs[r]
            rows.append(prompt[r] + s + [EOS] * (n - len(s)))
        ids = torch.tensor(rows)
        out = lp(ids, torch.zeros((2, v + 5)))
        assert out.shape == (2, v + 5)
        assert torch.all(torch.isinf(out[:, v:]))  # columns past the vocabulary: masked
        for r in range(2):
            ref = _replay_mask(toy_grammar, ids[r, 3:].tolist())
            got = torch.isfinite(out[r, :v])
            if ref is None:
                assert got.nonzero().flatten().tolist() == [EOS]
            else:
                assert torch.equal(got, ref), (ids[r].tolist(), got, ref)
        # keep rows equal-length state consistent with what was sent
        seqs = [ids[r, 3:].tolist() for r in range(2)]
        for r in range(2):  # trim padding so rows can continue
            while seqs[r] and seqs[r][-1] == EOS and len(seqs[r]) > 1 and seqs[r][-2] == EOS:
                seqs[r].pop()


def test_refused_prefix_masks_all_but_eos(toy_grammar):
    lp = LogitsProcessor(toy_grammar, prompt_length=1)
    v = toy_grammar.vocab.size
    out = lp(torch.tensor([[0, 4]]), torch.zeros((1, v)))  # ")" first: refused
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [EOS]
    assert lp.dead_rows == [0]
    out = lp(torch.tensor([[0, 3]]), torch.zeros((1, v)))  # back to a viable prefix
    assert lp.dead_rows == []
    assert torch.isfinite(out[0, 4]) and not torch.isfinite(out[0, EOS])


def test_finished_row_allows_eos_and_pad(toy_grammar):
    lp = LogitsProcessor(toy_grammar, pad_token_id=7)
    v = toy_grammar.vocab.size
    lp(torch.tensor([[1]]), torch.zeros((1, v)))  # first call: prompt length 1
    lp(torch.tensor([[1, 0]]), torch.zeros((1, v)))
    lp(torch.tensor([[1, 0, EOS]]), torch.zeros((1, v)))
    out = lp(torch.tensor([[1, 0, EOS, 7]]), torch.zeros((1, v)))
    assert sorted(torch.isfinite(out[0]).nonzero().flatten().tolist()) == [7, EOS]


def test_grammar_per_row_and_new_session_detection(toy_grammar):
    only_a = Grammar.from_lark('start: "a"+', toy_grammar.vocab)
    lp = LogitsProcessor([toy_grammar, only_a])
    v = toy_grammar.vocab.size
    out = lp(torch.tensor([[5, 5], [6, 6]]), torch.zeros((2, v)))
    assert torch.isfinite(out[0, 3]) and not torch.isfinite(out[1, 3])  # "(" only in row 0
    assert torch.isfinite(out[1, 0]) and not torch.isfinite(out[1, EOS])
    # a new prompt: new session (prompt length re-detected)
    out = lp(torch.tensor([[9 % v, 1, 1], [2, 2, 2]]), torch.zeros((2, v)))
    assert torch.isfinite(out[0, 3]) and torch.isfinite(out[1, 0])
    # same prompt, jump of 3 tokens: treated as a new generate() whose prompt is longer
    out = lp(torch.tensor([[9 % v, 1, 1, 4, 4, 4], [2, 2, 2, 0, 0, 0]]), torch.zeros((2, v)))
    assert lp.dead_rows == []
    assert torch.isfinite(out[1, 0])


def test_rows_not_divisible_by_grammars(toy_grammar):
    from corral.errors import CorralError

    lp = LogitsProcessor([toy_grammar, toy_grammar])
    with pytest.raises(CorralError):
        lp(torch.zeros((3, 2), dtype=torch.long), torch.zeros((3, toy_grammar.vocab.size)))


def test_grammar_without_vocab_needs_tokenizer():
    from corral.errors import CorralError

    g = Grammar.from_lark('start: "a"')
    with pytest.raises(CorralError):
        LogitsProcessor(g)


# ----------------------------------------------------------------------------- real model

PERSON = (
    'start: "{\\"name\\": \\"" NAME "\\", \\"age\\": " AGE "}"\n'
    "NAME: /[A-Z][a-z]{1,12}/\n"
    "AGE: /[1-9][0-9]?/\n"
)
COLOR = 'start: "red" | "green" | "blue" | "yellow"\n'


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


@pytest.fixture(scope="session")
def person_grammar(model_and_tokenizer):
    _, tok = model_and_tokenizer
    return Grammar.from_lark(PERSON, tok)


@pytest.fixture(scope="session")
def color_grammar(model_and_tokenizer):
    _, tok = model_and_tokenizer
    return Grammar.from_lark(COLOR, tok)


def _inputs(tok, prompts):
    texts = [
        tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False)
        for p in prompts
    ]
    tok.padding_side = "left"
    return tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def _outputs(tok, out, prompt_len):
    return [tok.decode(row[prompt_len:], skip_special_tokens=True) for row in out]


PROMPT = "Give me a person as JSON with a name and an age."


@pytest.mark.model
def test_generate_greedy(model_and_tokenizer, person_grammar):
    model, tok = model_and_tokenizer
    enc = _inputs(tok, [PROMPT])
    out = model.generate(**enc, logits_processor=[LogitsProcessor(person_grammar)], max_new_tokens=24, do_sample=False)
    (text,) = _outputs(tok, out, enc.input_ids.shape[1])
    assert person_grammar.accepts(text), text


@pytest.mark.model
def test_generate_sampling_with_return_sequences(model_and_tokenizer, person_grammar):
    model, tok = model_and_tokenizer
    enc = _inputs(tok, [PROMPT])
    torch.manual_seed(0)
    out = model.generate(
        **enc,
        logits_processor=[LogitsProcessor(person_grammar)],
        max_new_tokens=24,
        do_sample=True,
        temperature=1.0,
        top_k=50,
        top_p=0.95,
        num_return_sequences=2,
    )
    texts = _outputs(tok, out, enc.input_ids.shape[1])
    assert len(texts) == 2
    for t in texts:
        assert person_grammar.accepts(t), t


@pytest.mark.model
def test_batch_left_padded_two_grammars(model_and_tokenizer, person_grammar, color_grammar):
    model, tok = model_and_tokenizer
    enc = _inputs(tok, [PROMPT, "Name a color."])
    assert (enc.attention_mask[:, 0] == 0).any()  # really left-padded
    lp = LogitsProcessor([person_grammar, color_grammar])
    out = model.generate(**enc, logits_processor=[lp], max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id)
    a, b = _outputs(tok, out, enc.input_ids.shape[1])
    assert person_grammar.accepts(a), a
    assert color_grammar.accepts(b), b


@pytest.mark.model
def test_beam_search(model_and_tokenizer, person_grammar):
    model, tok = model_and_tokenizer
    enc = _inputs(tok, [PROMPT])
    out = model.generate(
        **enc,
        logits_processor=[LogitsProcessor(person_grammar)],
        max_new_tokens=24,
        num_beams=2,
        num_return_sequences=2,
        do_sample=False,
    )
    for t in _outputs(tok, out, enc.input_ids.shape[1]):
        assert person_grammar.accepts(t), t


class _Recording(LogitsProcessor):
    """Records the generated length of every call (to see drafts being rolled back)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.lengths = []

    def __call__(self, input_ids, scores):
        self.lengths.append(input_ids.shape[1])
        return super().__call__(input_ids, scores)


@pytest.mark.model
def test_assisted_generation_matches_greedy(model_and_tokenizer, person_grammar):
    model, tok = model_and_tokenizer
    # a prompt that contains the answer, so prompt lookup really proposes drafts
    enc = _inputs(tok, ['Repeat exactly: {"name": "Alice", "age": 31}'])
    n = enc.input_ids.shape[1]
    plain = model.generate(**enc, logits_processor=[LogitsProcessor(person_grammar)], max_new_tokens=20, do_sample=False)
    expected = _outputs(tok, plain, n)
    assert person_grammar.accepts(expected[0]), expected

    lookup_lp = _Recording(person_grammar)
    lookup = model.generate(
        **enc, logits_processor=[lookup_lp], max_new_tokens=20, do_sample=False, prompt_lookup_num_tokens=3
    )
    assert _outputs(tok, lookup, n) == expected
    shrinks = sum(1 for a, b in zip(lookup_lp.lengths, lookup_lp.lengths[1:]) if b < a)
    assert shrinks >= 1  # drafts were scored and prefixes went back

    # the assistant's own generate() reuses the processor: prefixes run ahead, then come back
    assist_lp = _Recording(person_grammar)
    assisted = model.generate(
        **enc, logits_processor=[assist_lp], max_new_tokens=20, do_sample=False, assistant_model=model
    )
    assert _outputs(tok, assisted, n) == expected


@pytest.mark.model
def test_processor_reused_across_generate_calls(model_and_tokenizer, person_grammar, color_grammar):
    model, tok = model_and_tokenizer
    lp = LogitsProcessor(color_grammar)
    for prompt in ["Name a color.", "What color is the sky?"]:
        enc = _inputs(tok, [prompt])
        out = model.generate(**enc, logits_processor=[lp], max_new_tokens=8, do_sample=False)
        (text,) = _outputs(tok, out, enc.input_ids.shape[1])
        assert color_grammar.accepts(text), text


def test_finished_row_with_eos_on_the_sign_bit():
    toks = [bytes([97 + i % 26]) for i in range(40)]
    toks[31] = None
    g = Grammar.from_lark('start: "a"', Vocabulary(toks, eos_ids=[31]))
    lp = LogitsProcessor(g, pad_token_id=33)
    lp(torch.tensor([[1]]), torch.zeros((1, 40)))
    lp(torch.tensor([[1, 0]]), torch.zeros((1, 40)))
    out = lp(torch.tensor([[1, 0, 31]]), torch.zeros((1, 48)))
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [31, 33]
