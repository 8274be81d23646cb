"""JSON Schema front end: text-level acceptance per keyword family, errors, and agreement with jsonschema."""

from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.automaton.grammar import Grammar
from corral.errors import InvalidSchemaError, UnsupportedSchemaError
from corral.sources.json_schema import KEYWORDS, json_schema_to_ir, keyword_table_markdown


def G(schema, **kw) -> Grammar:
    return Grammar.from_ir(json_schema_to_ir(schema, **kw))


def dumps(x) -> str:
    return json.dumps(x, separators=(",", ":"), ensure_ascii=False)


class R(str):
    """Raw text (not a value to serialise)."""


def check(schema, good, bad, **kw):
    g = G(schema, **kw)
    for x in good:
        t = x if isinstance(x, R) else dumps(x)
        assert g.accepts(t), f"should accept {t}"
    for x in bad:
        t = x if isinstance(x, R) else dumps(x)
        assert not g.accepts(t), f"should refuse {t}"


def test_types_and_any():
    check({"type": "integer"}, [0, -5, 123, R("1.0")], [R("1.5"), "1", None, R("01")])
    check({"type": ["string", "null"]}, ["x", None, ""], [1, [], {}])
    check(True, [1, "a", None, [1, {"a": [True]}], {"x": {}}, R("1e5"), 1.5], [R(""), R("[1,]"), R("{a:1}")])
    check({}, [{"a": [1, 2, {"b": None}]}], [R("{'a':1}")])


def test_number_ranges():
    check({"type": "number", "minimum": -1.5, "exclusiveMaximum": 10},
          [-1.5, 0, 9.999, R("-1.50"), R("9.9")], [-1.51, 10, 10.0, R("10.000"), 100, R("-2")])
    check({"type": "integer", "exclusiveMinimum": 0, "maximum": 100}, [1, 100, 57], [0, -1, 101, 2.5])
    check({"type": "number", "maximum": 5, "exclusiveMaximum": True, "$schema": "http://json-schema.org/draft-04/schema#"},
          [4.99], [5])


def test_multiple_of():
    check({"type": "integer", "multipleOf": 7}, [0, 7, -14, 700], [1, 8, -15])
    check({"type": "number", "multipleOf": 0.01}, [1.23, 5, R("0.10")], [1.234, R("0.001")])


def test_strings():
    check({"type": "string", "minLength": 2, "maxLength": 3}, ["ab", "abc", "éé", "a\n"], ["a", "abcd", 12])
    check({"type": "string", "pattern": "^[a-z]+\\d$"}, ["ab1"], ["ab", "Ab1", "ab12"])
    check({"type": "string", "pattern": "b"}, ["abc", "b"], ["ac"])  # unanchored search
    check({"type": "string", "maxLength": 5000}, ["x" * 5000, ""], ["x" * 5001])
    check({"type": "string", "minLength": 70, "maxLength": 130}, ["x" * 70, "x" * 128, "y" * 130],
          ["x" * 69, "x" * 131])


@pytest.mark.parametrize("fmt,good,bad", [
    ("date", ["2024-02-29", "1999-12-31"], ["2024-13-01", "2024-1-01"]),
    ("date-time", ["2024-01-01T10:00:00Z", "2024-01-01T10:00:00.5+02:00"], ["2024-01-01 10:00"]),
    ("time", ["23:59:59Z"], ["24:00:00Z"]),
    ("duration", ["P1D", "PT1H30M", "P2W"], ["P", "1D", "PT"]),
    ("email", ["a.b@example.com"], ["a@", "@b.com"]),
    ("hostname", ["example.com", "a-b.c"], ["-a.com", "a..b"]),
    ("ipv4", ["192.168.0.1"], ["256.1.1.1", "1.2.3"]),
    ("ipv6", ["::1", "2001:db8::8a2e:370:7334"], ["1:::2", "12345::"]),
    ("uuid", ["123e4567-e89b-12d3-a456-426614174000"], ["123e4567e89b12d3a456426614174000"]),
    ("uri", ["https://example.com/a?b=c#d", "urn:isbn:123"], ["//example.com", "not a uri"]),
    ("uri-reference", ["/a/b", "../c", "https://x.y"], ["a b"]),
    ("uri-template", ["http://example.com/{user}/repos{?page,per_page}", "{+path}/x", "/x{;a*}", "f{/id:3}", ""],
     ["http://x/{", "{a b}", "{}", "x{a,}", "a b"]),
    ("iri", ["http://r\u00e9sum\u00e9.example/\u00f6?q=\u00fc#f", "urn:x"], ["r\u00e9sum\u00e9", "http://x/ y"]),
    ("iri-reference", ["/\u00f6/\u00e4", "http://\u00e9.x", ""], ["a b"]),
])
def test_formats(fmt, good, bad):
    check({"type": "string", "format": fmt}, good, bad)


def test_enum_const():
    check({"enum": [1, "a", None, [1, 2], {"k": True}]}, [1, R("1.0"), "a", None, [1, 2], {"k": True}],
          [2, "b", [2, 1], {"k": False}, {"k": True, "j": 1}, True])
    check({"const": 1}, [R("1"), R("1.00")], [True, R("2")])
    check({"const": False}, [False], [0])


def test_enum_strings_have_one_spelling():
    # enum/const strings: only json.dumps's spelling; a free string keeps every escape spelling
    check({"enum": ["get_time", 'a"b', "é", "x\ny"]}, ["get_time", 'a"b', "é", "x\ny"],
          [R('"get_t\\u0069me"'), R('"\\u00e9"'), R('"x\\u000ay"'), "get"])
    check({"const": "tab\there"}, [R('"tab\\there"')], [R('"tab\\u0009here"')])
    check({"type": "string", "maxLength": 8}, [R('"get_t\\u0069me"'), R('"\\u00e9"')], [])


def test_objects_order_required_additional():
    s = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
         "required": ["b"]}
    check(s, [{"b": "x"}, {"a": 1, "b": "x"}, {"a": 1, "b": "x", "zz": [1]}],
          [{"a": 1}, R('{"b":"x","a":1}'), {"a": "x", "b": "x"}])
    s2 = dict(s, additionalProperties=False)
    check(s2, [{"a": 1, "b": "x"}], [{"a": 1, "b": "x", "c": 1}])
    s3 = dict(s, additionalProperties={"type": "boolean"})
    check(s3, [{"b": "x", "c": True}], [{"b": "x", "c": 1}])


def test_pattern_properties_property_names_counts():
    check({"patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False},
          [{"x-a": 1}, {}], [{"x-a": "s"}, {"y": 1}])
    check({"propertyNames": {"maxLength": 2}}, [{"ab": 1}], [{"abc": 1}])
    check({"minProperties": 1, "maxProperties": 2}, [{"a": 1}, {"a": 1, "b": 2}], [{}, {"a": 1, "b": 2, "c": 3}])


def test_dependencies():
    check({"properties": {"a": {}, "b": {}}, "dependentRequired": {"a": ["b"]}},
          [{"a": 1, "b": 2}, {"b": 1}, {}], [{"a": 1}])
    check({"properties": {"a": {}, "b": {}}, "dependentSchemas": {"a": {"required": ["b"]}}},
          [{"a": 1, "b": 2}, {}], [{"a": 1}])


def test_arrays():
    check({"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
          [[1], [1, 2, 3]], [[], [1, 2, 3, 4], ["a"]])
    check({"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
          [["a", 1], ["a"], []], [["a", 1, 2], [1]])
    check({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}],
           "additionalItems": {"type": "integer"}}, [["a", 1, 2]], [["a", "b"]])
    check({"contains": {"const": 5}, "minContains": 2, "maxContains": 3},
          [[5, 5], [1, 5, 2, 5, 5]], [[5], [5, 5, 5, 5], []])
    check({"items": {"enum": ["a", "b", "c"]}, "uniqueItems": True},
          [[], ["a", "c"], ["c", "b", "a"]], [["a", "a"], ["a", "b", "a"]])


def test_combinators():
    check({"anyOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a"], [None])
    check({"allOf": [{"properties": {"a": {"type": "integer"}}}, {"required": ["a"]}]},
          [{"a": 1}], [{}, {"a": "x"}])
    check({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 2.5, "x"], [3])
    check({"not": {"type": "string"}}, [1, None, []], ["a"])
    check({"if": {"properties": {"k": {"const": 1}}, "required": ["k"]},
           "then": {"required": ["a"]}, "else": {"required": ["b"]},
           "properties": {"k": {}, "a": {}, "b": {}}},
          [{"k": 1, "a": 0}, {"k": 2, "b": 0}, {"b": 1}], [{"k": 1}, {"k": 2, "a": 0}])
    check({"oneOf": [{"properties": {"t": {"const": "a"}, "x": {"type": "integer"}}, "required": ["t"]},
                     {"properties": {"t": {"const": "b"}, "y": {"type": "string"}}, "required": ["t"]}]},
          [{"t": "a", "x": 1}, {"t": "b", "y": "s"}], [{"t": "c"}, {"t": "a", "x": "s"}])


def test_refs_and_recursion():
    s = {"$defs": {"node": {"type": "object", "properties": {"v": {"type": "integer"},
                                                           "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
                            "additionalProperties": False}},
         "$ref": "#/$defs/node"}
    check(s, [{"v": 1, "kids": [{"v": 2, "kids": [{"kids": []}]}]}], [{"v": 1, "kids": [{"v": "x"}]}])
    check({"$id": "http://example.com/root.json", "$defs": {"A": {"$anchor": "a", "type": "integer"}},
           "properties": {"x": {"$ref": "#a"}}}, [{"x": 1}], [{"x": "s"}])
    check({"definitions": {"p": {"type": "string"}}, "items": {"$ref": "#/definitions/p"},
           "$schema": "http://json-schema.org/draft-07/schema#"}, [["a"]], [[1]])


def test_errors_name_pointer():
    with pytest.raises(UnsupportedSchemaError) as e:
        json_schema_to_ir({"properties": {"a": {"$ref": "http://example.com/x.json"}}})
    assert e.value.pointer.startswith("#/properties/a") and e.value.keyword == "$ref"
    with pytest.raises(InvalidSchemaError) as e2:
        json_schema_to_ir({"properties": {"a": {"$ref": "#/$defs/missing"}}})
    assert "#/properties/a" in str(e2.value)
    with pytest.raises(InvalidSchemaError):
        json_schema_to_ir({"type": "strin"})
    with pytest.raises(UnsupportedSchemaError) as e3:
        json_schema_to_ir({"type": "array", "items": {"type": "string"}, "uniqueItems": True})
    assert e3.value.keyword == "uniqueItems"
    with pytest.raises(UnsupportedSchemaError) as e4:
        json_schema_to_ir({"type": "string", "pattern": "(a)\\1"})
    assert e4.value.keyword == "pattern" and e4.value.pointer == "#/pattern"


def test_relaxed_mode_reports():
    ir = json_schema_to_ir({"properties": {"p": {"type": "string", "pattern": "(a)\\1"}}}, strict=False)
    rel = ir.meta["relaxed"]
    assert rel and rel[0]["keyword"] == "pattern" and rel[0]["pointer"] == "#/properties/p/pattern"


def test_resolver_and_empty_schema():
    docs = {"http://x.test/s.json": {"type": "integer"}}
    check({"$ref": "http://x.test/s.json"}, [1], ["a"], resolver=docs.get)
    g = G(False)
    assert not g.accepts("1") and not g.accepts("null")


def test_whitespace_modes():
    x = {"a": 1, "b": [1, 2, {"c": None}], "d": {}, "e": []}
    s = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "array"}}}
    assert G(s, whitespace="pretty", indent=2).accepts(json.dumps(x, indent=2))
    assert G(s, whitespace="pretty", indent=4).accepts(json.dumps(x, indent=4))
    assert not G(s, whitespace="pretty").accepts(dumps(x))
    g = G(s, whitespace="flexible", max_whitespace=8)
    assert g.accepts(json.dumps(x)) and g.accepts(json.dumps(x, indent=2)) and g.accepts(dumps(x))
    assert not g.accepts('{"a":         1}')
    assert not G(s).accepts(json.dumps(x))


def test_any_order():
    s = {"properties": {"a": {"type": "integer"}, "b": {"type": "string"}}, "required": ["a", "b"]}
    g = G(s, any_order=True)
    assert g.accepts('{"b":"x","a":1}') and g.accepts('{"a":1,"b":"x"}')
    assert not g.accepts('{"a":1,"b":"x","a":2}') and not g.accepts('{"b":"x"}')


def test_negated_additional_and_pattern_properties():
    # not/oneOf over additionalProperties need "some key of a class has a value outside the subschema"
    check({"not": {"additionalProperties": {"type": "integer"}}}, [{"a": "x"}, {"a": 1, "b": None}],
          [{}, {"a": 1}, {"a": 1, "b": 2}, 1])
    check({"type": "object", "not": {"properties": {"a": {}}, "additionalProperties": False}},
          [{"a": 1, "b": 1}, {"b": 1}], [{}, {"a": 1}])
    check({"not": {"patternProperties": {"^x": {"type": "string"}}, "additionalProperties": False}},
          [{"xa": 1}, {"b": 1}, {"xa": "s", "b": 1}], [{}, {"xa": "s"}, {"xa": "s", "xb": "t"}])
    check({"oneOf": [{"additionalProperties": {"type": "integer"}}, {"additionalProperties": {"type": "string"}}]},
          [{"a": 1}, {"a": "x"}], [{}, {"a": None}, {"a": 1, "b": "x"}])


def test_unevaluated_with_applicators():
    s = {"properties": {"a": {}}, "anyOf": [{"properties": {"b": {"type": "integer"}}}, {"required": ["c"]}],
         "unevaluatedProperties": False}
    # `required` evaluates nothing, so c stays unevaluated
    check(s, [{"a": 1}, {"a": 1, "b": 2}, {}], [{"c": 1}, {"a": 1, "b": 2, "c": 1}, {"d": 1}, {"a": 1, "b": "x"}])
    s2 = {"if": {"properties": {"a": {"const": 1}}, "required": ["a"]}, "then": {"properties": {"b": {}}},
          "else": {"properties": {"c": {}}}, "unevaluatedProperties": False}
    check(s2, [{"a": 1, "b": 1}, {"c": 1}, {}], [{"a": 1, "c": 1}, {"a": 2}, {"b": 1}])
    s3 = {"prefixItems": [{"type": "integer"}], "contains": {"type": "string"}, "unevaluatedItems": False}
    check(s3, [[1, "a"], [1, "a", "b"]], [[1, "a", 2], [1]])
    s4 = {"allOf": [{"prefixItems": [{}, {}]}], "unevaluatedItems": {"type": "null"}}
    check(s4, [[1, 2], [1, 2, None]], [[1, 2, 3]])


def test_keyword_registry():
    assert "minimum" in KEYWORDS and "| `pattern` |" in keyword_table_markdown()


# --- agreement with jsonschema on random values -------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-50, 50) | st.sampled_from([0.5, -2.25, 10.0, 3.75])
    | st.text(alphabet="ab\"\\é\n", max_size=4),
    lambda ch: st.lists(ch, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), ch, max_size=3),
    max_leaves=8,
)

SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "integer", "minimum": -3, "maximum": 20},
                                      "b": {"type": ["string", "null"], "maxLength": 2}},
     "required": ["a"], "additionalProperties": {"type": "array"}},
    {"anyOf": [{"type": "integer", "multipleOf": 3}, {"type": "string", "pattern": "a"}, {"type": "array",
                                                                                          "maxItems": 1}]},
    {"oneOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "integer"}]},
    {"not": {"anyOf": [{"type": "object"}, {"type": "string", "minLength": 1}]}},
    {"type": "array", "items": {"enum": [1, "a", None, True]}, "contains": {"type": "integer"}, "maxContains": 1},
    {"properties": {"a": {"const": [1, {"b": None}]}, "c": {"type": "boolean"}}, "minProperties": 1,
     "propertyNames": {"pattern": "^[abc]$"}},
    {"if": {"type": "integer"}, "then": {"minimum": 5}, "else": {"type": ["string", "array"]}},
    {"$defs": {"t": {"anyOf": [{"type": "integer"}, {"type": "array", "items": {"$ref": "#/$defs/t"}}]}},
     "$ref": "#/$defs/t"},
    {"not": {"additionalProperties": {"type": "integer"}}},
    {"oneOf": [{"properties": {"a": {"type": "integer"}}, "additionalProperties": False},
               {"patternProperties": {"^[bc]$": {"type": "string"}}}]},
]

# combinations whose key order depends on the branch taken: compared with jsonschema on every key order
ORDER_FREE_SCHEMAS = [
    {"properties": {"a": {}}, "anyOf": [{"properties": {"b": {"type": "integer"}}}, {"required": ["c"]}],
     "unevaluatedProperties": {"type": "array"}},
    {"oneOf": [{"properties": {"a": {"type": "integer"}}, "required": ["a"]},
               {"properties": {"b": {"type": "string"}}, "required": ["b"]}], "unevaluatedProperties": {"type": "integer"}},
    {"if": {"properties": {"a": {"type": "integer"}}, "required": ["a"]}, "then": {"properties": {"b": {}}},
     "else": {"properties": {"c": {}}}, "unevaluatedProperties": False},
    {"dependentSchemas": {"a": {"properties": {"b": {}}}}, "properties": {"a": {}}, "unevaluatedProperties": False},
    {"not": {"properties": {"a": {}}, "unevaluatedProperties": False}},
    {"properties": {"a": {}}, "anyOf": [{"required": ["b"]}, {"additionalProperties": {"type": "integer"}}],
     "unevaluatedProperties": False},
    {"not": {"patternProperties": {"^x": {"type": "string"}}, "additionalProperties": {"type": "integer"}}},
    {"anyOf": [{"required": ["a"]}, {"not": {"additionalProperties": {"type": "integer"}}}], "properties": {"b": {}}},
]
ORDER_FREE_VALUES = [{}, {"a": 1}, {"a": "x"}, {"b": 1}, {"b": "x"}, {"a": 1, "b": "x"}, {"a": "x", "b": 1}, {"xa": 1},
                     {"xa": "s"}, {"a": 1, "xa": "s"}, {"c": None}, {"b": 1, "c": 2}, {"a": 1, "b": 1, "c": 1},
                     {"a": "x", "c": 1}, {"c": "s"}, {"b": [], "c": []}, {"a": 1, "c": []}, 3, "s", []]


@pytest.mark.parametrize("i", range(len(ORDER_FREE_SCHEMAS)))
def test_order_free_agreement(i):
    import itertools

    schema = ORDER_FREE_SCHEMAS[i]
    g = G(schema)
    for x in ORDER_FREE_VALUES:
        valid = jsonschema.Draft202012Validator(schema).is_valid(x)
        perms = [dict(p) for p in itertools.permutations(x.items())] if isinstance(x, dict) else [x]
        got = [g.accepts(dumps(p)) for p in perms]
        assert any(got) == valid and (valid or not any(got)), (schema, x, valid)
_grammars = {}


def _reorder(x, schema):
    from tests.conformance.runner import reorder, property_order  # noqa: F401

    return reorder(x, property_order(schema))


@pytest.mark.parametrize("i", range(len(SCHEMAS)))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=json_values)
def test_agrees_with_jsonschema(i, x):
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.conformance.runner import serialise

    schema = SCHEMAS[i]
    if i not in _grammars:
        _grammars[i] = G(schema)
    valid = jsonschema.Draft202012Validator(schema).is_valid(x)
    text = serialise(x, schema)
    assert _grammars[i].accepts(text) == valid, (schema, text, valid)
