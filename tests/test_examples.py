"""Every script in examples/ runs (with --quick) on the embedded model, so none rots.

All examples run in ONE subprocess (a small driver executes each script with ``runpy`` as
``__main__`` with its own ``sys.argv``): importing transformers and loading the model costs
10-15 s per process on a busy 2-core box, which would dominate seven separate processes.
The subprocess keeps the examples' globals, threads and ``sys.path`` out of the pytest process.
Each example is still a separate test, reporting its own output and traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.model

# script -> (extra arguments, substrings the output must contain)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "quickstart.py": ([], ["generate_json ->", "model.generate ->"]),
    "extract_record.py": (["--quick"], ["record:", "validated"]),
    "function_call.py": (["--quick"], ['"get_weather"', "result:"]),
    "lark_grammar.py": (["--quick"], ["output:", "complete="]),
    "processor.py": (["--quick"], ["greedy:", "sampling x3:"]),
    "faithful_sampling.py": (["--quick", "--samples", "10", "--smc-runs", "1"], ["exact", "masking", "asap", "smc"]),
    "speculative.py": (["--quick", "--max-new-tokens", "32"], ["plain decoding:", "speculative decoding:", "speed-up:"]),
}

DRIVER = r"""
import io, json, os, runpy, sys, traceback, contextlib
import torch
torch.set_num_threads(1)
examples, cases = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, examples)
results = {}
for script, argv in cases.items():
    buf = io.StringIO()
    sys.argv = [os.path.join(examples, script), *argv]
    status = "ok"
    try:
        with contextlib.redirect_stdout(buf):
            runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            status = f"SystemExit({exc.code!r})"
    except BaseException:
        status = traceback.format_exc()
    results[script] = {"status": status, "stdout": buf.getvalue()}
sys.stdout.write("\n@@RESULTS@@" + json.dumps(results))
"""


@pytest.fixture(scope="module")
def example_runs(tmp_path_factory) -> dict:
    out_dir = tmp_path_factory.mktemp("examples")
    cases = {name: list(args) for name, (args, _) in CASES.items()}
    cases["faithful_sampling.py"] += ["--out", str(out_dir / "faithful_sampling.png")]
    env = dict(os.environ, OMP_NUM_THREADS="1", CORRAL_THREADS="1", TRANSFORMERS_VERBOSITY="error")
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(EXAMPLES), json.dumps(cases)], cwd=out_dir, env=env,
                          capture_output=True, text=True, timeout=600)
    assert "@@RESULTS@@" in proc.stdout, f"driver failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    results = json.loads(proc.stdout.rsplit("@@RESULTS@@", 1)[1])
    results["_png"] = out_dir / "faithful_sampling.png"
    return results


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith(("_", "test_"))}
    assert scripts == set(CASES), f"untested or missing examples: {scripts ^ set(CASES)}"


@pytest.mark.parametrize("script", sorted(CASES))
def test_example_runs(script, example_runs):
    r = example_runs[script]
    assert r["status"] == "ok", f"{script} failed:\n{r['status']}\n--- stdout ---\n{r['stdout'][-2000:]}"
    for needle in CASES[script][1]:
        assert needle in r["stdout"], f"{script}: {needle!r} not in output:\n{r['stdout'][-2000:]}"


def test_faithful_sampling_writes_plot(example_runs):
    pytest.importorskip("matplotlib")
    assert example_runs["faithful_sampling.py"]["status"] == "ok"
    assert example_runs["_png"].is_file()


def test_examples_accept_model_flag():
    """--model and --quick come from examples/_common.py's parser, which every example uses (static check)."""
    common = (EXAMPLES / "_common.py").read_text()
    assert '"--model"' in common and '"--quick"' in common
    for name in CASES:
        if name == "quickstart.py":
            continue
        src = (EXAMPLES / name).read_text()
        assert "from _common import load_model, parser" in src and "parser(" in src, name
