"""The docs cannot drift from the code: the JSON Schema table is regenerated and compared."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def test_json_schema_support_table_is_up_to_date():
    render = runpy.run_path(str(DOCS / "gen_json_schema_support.py"))["render"]
    checked_in = (DOCS / "json-schema-support.md").read_text(encoding="utf-8")
    assert checked_in == render(), (
        "docs/json-schema-support.md is stale: run  python docs/gen_json_schema_support.py > docs/json-schema-support.md"
    )


def test_every_registered_keyword_is_documented():
    from corral.sources.json_schema.keywords import KEYWORDS

    text = (DOCS / "json-schema-support.md").read_text(encoding="utf-8")
    missing = [k for k in KEYWORDS if f"| `{k}` |" not in text]
    assert not missing, missing


def test_architecture_doc_names_existing_modules():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    for rel in ("automaton/lexer.py", "automaton/parser.py", "automaton/masks.py", "automaton/regularize.py",
                "automaton/grammar.py", "integrations/hf.py", "speculative/loop.py", "sampling/smc.py"):
        assert rel in text, rel
        assert (ROOT / "src" / "corral" / rel).is_file(), rel
