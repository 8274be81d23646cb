"""Speculative constrained decoding: the same output, fewer forward passes of the model.

Drafts come from the grammar (forced tokens such as JSON keys and punctuation), from n-gram lookup
over the prompt, and from recycled candidates; they are verified in one forward pass against the
masked target distribution, so with greedy decoding the text is identical to plain decoding.

Run:  python examples/speculative.py [--model DIR] [--quick]
"""

from __future__ import annotations

import json

from _common import load_model, parser

from corral import SpeculativeConfig, generate
from corral.api import compile_json_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 1},
        "title": {"type": "string", "maxLength": 40},
        "status": {"enum": ["open", "in_progress", "closed"]},
        "assignee": {"type": "object", "properties": {"login": {"type": "string", "maxLength": 20},
                                                      "site_admin": {"type": "boolean"}},
                     "required": ["login", "site_admin"], "additionalProperties": False},
        "labels": {"type": "array", "items": {"enum": ["bug", "feature", "docs"]}, "maxItems": 3},
    },
    "required": ["id", "title", "status", "assignee", "labels"],
    "additionalProperties": False,
}


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--max-new-tokens", type=int, default=None)
    args = p.parse_args()
    model, tokenizer = load_model(args)
    max_new = args.max_new_tokens or (48 if args.quick else 160)
    grammar = compile_json_schema(SCHEMA, tokenizer, model)
    prompt = "Describe a GitHub issue as JSON following this schema:\n" + json.dumps(SCHEMA)
    common = dict(max_new_tokens=max_new, allow_incomplete=True)

    generate(model, tokenizer, prompt, grammar, max_new_tokens=2, allow_incomplete=True)  # warm-up (untimed)
    plain = generate(model, tokenizer, prompt, grammar, **common)
    spec = generate(model, tokenizer, prompt, grammar, speculative=SpeculativeConfig(), **common)

    t_plain, t_spec = plain.timings["total"], spec.timings["total"]
    print("output:", spec.text)
    print(f"plain decoding:       {plain.n_tokens:4d} tokens in {t_plain:6.2f}s ({plain.n_tokens / t_plain:6.1f} tok/s)")
    print(f"speculative decoding: {spec.n_tokens:4d} tokens in {t_spec:6.2f}s ({spec.n_tokens / t_spec:6.1f} tok/s), "
          f"{int(spec.timings.get('n_forwards', 0))} forward passes, "
          f"acceptance {spec.timings.get('acceptance_rate', float('nan')):.0%}")
    print(f"speed-up: {t_plain / t_spec:.2f}x; identical output: {plain.token_ids == spec.token_ids}")


if __name__ == "__main__":
    main()
