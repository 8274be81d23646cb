"""The ``corral`` command line: exit codes, error messages, and generation with the embedded model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from corral.cli import main



@pytest.fixture()
def model_threads():
    """Model tests: one torch thread (two OpenMP threads on a busy 2-core box can be 20x slower)."""
    import os

    import torch

    threads = int(os.environ.get("CORRAL_TEST_TORCH_THREADS", "1"))
    old = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    yield
    torch.set_num_threads(old)


LARK = 'start: expr\nexpr: NUMBER ("+" NUMBER)*\nNUMBER: /[0-9]+/\n'


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "generate" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    code, out, _ = _run(capsys, [])
    assert code == 2 and "usage" in out


def test_check_lark_grammar(tmp_path, capsys):
    f = tmp_path / "sum.lark"
    f.write_text(LARK)
    code, out, err = _run(capsys, ["check", str(f)])
    assert code == 0, err
    assert "ok:" in out and "rules" in out


def test_check_missing_file(capsys):
    code, _, err = _run(capsys, ["check", "/nonexistent/grammar.lark"])
    assert code == 2
    assert err.startswith("corral: error:") and "not found" in err
    assert "Traceback" not in err


def test_check_bad_json(capsys):
    code, _, err = _run(capsys, ["check", '{"type": "integer"'])
    assert code == 2 and "not valid JSON" in err


def test_check_bad_grammar(tmp_path, capsys):
    f = tmp_path / "bad.lark"
    f.write_text("start: (\n")
    code, _, err = _run(capsys, ["check", str(f)])
    assert code == 2 and err.startswith("corral: error:")
    assert "Traceback" not in err


def test_check_schema_and_unsupported_keyword(tmp_path, capsys):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}}))
    code, out, err = _run(capsys, ["check", str(f)])
    assert code == 0, err
    assert "ok:" in out
    # remote $ref is never fetched: a clear error, exit 2, no traceback
    code, _, err = _run(capsys, ["check", json.dumps({"$ref": "https://example.com/remote.json"})])
    assert code == 2
    assert err.startswith("corral: error:") and "Traceback" not in err


def test_generate_needs_schema_or_grammar(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--prompt", "x"])
    assert info.value.code == 2


def test_generate_missing_grammar_file(capsys):
    code, _, err = _run(capsys, ["generate", "--grammar", "/nonexistent.gbnf", "--prompt", "x"])
    assert code == 2 and "not found" in err


@pytest.mark.model
def test_generate_schema_prints_valid_json(capsys, model_threads):
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}}, "required": ["color"],
              "additionalProperties": False}
    code, out, err = _run(capsys, ["generate", "--schema", json.dumps(schema), "--prompt", "Pick a color.",
                                   "--max-new-tokens", "16"])
    assert code == 0, err
    assert json.loads(out)["color"] in ("red", "green", "blue")


@pytest.mark.model
def test_generate_grammar_prints_text(tmp_path, capsys, model_threads):
    f = tmp_path / "yn.gbnf"
    f.write_text('root ::= "yes" | "no"\n')
    code, out, err = _run(capsys, ["generate", "--grammar", str(f), "--prompt", "Is water wet?", "--max-new-tokens", "4"])
    assert code == 0, err
    assert out.strip() in ("yes", "no")


@pytest.mark.model
def test_generate_too_few_tokens_exit_1(capsys, model_threads):
    code, _, err = _run(capsys, ["generate", "--schema", '{"type": "array", "items": {"type": "integer"}, "minItems": 3}',
                                 "--prompt", "Numbers.", "--max-new-tokens", "2"])
    assert code == 1
    assert "corral: error:" in err and "partial output" in err


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "corral", "check", "/nonexistent.lark"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("corral: error:")


@pytest.mark.model
def test_demo_runs(capsys, model_threads):
    code, out, err = _run(capsys, ["demo", "--max-new-tokens", "64"])
    assert code == 0, err
    assert "valid against the schema" in out and "Sentiment:" in out


# ----------------------------------------------------------------------------- sampler / speculative flags
def test_generate_help_lists_sampler_and_speculative(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("--sampler", "awrs", "smc", "asap", "--twist", "--speculative", "--no-speculative"):
        assert word in out


def test_generate_bad_sampler_is_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--schema", "{}", "--prompt", "x", "--sampler", "beam"])
    assert info.value.code == 2


def test_speculative_with_faithful_sampler_is_refused_before_loading(capsys):
    code, _, err = _run(capsys, ["generate", "--schema", '{"type": "integer"}', "--prompt", "x",
                                 "--sampler", "smc", "--speculative"])
    assert code == 2 and err.startswith("corral: error:") and "--speculative" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv,word", [
    (["--sampler", "awrs", "--twist", "trie"], "--sampler smc"),
    (["--sampler", "smc", "--twist", "sideways"], "lookaheadK"),
])
def test_bad_twist_is_refused_before_loading(capsys, argv, word):
    code, _, err = _run(capsys, ["generate", "--schema", '{"type": "integer"}', "--prompt", "x", *argv])
    assert code == 2 and err.startswith("corral: error:") and word in err
    assert "Traceback" not in err


@pytest.mark.model
def test_generate_speculative_and_sampler(capsys, model_threads):
    schema = json.dumps({"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"],
                         "additionalProperties": False})
    code, out, err = _run(capsys, ["generate", "--schema", schema, "--prompt", "Is it ok?", "--max-new-tokens", "12",
                                   "--speculative"])
    assert code == 0, err
    assert isinstance(json.loads(out)["ok"], bool)
    code, out, err = _run(capsys, ["generate", "--schema", schema, "--prompt", "Is it ok?", "--max-new-tokens", "12",
                                   "--sampler", "smc", "--seed", "0"])
    assert code == 0, err
    assert isinstance(json.loads(out)["ok"], bool)
    code, out, err = _run(capsys, ["generate", "--schema", schema, "--prompt", "Is it ok?", "--max-new-tokens", "12",
                                   "--sampler", "smc", "--twist", "lookahead", "--seed", "0"])
    assert code == 0, err
    assert isinstance(json.loads(out)["ok"], bool)


# ----------------------------------------------------------------------------- check statistics
def test_check_prints_statistics_and_relaxed_keywords(capsys):
    # a backreference cannot be a regular language: strict refuses it, --no-strict relaxes and reports it
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(a)\\1"}}}
    code, out, err = _run(capsys, ["check", "--no-strict", json.dumps(schema)])
    assert code == 0, err
    for word in ("terminals:", "rules:", "terminal DFA states:", "relaxed keywords (1)", "#/properties/a/pattern"):
        assert word in out, out
    code, _, err = _run(capsys, ["check", json.dumps(schema)])  # strict: an error naming the keyword
    assert code == 2 and "pattern" in err and "Traceback" not in err


def test_check_exact_schema_says_no_relaxation(capsys):
    code, out, _ = _run(capsys, ["check", '{"type": "array", "items": {"enum": [1, 2]}}'])
    assert code == 0 and "relaxed keywords: none" in out


# ----------------------------------------------------------------------------- bench
def _fake_checkout(tmp_path, monkeypatch, masks_body: str):
    from corral import cli

    b = tmp_path / "benchmarks"
    (b / "results").mkdir(parents=True)
    (b / "__init__.py").write_text("")
    (b / "common.py").write_text("")
    (b / "bench_masks.py").write_text(masks_body)
    (b / "results" / "bench_masks_quick_cdf.png").write_bytes(b"\x89PNG fake")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "elsewhere" / "cli.py"))
    return b


def test_bench_writes_report(tmp_path, monkeypatch, capsys):
    b = _fake_checkout(tmp_path, monkeypatch, "import sys\nassert '--quick' in sys.argv\nprint('| engine | p50 |')\n")
    code, out, err = _run(capsys, ["bench", "--quick", "--suite", "masks", "--no-progress"])
    assert code == 0, err
    report = (b / "results" / "report.md").read_text()
    assert "# corral benchmark report" in report and "| engine | p50 |" in report
    assert "![masks](bench_masks_quick_cdf.png)" in report
    assert "report.md" in out


def test_bench_failing_suite_exit_1(tmp_path, monkeypatch, capsys):
    b = _fake_checkout(tmp_path, monkeypatch, "raise SystemExit('boom')\n")
    code, _, err = _run(capsys, ["bench", "--suite", "masks", "--no-progress"])
    assert code == 1 and "masks" in err
    assert "failed" in (b / "results" / "report.md").read_text()


def test_bench_outside_checkout(tmp_path, monkeypatch, capsys):
    from corral import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "corral" / "cli.py"))
    code, _, err = _run(capsys, ["bench", "--quick"])
    assert code == 2 and "checkout" in err and "Traceback" not in err


def test_bench_unknown_suite(capsys):
    code, _, err = _run(capsys, ["bench", "--suite", "masks,nope"])
    assert code == 2 and "nope" in err
