"""Function calling: the model picks a tool and fills in its arguments, constrained by a schema.

The schema is a ``oneOf`` over the tools, each an object with a ``const`` name and its own
``arguments`` schema, so the output is always a well-formed call to one of the declared functions.

Run:  python examples/function_call.py [--model DIR] [--quick]
"""

from __future__ import annotations

import json
import time

from _common import load_model, parser

from corral import generate_json

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 32},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
    {
        "name": "send_email",
        "description": "Send an email.",
        "parameters": {
            "type": "object",
            "properties": {
                "to": {"type": "string", "maxLength": 48},
                "subject": {"type": "string", "maxLength": 48},
            },
            "required": ["to", "subject"],
            "additionalProperties": False,
        },
    },
]


def call_schema(tools: list[dict]) -> dict:
    """One schema accepting a call to any of ``tools``: ``{"name": ..., "arguments": {...}}``."""
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {"name": {"const": t["name"]}, "arguments": t["parameters"]},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for t in tools
        ]
    }


def dispatch(call: dict) -> str:
    """A stand-in for running the tool."""
    if call["name"] == "get_weather":
        a = call["arguments"]
        return f"(pretend) 21 degrees {a['unit']} in {a['city']}"
    return f"(pretend) email sent to {call['arguments']['to']}"


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    model, tokenizer = load_model(args)
    tools = TOOLS[:1] if args.quick else TOOLS
    schema = call_schema(tools)
    listing = "\n".join(f"- {t['name']}: {t['description']} Parameters: {json.dumps(t['parameters'])}" for t in tools)
    messages = [
        {"role": "system", "content": f"You can call these functions:\n{listing}\nReply with a JSON function call."},
        {"role": "user", "content": "What's the weather like in Paris right now? Use celsius."},
    ]
    t0 = time.perf_counter()
    call = generate_json(model, tokenizer, schema, messages, max_new_tokens=40 if args.quick else 80)
    print("call:  ", json.dumps(call))
    print("result:", dispatch(call))
    print(f"({time.perf_counter() - t0:.2f}s)")


if __name__ == "__main__":
    main()
