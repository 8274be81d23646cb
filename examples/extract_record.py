"""Extract a structured record from free text with ``generate_json``.

The schema fixes the shape (field names, types, enums, bounds); the model only fills in values, and
the result is parsed and validated with ``jsonschema`` before it is returned.

Run:  python examples/extract_record.py [--model DIR] [--quick]
"""

from __future__ import annotations

import json
import time

from _common import load_model, parser

from corral import generate_json

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "city": {"type": "string", "maxLength": 40},
        "occupation": {"type": "string", "maxLength": 40},
        "contact": {"enum": ["email", "phone", "none"]},
    },
    "required": ["name", "age", "city", "occupation", "contact"],
    "additionalProperties": False,
}

TEXT = (
    "Maria Lopez, 34, moved to Lisbon last spring where she now works as a marine biologist. "
    "She prefers to be contacted by email rather than by phone."
)

QUICK_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 130}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    model, tokenizer = load_model(args)
    schema = QUICK_SCHEMA if args.quick else SCHEMA
    prompt = f"Extract the person described in this text as JSON.\n\nText: {TEXT}"
    t0 = time.perf_counter()
    record, result = generate_json(
        model, tokenizer, schema, prompt, max_new_tokens=40 if args.quick else 120, return_result=True
    )
    dt = time.perf_counter() - t0
    print("schema:", json.dumps(schema))
    print("record:", json.dumps(record, ensure_ascii=False, indent=2))
    print(f"({result.n_tokens} tokens in {dt:.2f}s; validated against the schema)")


if __name__ == "__main__":
    main()
