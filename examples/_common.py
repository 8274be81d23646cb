"""Shared command-line handling for the examples: ``--model DIR``, ``--quick``, ``--threads N``.

Not an example itself. Every example runs on the embedded SmolLM2-135M-Instruct model unless
``--model`` names another Hugging Face causal LM (a local directory or a hub id).
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", metavar="DIR", default=None,
                   help="a Hugging Face model directory or hub id (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--quick", action="store_true", help="few tokens / samples (used by the tests)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("CORRAL_THREADS", "1")),
                   help="torch threads (default 1; 0 = torch's default)")
    return p


def load_model(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for ``args.model`` (``None``: the embedded default model)."""
    import torch

    if args.threads and args.threads > 0:
        torch.set_num_threads(args.threads)
    from corral import models

    return models.load(args.model)
