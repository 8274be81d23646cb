"""``corral.LogitsProcessor`` inside transformers' own ``model.generate``.

The processor works in every ``generate()`` mode; here: greedy, sampling with several return
sequences, and beam search, all constrained by one JSON Schema compiled for the model's tokenizer.

Run:  python examples/processor.py [--model DIR] [--quick]
"""

from __future__ import annotations

import json

from _common import load_model, parser

from corral import Grammar, LogitsProcessor

SCHEMA = {
    "type": "object",
    "properties": {"animal": {"enum": ["cat", "dog", "owl", "fox"]}, "legs": {"type": "integer", "minimum": 0, "maximum": 8}},
    "required": ["animal", "legs"],
    "additionalProperties": False,
}


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    model, tokenizer = load_model(args)
    grammar = Grammar.from_json_schema(SCHEMA, tokenizer)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Name an animal and its number of legs, as JSON."}],
        add_generation_prompt=True, tokenize=False,
    )
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    n_prompt = inputs.input_ids.shape[1]
    max_new = 24
    modes = {
        "greedy": dict(do_sample=False),
        "sampling x3": dict(do_sample=True, temperature=0.9, num_return_sequences=3),
        "beam search (3 beams)": dict(do_sample=False, num_beams=3),
    }
    if args.quick:
        modes = {k: v for k, v in modes.items() if k != "beam search (3 beams)"}
    import torch

    torch.manual_seed(0)
    for name, kw in modes.items():
        # one processor per generate() call: it keeps the matcher states of the rows it sees
        proc = LogitsProcessor(grammar)
        out = model.generate(**inputs, logits_processor=[proc], max_new_tokens=max_new,
                             pad_token_id=tokenizer.eos_token_id, **kw)
        for row in out:
            s = tokenizer.decode(row[n_prompt:], skip_special_tokens=True)
            value = json.loads(s)  # always parses: the grammar allowed EOS only after a complete value
            print(f"{name:>22}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
