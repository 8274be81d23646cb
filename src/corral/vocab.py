"""Token vocabularies: the exact bytes each token id adds to the output.

``Vocabulary.from_tokenizer(tok)`` turns a tokenizer into the byte view the grammar engine
works with.  Decisions (the contract other modules rely on):

* ``token_bytes[i]`` is the byte string token ``i`` appends to the output when it is decoded in the
  *middle* of a text.  Start-of-text effects of the decoder (SentencePiece's removal of the
  dummy-prefix space, ``Strip`` after ``Fuse``, Metaspace ``prepend_scheme``) are not applied, and
  transformers' ``clean_up_tokenization_spaces`` is ignored (generation produces raw bytes).
* The kind is read from the backend's *decoder* configuration and interpreted step by step
  (``ByteLevel``, ``Replace`` with a string pattern, ``ByteFallback``, ``Fuse``, ``Strip``,
  ``Metaspace``, ``Sequence`` of these).  Anything else (WordPiece, BPEDecoder, CTC, regex
  ``Replace``, no decoder at all) raises :class:`~corral.errors.TokenizerError` naming what was found.
  Byte-level tokens whose characters are not all in the GPT-2 byte table decode to their own UTF-8,
  exactly as the ``tokenizers`` ByteLevel decoder does.  ``<0xNN>`` tokens are single bytes only
  when the decoder has ``ByteFallback`` (otherwise they would decode literally, and so do we).
* Special tokens (added tokens flagged special, ``tokenizer.all_special_ids``, SentencePiece
  control / unknown / unused pieces) and every EOS id get ``None``: never allowed as text.
* Non-special added tokens get the UTF-8 of their content (``tokenizers`` decodes added tokens
  verbatim, bypassing the decoder).
* Ids past ``len(tokenizer)`` (model embedding padding, ``vocab_size`` argument) get ``None``.
* Default EOS ids: ``tokenizer.eos_token_id`` plus any of ``_EXTRA_EOS_TOKENS`` that exist as
  *special* tokens (chat end-of-turn markers: ``<|eot_id|>``, ``<|im_end|>``, ``<|end_of_text|>``,
  ``<｜end▁of▁sentence｜>``, ``<|endoftext|>``, ``<end_of_turn>``, ``<|eom_id|>``), so that a grammar can end
  a turn whichever marker the model emits.  Pass ``eos_ids`` explicitly to override.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import threading
import weakref
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from corral.errors import TokenizerError

__all__ = ["Vocabulary", "load_tokenizer_json", "bytes_to_unicode"]

_EXTRA_EOS_TOKENS = (
    "<|eot_id|>",
    "<|im_end|>",
    "<|end_of_text|>",
    "<｜end▁of▁sentence｜>",
    "<|endoftext|>",
    "<end_of_turn>",
    "<|eom_id|>",
)

_BYTE_TOKEN_RE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte -> printable unicode character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_ENCODER = bytes_to_unicode()
# str.translate table: table char -> its byte as a latin-1 char; chars < 256 that are NOT in the
# table map to an unencodable sentinel so that `.encode("latin-1")` fails and we fall back.
_BYTE_TRANSLATE: dict[int, int | str] = {ord(c): b for b, c in _BYTE_ENCODER.items()}
for _o in range(256):
    _BYTE_TRANSLATE.setdefault(_o, "\uffff")


def _byte_level_bytes(tok: str) -> bytes:
    try:
        return tok.translate(_BYTE_TRANSLATE).encode("latin-1")
    except UnicodeEncodeError:
        # tokenizers' ByteLevel decoder keeps the whole token as UTF-8 if any char is off-table
        return tok.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Decoder chain interpretation


def _flatten_decoder(cfg: dict | None) -> list[dict]:
    if cfg is None:
        return []
    if cfg.get("type") == "Sequence":
        out: list[dict] = []
        for d in cfg.get("decoders", []):
            out.extend(_flatten_decoder(d))
        return out
    return [cfg]


def _describe(cfg: dict | None) -> str:
    return json.dumps(cfg, ensure_ascii=False)[:300] if cfg is not None else "None"


class _Decoder:
    """Per-token interpretation of a supported ``tokenizers`` decoder chain (mid-text)."""

    def __init__(self, decoder_cfg: dict | None, model_type: str, pretok_cfg: dict | None) -> None:
        steps = _flatten_decoder(decoder_cfg)
        found = f"model={model_type}, decoder={_describe(decoder_cfg)}, pre_tokenizer={_describe(pretok_cfg)}"
        if not steps:
            raise TokenizerError(f"cannot derive token bytes: the tokenizer has no decoder ({found})")
        if model_type == "WordPiece":
            raise TokenizerError(f"cannot derive token bytes from a WordPiece tokenizer ({found})")
        self.ops: list[tuple[str, Any]] = []
        fused = False
        for st in steps:
            t = st.get("type")
            if t == "ByteLevel":
                self.ops.append(("bytelevel", None))
            elif t == "ByteFallback":
                self.ops.append(("bytefallback", None))
            elif t == "Fuse":
                fused = True
            elif t == "Replace":
                pat = st.get("pattern", {})
                if "String" not in pat:
                    raise TokenizerError(f"cannot derive token bytes: Replace decoder with a regex pattern ({found})")
                self.ops.append(("replace", (pat["String"], st.get("content", ""))))
            elif t == "Strip":
                if not fused:  # before Fuse it acts on every token; after Fuse only on the text start
                    self.ops.append(("strip", (st.get("content", " "), int(st.get("start", 0)), int(st.get("stop", 0)))))
            elif t == "Metaspace":
                # mid-text: the replacement char is a space; prefix stripping only at text start
                self.ops.append(("replace", (st.get("replacement", "▁"), " ")))
            else:
                raise TokenizerError(f"cannot derive token bytes: unsupported decoder step {t!r} ({found})")
        kinds = {op for op, _ in self.ops}
        if "bytelevel" in kinds:
            self.kind = "byte_level"
        elif any(op == "replace" and arg[1] == " " for op, arg in self.ops):
            self.kind = "sentencepiece"
        else:
            raise TokenizerError(f"cannot derive token bytes: unrecognised tokenizer kind ({found})")
        self.byte_fallback = "bytefallback" in kinds
        self._simple_bl = [op for op, _ in self.ops] == ["bytelevel"]

    def bytes_of(self, tok: str) -> bytes:
        if self._simple_bl:
            return _byte_level_bytes(tok)
        cur: str | bytes = tok
        for op, arg in self.ops:
            if isinstance(cur, bytes):
                break  # byte tokens are final
            if op == "replace":
                cur = cur.replace(arg[0], arg[1])
            elif op == "bytefallback":
                if len(cur) == 6:
                    m = _BYTE_TOKEN_RE.fullmatch(cur)
                    if m:
                        cur = bytes([int(m.group(1), 16)])
            elif op == "bytelevel":
                cur = _byte_level_bytes(cur)
            elif op == "strip":
                content, start, stop = arg
                for _ in range(start):
                    if cur.startswith(content):
                        cur = cur[len(content):]
                for _ in range(stop):
                    if cur.endswith(content):
                        cur = cur[: len(cur) - len(content)]
        return cur if isinstance(cur, bytes) else cur.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Vocabulary


class Vocabulary:
    """Byte view of a tokenizer: ``token_bytes[i]`` for every id of a mask of width ``size``.

    Construct directly for toy vocabularies (tests): ``Vocabulary([b"a", b"b", None], eos_ids=[2])``.
    Instances are treated as immutable.
    """

    def __init__(
        self,
        token_bytes: Sequence[bytes | None],
        eos_ids: Iterable[int] = (),
        special_ids: Iterable[int] | None = None,
        *,
        size: int | None = None,
        kind: str = "custom",
        special_text: dict[int, str] | None = None,
    ) -> None:
        tb = list(token_bytes)
        if size is None:
            size = len(tb)
        if size < len(tb):
            raise TokenizerError(f"vocab_size {size} is smaller than the tokenizer's {len(tb)} tokens")
        tb.extend([None] * (size - len(tb)))
        eos = tuple(dict.fromkeys(int(i) for i in eos_ids))
        for i in eos:
            if not 0 <= i < size:
                raise TokenizerError(f"EOS id {i} is outside the vocabulary (size {size})")
            tb[i] = None  # EOS is never text
        for i, b in enumerate(tb):
            if b is not None and not isinstance(b, bytes):
                raise TypeError(f"token_bytes[{i}] must be bytes or None, got {type(b).__name__}")
        self._token_bytes: tuple[bytes | None, ...] = tuple(tb)
        self._eos_ids = eos
        self._special_ids = frozenset(int(i) for i in special_ids) if special_ids is not None else frozenset(eos)
        self._size = size
        self.kind = kind
        self._special_text = dict(special_text or {})

    # ---- basic properties
    @property
    def token_bytes(self) -> tuple[bytes | None, ...]:
        return self._token_bytes

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return self._eos_ids

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special_ids

    @property
    def size(self) -> int:
        """Mask width (number of ids, including padding past the tokenizer)."""
        return self._size

    @property
    def n_words(self) -> int:
        """Number of 32-bit words of a bitmask row."""
        return (self._size + 31) // 32

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"Vocabulary(kind={self.kind!r}, size={self._size}, eos_ids={self._eos_ids}, fingerprint={self.fingerprint[:12]})"

    # ---- derived, cached
    @cached_property
    def fingerprint(self) -> str:
        """Stable hash of (token bytes, eos ids, size); equal for equal vocabularies."""
        h = hashlib.sha256(b"corral-vocab-v1\0")
        h.update(struct.pack("<q", self._size))
        h.update(struct.pack("<q", len(self._eos_ids)))
        h.update(np.asarray(self._eos_ids, dtype=np.int64).tobytes())
        h.update(self.token_lengths.astype("<i8").tobytes())
        h.update(b"".join(b for b in self._token_bytes if b is not None))
        return h.hexdigest()

    @cached_property
    def token_lengths(self) -> np.ndarray:
        """int32 [size]: byte length of each token, -1 for ids that are never text."""
        arr = np.fromiter((-1 if b is None else len(b) for b in self._token_bytes), dtype=np.int32, count=self._size)
        arr.setflags(write=False)
        return arr

    @cached_property
    def text_ids(self) -> np.ndarray:
        """int64 ids that carry text (bytes not None; the empty token, if any, included)."""
        arr = np.flatnonzero(self.token_lengths >= 0).astype(np.int64)
        arr.setflags(write=False)
        return arr

    @cached_property
    def id_of_bytes(self) -> dict[bytes, list[int]]:
        """bytes -> ids having exactly those bytes (several tokens may share the same bytes)."""
        d: dict[bytes, list[int]] = {}
        for i, b in enumerate(self._token_bytes):
            if b is not None:
                d.setdefault(b, []).append(i)
        return d

    # ---- helpers
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Concatenated bytes of ``ids``; specials / EOS contribute nothing."""
        tb = self._token_bytes
        out = []
        for i in ids:
            b = tb[int(i)]
            if b is not None:
                out.append(b)
        return b"".join(out)

    def token_str(self, token_id: int) -> str:
        """Readable form: text with invalid UTF-8 as ``\\xNN``; specials by their content."""
        i = int(token_id)
        b = self._token_bytes[i]
        if b is not None:
            return b.decode("utf-8", "backslashreplace")
        if i in self._special_text:
            return self._special_text[i]
        return f"<special:{i}>" if i in self._special_ids else f"<unused:{i}>"

    def is_special(self, token_id: int) -> bool:
        return int(token_id) in self._special_ids

    # ---- construction from tokenizers
    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Any,
        vocab_size: int | None = None,
        eos_ids: Iterable[int] | int | None = None,
    ) -> Vocabulary:
        """Build (or fetch from the per-tokenizer memo) the vocabulary of ``tokenizer``.

        ``tokenizer``: a transformers tokenizer (tokenizers-backed or SentencePiece-backed), a raw
        ``tokenizers.Tokenizer``, or a ``Vocabulary`` (returned as is when compatible).
        """
        if isinstance(eos_ids, int):
            eos_ids = (eos_ids,)
        eos_key = None if eos_ids is None else tuple(int(i) for i in eos_ids)
        if isinstance(tokenizer, Vocabulary):
            if (vocab_size is None or vocab_size == tokenizer.size) and (eos_key is None or eos_key == tokenizer.eos_ids):
                return tokenizer
            return cls(tokenizer.token_bytes, eos_key if eos_key is not None else tokenizer.eos_ids,
                       tokenizer.special_ids, size=vocab_size or tokenizer.size, kind=tokenizer.kind,
                       special_text=tokenizer._special_text)
        key = (vocab_size, eos_key, _tokenizer_len(tokenizer))
        with _memo_lock:
            per_tok = _memo_get(tokenizer)
            if per_tok is not None and key in per_tok:
                return per_tok[key]
        base = _extract(tokenizer)
        vocab = base.build(vocab_size, eos_key)
        with _memo_lock:
            _memo_put(tokenizer, key, vocab)
        return vocab


# --------------------------------------------------------------------------------------------
# memo (per tokenizer object)

_memo_lock = threading.Lock()
_memo_weak: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_memo_strong: dict[int, tuple[Any, dict]] = {}  # objects without weakref support (bounded)
_MEMO_STRONG_MAX = 8


def _memo_get(tok: Any) -> dict | None:
    try:
        return _memo_weak.get(tok)
    except TypeError:
        ent = _memo_strong.get(id(tok))
        return ent[1] if ent is not None and ent[0] is tok else None


def _memo_put(tok: Any, key: tuple, vocab: Vocabulary) -> None:
    try:
        _memo_weak.setdefault(tok, {})[key] = vocab
    except TypeError:
        ent = _memo_strong.get(id(tok))
        if ent is None or ent[0] is not tok:
            if len(_memo_strong) >= _MEMO_STRONG_MAX:
                _memo_strong.pop(next(iter(_memo_strong)))
            ent = (tok, {})
            _memo_strong[id(tok)] = ent
        ent[1][key] = vocab


def _tokenizer_len(tok: Any) -> int:
    try:
        return len(tok)
    except TypeError:
        pass
    gvs = getattr(tok, "get_vocab_size", None)
    if gvs is not None:
        return int(gvs(with_added_tokens=True))
    raise TokenizerError(f"cannot tell the size of tokenizer object {type(tok).__name__}")


# --------------------------------------------------------------------------------------------
# extraction


class _Extracted:
    def __init__(self, token_bytes: list[bytes | None], special: set[int], special_text: dict[int, str],
                 default_eos: list[int], kind: str) -> None:
        self.token_bytes = token_bytes
        self.special = special
        self.special_text = special_text
        self.default_eos = default_eos
        self.kind = kind

    def build(self, vocab_size: int | None, eos: tuple[int, ...] | None) -> Vocabulary:
        n = len(self.token_bytes)
        if vocab_size is not None and vocab_size < n:
            raise TokenizerError(f"vocab_size {vocab_size} is smaller than the tokenizer's {n} tokens")
        if eos is None:
            eos = tuple(self.default_eos)
            if not eos:
                raise TokenizerError("the tokenizer has no EOS token; pass eos_ids explicitly")
        return Vocabulary(self.token_bytes, eos, self.special | set(eos), size=vocab_size or n,
                          kind=self.kind, special_text=self.special_text)


def _backend_of(tok: Any) -> Any | None:
    try:
        from tokenizers import Tokenizer as _RawTokenizer
    except ImportError:  # pragma: no cover
        return None
    if isinstance(tok, _RawTokenizer):
        return tok
    for attr in ("backend_tokenizer", "_tokenizer"):
        try:
            bt = getattr(tok, attr, None)
        except Exception:  # noqa: BLE001 - some slow tokenizers raise on backend_tokenizer
            bt = None
        if isinstance(bt, _RawTokenizer):
            return bt
    return None


def _component_cfg(comp: Any) -> dict | None:
    if comp is None:
        return None
    try:
        return json.loads(comp.__getstate__())
    except Exception as e:  # noqa: BLE001
        raise TokenizerError(f"cannot read tokenizer component {type(comp).__name__}: {e}") from e


def _default_eos(tok: Any, special: set[int], content_to_id: dict[str, int]) -> list[int]:
    out: list[int] = []
    e = getattr(tok, "eos_token_id", None)
    if isinstance(e, int):
        out.append(e)
    elif isinstance(e, (list, tuple)):
        out.extend(int(x) for x in e)
    for name in _EXTRA_EOS_TOKENS:
        i = content_to_id.get(name)
        if i is not None and i in special and i not in out:
            out.append(i)
    return out


def _transformers_specials(tok: Any) -> set[int]:
    ids: set[int] = set()
    try:
        ids.update(int(i) for i in (getattr(tok, "all_special_ids", None) or []) if i is not None)
    except Exception:  # noqa: BLE001
        pass
    try:
        for i, at in (getattr(tok, "added_tokens_decoder", None) or {}).items():
            if getattr(at, "special", False):
                ids.add(int(i))
    except Exception:  # noqa: BLE001
        pass
    return ids


def _extract(tok: Any) -> _Extracted:
    bt = _backend_of(tok)
    if bt is not None:
        return _extract_backend(tok, bt)
    if hasattr(tok, "sp_model"):
        return _extract_sentencepiece(tok)
    if hasattr(tok, "byte_decoder") and hasattr(tok, "get_vocab"):
        return _extract_slow_byte_level(tok)
    raise TokenizerError(
        f"cannot derive token bytes from {type(tok).__module__}.{type(tok).__name__}: "
        "no tokenizers backend, sp_model or byte_decoder found"
    )


def _extract_backend(tok: Any, bt: Any) -> _Extracted:
    model_type = type(bt.model).__name__
    try:  # only used to describe the tokenizer in error messages
        pretok = _component_cfg(bt.pre_tokenizer)
    except TokenizerError:
        pretok = {"type": type(bt.pre_tokenizer).__name__}
    dec = _Decoder(_component_cfg(bt.decoder), model_type, pretok)
    vocab = bt.get_vocab(with_added_tokens=False)
    added = bt.get_added_tokens_decoder()
    n = max(bt.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1,
            max(added.keys(), default=-1) + 1)
    if tok is not bt:
        n = max(n, _tokenizer_len(tok))
    tb: list[bytes | None] = [None] * n
    bytes_of = dec.bytes_of
    for s, i in vocab.items():
        tb[i] = bytes_of(s)
    special: set[int] = set()
    special_text: dict[int, str] = {}
    content_to_id: dict[str, int] = {}
    for i, at in added.items():
        content_to_id[at.content] = i
        if at.special:
            special.add(i)
        else:
            tb[i] = at.content.encode("utf-8")
    if tok is not bt:
        special |= _transformers_specials(tok)
    for i in special:
        if i < n:
            tb[i] = None
            content = bt.id_to_token(i)
            if content is not None:
                special_text[i] = content
                content_to_id.setdefault(content, i)
    return _Extracted(tb, special, special_text, _default_eos(tok, special, content_to_id), dec.kind)


def _extract_sentencepiece(tok: Any) -> _Extracted:
    sp = tok.sp_model
    n_sp = sp.get_piece_size()
    n = max(n_sp, _tokenizer_len(tok))
    tb: list[bytes | None] = [None] * n
    special: set[int] = set()
    special_text: dict[int, str] = {}
    content_to_id: dict[str, int] = {}
    for i in range(n_sp):
        piece = sp.id_to_piece(i)
        content_to_id.setdefault(piece, i)
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            special.add(i)
            special_text[i] = piece
        elif sp.is_byte(i):
            tb[i] = bytes([int(piece[3:5], 16)])
        else:
            tb[i] = piece.replace("▁", " ").encode("utf-8")
    for i, at in (getattr(tok, "added_tokens_decoder", None) or {}).items():
        i = int(i)
        if i >= n:
            continue
        content_to_id.setdefault(at.content, i)
        if getattr(at, "special", False):
            special.add(i)
            special_text[i] = at.content
        elif i >= n_sp:
            tb[i] = at.content.encode("utf-8")
    special |= _transformers_specials(tok)
    for i in special:
        if i < n:
            tb[i] = None
    return _Extracted(tb, special, special_text, _default_eos(tok, special, content_to_id), "sentencepiece")


def _extract_slow_byte_level(tok: Any) -> _Extracted:
    vocab = tok.get_vocab()
    n = max(_tokenizer_len(tok), max(vocab.values(), default=-1) + 1)
    tb: list[bytes | None] = [None] * n
    added = {int(i): at for i, at in (getattr(tok, "added_tokens_decoder", None) or {}).items()}
    for s, i in vocab.items():
        if i not in added:
            tb[i] = _byte_level_bytes(s)
    special: set[int] = set()
    special_text: dict[int, str] = {}
    for i, at in added.items():
        if getattr(at, "special", False):
            special.add(i)
        elif i < n:
            tb[i] = at.content.encode("utf-8")
    special |= _transformers_specials(tok)
    for i in special:
        if i < n:
            tb[i] = None
            if i in added:
                special_text[i] = added[i].content
    return _Extracted(tb, special, special_text, _default_eos(tok, special, dict(vocab)), "byte_level")


# --------------------------------------------------------------------------------------------


def load_tokenizer_json(path: str | os.PathLike[str]) -> Any:
    """A transformers fast tokenizer from a ``tokenizer.json`` (or a directory holding one).

    Special-token names (bos / eos / unk / pad) are taken from a ``tokenizer_config.json`` next to
    it when present, so ``eos_token_id`` is set.
    """
    from transformers import PreTrainedTokenizerFast

    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "tokenizer.json")
    if not os.path.isfile(p):
        raise TokenizerError(f"tokenizer.json not found: {p}")
    kwargs: dict[str, Any] = {}
    cfg_path = os.path.join(os.path.dirname(p), "tokenizer_config.json")
    if os.path.isfile(cfg_path):
        try:
            with open(cfg_path, encoding="utf-8") as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            cfg = {}
        for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
            v = cfg.get(name)
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str):
                kwargs[name] = v
    return PreTrainedTokenizerFast(tokenizer_file=p, **kwargs)
