"""Integrations with inference libraries (transformers)."""

from .hf import LogitsProcessor, apply_bitmask, unpack_bitmask

__all__ = ["LogitsProcessor", "apply_bitmask", "unpack_bitmask"]
