"""corral.vocab.Vocabulary on real tokenizers (byte-level BPE and SentencePiece with byte fallback)."""

from __future__ import annotations

import time

import pytest

from corral.errors import TokenizerError
from corral.vocab import Vocabulary, bytes_to_unicode, load_tokenizer_json

TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    '{"name": "Ada", "age": 36, "tags": ["x", "y"], "ok": true, "v": null, "f": -1.5e10}',
    "def f(x):\n    return x ** 2  # square\n\tif x: pass\n",
    "emoji: 😀🚀👩\u200d💻 ok",
    "日本語のテキストと中文字符",
    "café naïve über résumé Ελληνικά русский ñandú straße",
    "  leading and trailing spaces  ",
    "a\n\nb\r\nc",
    "x = [1, 2, 3]; y = {'k': (4, 5)}",
]

BYTE_LEVEL = ["smollm_tokenizer", "llama3_tokenizer", "deepseek_tokenizer"]


def _get(request, name):
    return request.getfixturevalue(name)


# ------------------------------------------------------------------ byte-level BPE tokenizers


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_byte_level_roundtrip(request, name):
    tok = _get(request, name)
    vocab = Vocabulary.from_tokenizer(tok)
    assert vocab.kind == "byte_level"
    checked = 0
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids, clean_up_tokenization_spaces=False)
        if decoded != text:  # only where decode is lossless
            continue
        checked += 1
        assert b"".join(vocab.token_bytes[i] for i in ids) == decoded.encode("utf-8"), text
        assert vocab.decode_bytes(ids) == text.encode("utf-8")
    assert checked >= len(TEXTS) - 1


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_every_id_special_or_bytes(request, name):
    tok = _get(request, name)
    vocab = Vocabulary.from_tokenizer(tok)
    assert vocab.size == len(tok)
    assert vocab.n_words == (len(tok) + 31) // 32
    assert len(vocab.token_bytes) == vocab.size
    for i, b in enumerate(vocab.token_bytes):
        assert (b is None) == (i in vocab.special_ids), i
    for i in tok.all_special_ids:
        assert vocab.token_bytes[i] is None
        assert i in vocab.special_ids
    # printable ASCII is there as single tokens; Llama-3 / DeepSeek have all 256 single bytes
    # (SmolLM2's vocabulary lacks a few, e.g. 0xC0, 0xF5-0xFF)
    singles = {b for b in vocab.token_bytes if b is not None and len(b) == 1}
    assert {bytes([c]) for c in range(0x20, 0x7F)} <= singles
    if name != "smollm_tokenizer":
        assert len(singles) == 256


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_single_token_matches_decode(request, name):
    """Tokens whose decode is valid UTF-8 decode (mid-text) to exactly their bytes."""
    tok = _get(request, name)
    vocab = Vocabulary.from_tokenizer(tok)
    anchor = tok.encode("a", add_special_tokens=False)
    assert len(anchor) == 1
    step = max(1, vocab.size // 400)
    for i in list(range(0, vocab.size, step)) + list(range(vocab.size - 300, vocab.size)):
        b = vocab.token_bytes[i]
        if b is None:
            continue
        try:
            s = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
        assert tok.decode(anchor + [i] + anchor, clean_up_tokenization_spaces=False) == "a" + s + "a", i


def test_llama3_eos_and_specials(llama3_tokenizer):
    vocab = Vocabulary.from_tokenizer(llama3_tokenizer)
    tok = llama3_tokenizer
    eot = tok.convert_tokens_to_ids("<|eot_id|>")
    eot_text = tok.convert_tokens_to_ids("<|end_of_text|>")
    assert set(vocab.eos_ids) == {eot, eot_text}
    assert vocab.size == 128256
    assert all(vocab.token_bytes[i] is None for i in range(128000, 128256))
    assert vocab.token_str(eot) == "<|eot_id|>"


def test_smollm_eos(smollm_tokenizer):
    vocab = Vocabulary.from_tokenizer(smollm_tokenizer)
    im_end = smollm_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert smollm_tokenizer.eos_token_id in vocab.eos_ids
    assert im_end in vocab.eos_ids
    assert vocab.size == 49152
    # added tokens flagged special in the backend (e.g. <filename>) are special too
    fn = smollm_tokenizer.convert_tokens_to_ids("<filename>")
    assert vocab.token_bytes[fn] is None and fn in vocab.special_ids


def test_deepseek_eos_and_nonspecial_added(deepseek_tokenizer):
    tok = deepseek_tokenizer
    vocab = Vocabulary.from_tokenizer(tok)
    eos = tok.convert_tokens_to_ids("<｜end▁of▁sentence｜>")
    assert eos in vocab.eos_ids
    # non-special added tokens carry their content bytes, and decode agrees
    added = tok.backend_tokenizer.get_added_tokens_decoder()
    nonspecial = [(i, at.content) for i, at in added.items() if not at.special]
    assert nonspecial
    anchor = tok.encode("a", add_special_tokens=False)
    for i, content in nonspecial[:10]:
        assert vocab.token_bytes[i] == content.encode("utf-8")
        assert tok.decode(anchor + [i] + anchor) == "a" + content + "a"


def test_raw_tokenizers_object_same_fingerprint(llama3_tokenizer):
    raw = llama3_tokenizer.backend_tokenizer
    v_raw = Vocabulary.from_tokenizer(raw)
    v_hf = Vocabulary.from_tokenizer(llama3_tokenizer)
    assert v_raw.token_bytes == v_hf.token_bytes
    assert v_raw.eos_ids == v_hf.eos_ids  # llama3 has no eos_token_id in the bare json: name list
    assert v_raw.fingerprint == v_hf.fingerprint


def test_id_of_bytes_and_token_str(llama3_tokenizer):
    vocab = Vocabulary.from_tokenizer(llama3_tokenizer)
    tok = llama3_tokenizer
    [hello] = tok.encode(" hello", add_special_tokens=False)
    assert hello in vocab.id_of_bytes[b" hello"]
    assert vocab.token_str(hello) == " hello"
    for b, ids in list(vocab.id_of_bytes.items())[:2000]:
        assert all(vocab.token_bytes[i] == b for i in ids)
    # an incomplete UTF-8 token is shown with escapes
    partial = vocab.id_of_bytes[b"\xe6"][0]
    assert vocab.token_str(partial) == "\\xe6"


def test_construction_speed_and_memo(llama3_tokenizer, deepseek_tokenizer):
    from corral import vocab as vocab_mod

    # drop memo entries so the timing measures construction
    for tok in (llama3_tokenizer, deepseek_tokenizer):
        vocab_mod._memo_weak.pop(tok, None)
        t = time.perf_counter()
        v1 = Vocabulary.from_tokenizer(tok)
        build = time.perf_counter() - t
        assert build < 2.0, build  # ~0.3 s measured; slack for loaded CI
        t = time.perf_counter()
        for _ in range(100):
            assert Vocabulary.from_tokenizer(tok) is v1
        assert (time.perf_counter() - t) / 100 < 0.01
        # a different eos / vocab_size is a different (cached) vocabulary
        v2 = Vocabulary.from_tokenizer(tok, vocab_size=v1.size + 64)
        assert v2 is not v1 and Vocabulary.from_tokenizer(tok, vocab_size=v1.size + 64) is v2


# ------------------------------------------------------------------ padding, eos, fingerprint


def test_vocab_size_padding(llama3_tokenizer):
    n = len(llama3_tokenizer)
    v = Vocabulary.from_tokenizer(llama3_tokenizer, vocab_size=n + 100)
    assert v.size == n + 100 and len(v.token_bytes) == n + 100
    assert v.n_words == (n + 100 + 31) // 32
    assert all(b is None for b in v.token_bytes[n:])
    assert v.token_bytes[:n] == Vocabulary.from_tokenizer(llama3_tokenizer).token_bytes
    assert v.fingerprint != Vocabulary.from_tokenizer(llama3_tokenizer).fingerprint
    assert v.token_str(n + 5).startswith("<unused")
    with pytest.raises(TokenizerError):
        Vocabulary.from_tokenizer(llama3_tokenizer, vocab_size=n - 1)


def test_explicit_eos_ids(smollm_tokenizer):
    v = Vocabulary.from_tokenizer(smollm_tokenizer, eos_ids=[0])
    assert v.eos_ids == (0,)
    assert 0 in v.special_ids
    v_int = Vocabulary.from_tokenizer(smollm_tokenizer, eos_ids=0)
    assert v_int.eos_ids == (0,)
    assert v.fingerprint != Vocabulary.from_tokenizer(smollm_tokenizer).fingerprint
    with pytest.raises(TokenizerError):
        Vocabulary.from_tokenizer(smollm_tokenizer, eos_ids=[10**7])


def test_custom_vocabulary():
    v = Vocabulary([b"a", b"b", b"ab", b"a", None], eos_ids=[4])
    assert v.size == 5 and v.n_words == 1
    assert v.id_of_bytes[b"a"] == [0, 3]
    assert v.decode_bytes([0, 4, 2]) == b"aab"
    assert v.special_ids == frozenset({4})
    assert v.fingerprint == Vocabulary([b"a", b"b", b"ab", b"a", None], eos_ids=[4]).fingerprint
    assert v.fingerprint != Vocabulary([b"a", b"b", b"ab", b"a", None], eos_ids=[4], size=6).fingerprint
    assert v.fingerprint != Vocabulary([b"a", b"b", b"a", b"ab", None], eos_ids=[4]).fingerprint
    assert v.fingerprint != Vocabulary([b"ab", b"", b"ab", b"a", None], eos_ids=[4]).fingerprint
    assert list(v.token_lengths) == [1, 1, 2, 1, -1]
    assert Vocabulary.from_tokenizer(v) is v


def test_gpt2_table():
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"


def test_load_tokenizer_json_errors(tmp_path):
    with pytest.raises(TokenizerError):
        load_tokenizer_json(tmp_path / "nope.json")


# ------------------------------------------------------------------ SentencePiece (byte fallback)


def test_sentencepiece_roundtrip(sp_tokenizer):
    """SentencePiece prepends a dummy-prefix `▁` that decode strips at the text start.

    token_bytes give the *mid-text* bytes, so the joined bytes are the decoded text with one
    leading space (the dummy prefix) when the first token starts with `▁`.
    """
    tok = sp_tokenizer
    sp = tok.corral_sp
    vocab = Vocabulary.from_tokenizer(tok)
    assert vocab.kind == "sentencepiece"
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        decoded = tok.decode(ids)
        if not text[:1].isspace():
            assert decoded == text, text  # no normalizer in the HF pipeline: lossless
            # sentencepiece's own normaliser collapses whitespace, so its ids may differ; its
            # decode of *these* ids must still agree
            assert sp.decode(ids) == decoded
        # (a text starting with a space gets no dummy prefix, yet decode strips one space: lossy;
        # the comparison below, against decode, holds either way)
        joined = b"".join(vocab.token_bytes[i] for i in ids)
        if tok.convert_ids_to_tokens(ids[0]).startswith("▁"):
            assert joined[:1] == b" "
            joined = joined[1:]
        assert joined == decoded.encode("utf-8"), text
        # after another token (mid-text) nothing is stripped: only the very first dummy space goes
        both = tok.encode("a", add_special_tokens=False) + ids
        assert vocab.decode_bytes(both)[1:] == tok.decode(both).encode("utf-8")


def test_sentencepiece_byte_tokens_and_specials(sp_tokenizer):
    tok = sp_tokenizer
    sp = tok.corral_sp
    vocab = Vocabulary.from_tokenizer(tok)
    n_bytes = 0
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if sp.is_byte(i):
            n_bytes += 1
            assert vocab.token_bytes[i] == bytes([int(piece[3:5], 16)]), piece
        elif sp.is_control(i) or sp.is_unknown(i):
            assert vocab.token_bytes[i] is None and i in vocab.special_ids
        else:
            assert vocab.token_bytes[i] == piece.replace("▁", " ").encode("utf-8")
    assert n_bytes == 256
    assert vocab.eos_ids == (sp.eos_id(),)
    # a char outside the training data goes through byte fallback and still round-trips mid-text
    ids = tok.encode("x𝔘ŋ", add_special_tokens=False)
    assert vocab.decode_bytes(ids) == " x𝔘ŋ".encode()


def test_sentencepiece_slow_backend(sp_model_file, sp_tokenizer):
    """transformers' sentencepiece-backed (slow) tokenizer gives the same vocabulary."""
    try:
        from transformers.tokenization_utils_sentencepiece import SentencePieceBackend
    except ImportError:
        pytest.skip("no SentencePieceBackend in this transformers")
    slow = SentencePieceBackend(vocab_file=sp_model_file, legacy=True, bos_token="<s>", eos_token="</s>",
                                unk_token="<unk>")
    v_slow = Vocabulary.from_tokenizer(slow)
    v_fast = Vocabulary.from_tokenizer(sp_tokenizer)
    assert v_slow.token_bytes == v_fast.token_bytes
    assert v_slow.eos_ids == v_fast.eos_ids
    assert v_slow.fingerprint == v_fast.fingerprint


def test_metaspace_unigram_byte_fallback():
    """T5/Gemma-style pipeline: Unigram + Metaspace decoder (+ ByteFallback) from a raw Tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    pieces = [("<unk>", 0.0), ("</s>", 0.0), ("▁hi", -1.0), ("▁", -2.0), ("h", -3.0), ("i", -3.0), ("x", -3.0)]
    pieces += [(f"<0x{b:02X}>", -10.0) for b in range(256)]
    t = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=True))
    t.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    t.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="▁", prepend_scheme="always")])
    t.add_special_tokens([AddedToken("<unk>", special=True), AddedToken("</s>", special=True)])
    v = Vocabulary.from_tokenizer(t, eos_ids=[1])
    assert v.kind == "sentencepiece"
    assert v.token_bytes[:4] == (None, None, b" hi", b" ")
    assert v.token_bytes[7 + 0xE6] == b"\xe6"
    ids = t.encode("hi x é").ids
    assert t.decode(ids) == "hi x é"
    assert v.decode_bytes(ids) == " hi x é".encode()


# ------------------------------------------------------------------ unsupported kinds


def test_wordpiece_raises():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    t = Tokenizer(models.WordPiece(vocab={"[UNK]": 0, "[SEP]": 1, "hello": 2, "##s": 3}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    t.decoder = decoders.WordPiece()
    with pytest.raises(TokenizerError, match="WordPiece"):
        Vocabulary.from_tokenizer(t)


def test_unknown_decoder_raises():
    from tokenizers import Tokenizer, decoders, models

    t = Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab</w>": 2}, merges=[]))
    t.decoder = decoders.BPEDecoder(suffix="</w>")
    with pytest.raises(TokenizerError, match="BPEDecoder"):
        Vocabulary.from_tokenizer(t)
    t2 = Tokenizer(models.BPE(vocab={"a": 0, "b": 1}, merges=[]))  # no decoder at all
    with pytest.raises(TokenizerError, match="no decoder"):
        Vocabulary.from_tokenizer(t2, eos_ids=[0])
    with pytest.raises(TokenizerError):
        Vocabulary.from_tokenizer(object())
