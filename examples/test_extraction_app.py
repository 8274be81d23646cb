"""Testing a tiny LLM extraction app with corral.testing (run: pytest examples/test_extraction_app.py).

The app asks a model for a JSON contact card constrained by ``CONTACT_SCHEMA`` and turns it
into a ``Contact``. The tests use the same schema the generator is constrained by:

* ``assert_matches`` checks recorded model outputs (readable failure: byte offset, expected);
* ``sentences(CONTACT_SCHEMA)`` draws every kind of document the model may emit, so the
  parsing code is property-tested against exactly the constrained output language.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings

from corral.testing import assert_matches, sentences

CONTACT_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 40},
        "phone": {"anyOf": [{"type": "string", "pattern": "^[0-9]{3}-[0-9]{4}$"}, {"type": "null"}]},
        "tags": {"type": "array", "items": {"enum": ["friend", "work", "family"]}, "maxItems": 3},
    },
    "required": ["name", "phone"],
    "additionalProperties": False,
}


@dataclass
class Contact:
    name: str
    phone: str | None
    tags: tuple[str, ...]

    @property
    def is_work(self) -> bool:
        return "work" in self.tags


def parse_contact(model_output: str) -> Contact:
    """The app code under test: turn the constrained model output into a Contact."""
    d = json.loads(model_output)
    return Contact(name=d["name"].strip() or d["name"], phone=d["phone"], tags=tuple(dict.fromkeys(d.get("tags", []))))


RECORDED_OUTPUTS = [
    '{"name":"Ada Lovelace","phone":"555-0100","tags":["work"]}',
    '{"name":"Bob","phone":null}',
]


@pytest.mark.parametrize("output", RECORDED_OUTPUTS)
def test_recorded_outputs_match_the_schema(output):
    assert_matches(output, CONTACT_SCHEMA)


def test_a_bad_output_is_reported_readably():
    with pytest.raises(AssertionError, match="byte"):
        assert_matches('{"name":"Bob","phone":"5550100"}', CONTACT_SCHEMA)


@settings(max_examples=50, deadline=None)
@given(sentences(CONTACT_SCHEMA))
def test_parser_handles_everything_the_model_may_emit(output):
    c = parse_contact(output)
    assert c.name
    assert c.phone is None or len(c.phone) == 8
    assert len(c.tags) == len(set(c.tags)) <= 3
