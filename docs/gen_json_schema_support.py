"""Generate docs/json-schema-support.md from corral's own keyword registry.

    python docs/gen_json_schema_support.py > docs/json-schema-support.md

``tests/test_docs.py`` checks that the checked-in file equals this script's output, so the table
cannot drift from the code (``corral.sources.json_schema.keywords.KEYWORDS``).
"""

from __future__ import annotations

import sys

from corral.sources.json_schema.keywords import KEYWORDS, UNSUPPORTED_KEYWORDS, keyword_table_markdown

HEADER = """# JSON Schema support

Generated from `corral.sources.json_schema.keywords.KEYWORDS` by `python docs/gen_json_schema_support.py`;
do not edit by hand (`tests/test_docs.py` fails when this file and the registry disagree).

Status:

- **enforced**: the generated JSON satisfies the keyword exactly (the token masks allow exactly the valid texts);
- **partial**: enforced exactly in the cases the note describes; otherwise like *unsupported*;
- **annotation**: no effect on validation (per the specification), ignored;
- **unsupported**: `Grammar.from_json_schema(..., strict=True)` (the default) raises `UnsupportedSchemaError`
  naming the keyword and its JSON pointer; with `strict=False` the keyword is relaxed (the output may violate it)
  and every relaxation is reported in `grammar.ir.meta["relaxed"]` as `{"pointer", "keyword", "what"}`
  (`corral check --no-strict SCHEMA` prints them).

Keywords not in the table are unknown: per the specification they do not affect validation and are ignored.
`generate_json` validates its output with `jsonschema` in every case.
"""


def render() -> str:
    counts: dict[str, int] = {}
    for status, _ in KEYWORDS.values():
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    parts = [HEADER, f"{len(KEYWORDS)} keywords: {summary}.", "", keyword_table_markdown(), ""]
    extra = sorted(k for k in UNSUPPORTED_KEYWORDS if k not in KEYWORDS)
    if extra:
        parts += ["Also unsupported: " + ", ".join(f"`{k}`" for k in extra) + ".", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
