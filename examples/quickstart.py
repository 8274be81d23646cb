"""corral quick start: JSON from a schema, text from a grammar, and model.generate with the processor.

Run:  python examples/quickstart.py   (uses the embedded SmolLM2-135M-Instruct model)
"""

from __future__ import annotations

import json

from corral import Grammar, LogitsProcessor, generate, generate_json
from corral.models import load_default


def main() -> None:
    model, tokenizer = load_default()

    # 1. A JSON Schema in, a validated Python value out.
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "country": {"type": "string", "maxLength": 20},
            "population_millions": {"type": "number", "minimum": 0, "maximum": 40},
        },
        "required": ["city", "country", "population_millions"],
        "additionalProperties": False,
    }
    value = generate_json(model, tokenizer, schema, "Give me facts about a big European city as JSON.", max_new_tokens=64)
    print("generate_json ->", json.dumps(value))

    # 2. Any grammar: here Lark EBNF, with sampling and a seed.
    grammar = Grammar.from_lark(
        r"""
        start: "The answer is " ANSWER "."
        ANSWER: "yes" | "no" | "maybe"
        """,
        tokenizer,
    )
    res = generate(model, tokenizer, "Is a tomato a fruit?", grammar, temperature=0.7, seed=0, max_new_tokens=16)
    print("generate ->", repr(res.text), f"({res.n_tokens} tokens, logprob {res.logprob:.2f}, {res.finish_reason})")

    # 3. Plug into transformers' own generate(): beam search, two beams.
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name a primary color."}], add_generation_prompt=True, tokenize=False
    )
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    colors = Grammar.from_regex(r"(red|yellow|blue)", tokenizer)
    out = model.generate(
        **inputs, logits_processor=[LogitsProcessor(colors)], num_beams=2, max_new_tokens=8, do_sample=False
    )
    print("model.generate ->", tokenizer.decode(out[0, inputs.input_ids.shape[1]:], skip_special_tokens=True))


if __name__ == "__main__":
    main()
