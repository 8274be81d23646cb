"""Conformance ratchet: every case listed in tests/conformance/ratchet-<kind>.json must still pass.

Refresh the ratchet (after an improvement) with:
    WRITE_RATCHET=1 PYTHONPATH=src python tests/conformance/runner.py maskbench draft2020-12 draft7
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from runner import data_available, print_summary, ratchet_path, read_ratchet, run_suite  # noqa: E402

KINDS = ["draft2020-12", "draft7", "maskbench"]


@pytest.mark.skipif(not data_available(), reason="../shared/data is absent")
@pytest.mark.parametrize("kind", KINDS)
def test_no_regression(kind):
    path = ratchet_path(kind)
    if not path.exists():
        pytest.skip(f"no ratchet file for {kind}")
    must = read_ratchet(kind)
    # maskbench is sampled (every 8th schema) to keep the run within a few minutes on 2 cores
    res = run_suite(kind, stride=8, processes=1) if kind == "maskbench" else run_suite(kind)
    print_summary(res["summary"])
    regressed = [c for c in must if c in res["cases"] and not res["cases"][c]]
    assert not regressed, f"{len(regressed)} regressed cases, e.g. {regressed[:10]}"
