"""The README's set-up commands and .ci/run cannot drift apart."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip().startswith("pip install torch==")]


def test_readme_has_exactly_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    demo, tests = cmds
    assert demo.endswith("&& corral demo")
    assert tests.endswith("&& python -m pytest -q")
    assert demo.rsplit(" && ", 1)[0] == tests.rsplit(" && ", 1)[0]  # same installs


def test_ci_run_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in ci
    run_lines = [ln.strip() for ln in ci.splitlines() if "pytest" in ln and not ln.strip().startswith("#")]
    assert any(ln == test_cmd or ln.startswith(test_cmd + " ||") for ln in run_lines), (test_cmd, run_lines)
