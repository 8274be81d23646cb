"""Registry of JSON Schema keywords and how corral treats each (docs are generated from it).

status: "enforced" (exact), "partial" (exact where noted, else UnsupportedSchemaError in
strict mode), "annotation" (no effect on validation, ignored), "unsupported"
(UnsupportedSchemaError in strict mode; relaxed and reported with strict=False).
Keywords not listed here are unknown: per the specification they do not affect
validation, so they are ignored.
"""

from __future__ import annotations

KEYWORDS: dict[str, tuple[str, str]] = {
    "type": ("enforced", "string or array of type names; integer accepts 1.0 (integral texts)"),
    "enum": ("enforced", "any JSON values; numbers match numerically (1, 1.0, 1.00 for 1)"),
    "const": ("enforced", "as enum with one value"),
    "minimum": ("enforced", "exact regular language over exponent-free number texts"),
    "maximum": ("enforced", "as minimum"),
    "exclusiveMinimum": ("enforced", "numeric form and the draft-4 boolean form"),
    "exclusiveMaximum": ("enforced", "numeric form and the draft-4 boolean form"),
    "multipleOf": ("partial", "decimal multipleOf (p/10^s) as a modular DFA; refused when p > 5000"),
    "minLength": ("enforced", "code points"),
    "maxLength": ("enforced", "code points; large bounds stay symbolic (grammar blocks) unless combined"),
    "pattern": ("partial", "ECMA-262, unanchored search; lookaround/backreferences refused"),
    "format": ("partial", "date time date-time duration email hostname ipv4 ipv6 uuid uri uri-reference "
                          "iri iri-reference uri-template json-pointer relative-json-pointer asserted; "
                          "idn-*, regex refused; unknown formats are annotations"),
    "properties": ("enforced", "output in schema order"),
    "required": ("enforced", ""),
    "additionalProperties": ("enforced", "default true (any JSON value)"),
    "patternProperties": ("enforced", "key languages partitioned by pattern"),
    "propertyNames": ("enforced", "the string part of the subschema restricts keys"),
    "minProperties": ("enforced", ""),
    "maxProperties": ("enforced", ""),
    "dependentRequired": ("enforced", ""),
    "dependentSchemas": ("enforced", "as (not has-name) or (has-name and schema)"),
    "dependencies": ("enforced", "drafts 4-7, both forms"),
    "items": ("enforced", "schema form and the array (tuple) form"),
    "prefixItems": ("enforced", ""),
    "additionalItems": ("enforced", "with the array form of items"),
    "minItems": ("enforced", ""),
    "maxItems": ("enforced", ""),
    "contains": ("enforced", "needs the complement of the contains schema"),
    "minContains": ("enforced", ""),
    "maxContains": ("enforced", ""),
    "uniqueItems": ("partial", "only when the item language is a small finite set or maxItems <= 1"),
    "allOf": ("enforced", "intersection of normal forms"),
    "anyOf": ("enforced", "union"),
    "oneOf": ("partial", "disjoint branches directly; else via complements (refused where a complement is "
                         "not expressible)"),
    "not": ("partial", "complement (additional/pattern property restrictions via 'some key of a class' "
                       "constraints, at most 4 per object); refused for uniqueItems"),
    "if": ("partial", "(if and then) or (not if and else)"),
    "then": ("enforced", "with if"),
    "else": ("enforced", "with if"),
    "$ref": ("enforced", "local pointers, anchors, $id-relative; remote only through a user resolver; "
                         "recursion becomes recursive nonterminals"),
    "$dynamicRef": ("partial", "when the dynamic target is unique"),
    "$recursiveRef": ("partial", "when the recursive target is unique"),
    "unevaluatedProperties": ("partial", "exact union over which conditional subschemas (anyOf/oneOf branches, "
                                         "if/then/else, dependentSchemas) hold, up to 6; refused beyond that or "
                                         "through in-place reference cycles (drafts 2019-09+)"),
    "unevaluatedItems": ("partial", "as unevaluatedProperties; prefixItems/items/contains annotations"),
    "$defs": ("annotation", "definitions container"),
    "definitions": ("annotation", "definitions container"),
    "$id": ("annotation", "base URI"),
    "id": ("annotation", "draft-4 base URI"),
    "$anchor": ("annotation", "reference target"),
    "$dynamicAnchor": ("annotation", "reference target"),
    "$recursiveAnchor": ("annotation", "reference target"),
    "$schema": ("annotation", "selects the draft"),
    "$vocabulary": ("annotation", ""),
    "$comment": ("annotation", ""),
    "title": ("annotation", ""),
    "description": ("annotation", ""),
    "default": ("annotation", ""),
    "examples": ("annotation", ""),
    "deprecated": ("annotation", ""),
    "readOnly": ("annotation", ""),
    "writeOnly": ("annotation", ""),
    "contentMediaType": ("annotation", "not asserted by the specification"),
    "contentEncoding": ("annotation", "not asserted by the specification"),
    "contentSchema": ("annotation", "not asserted by the specification"),
}

ANNOTATION_KEYWORDS = frozenset(k for k, (st, _) in KEYWORDS.items() if st == "annotation") | {
    "$defs", "definitions"}
# keywords that are handled outside the normal families; with applicators they are refused
UNSUPPORTED_KEYWORDS = frozenset({"unevaluatedProperties", "unevaluatedItems"})


def keyword_table_markdown() -> str:
    """The keyword table for the docs."""
    lines = ["| keyword | status | notes |", "|---|---|---|"]
    for k, (st, note) in KEYWORDS.items():
        lines.append(f"| `{k}` | {st} | {note} |")
    return "\n".join(lines)
