"""A Lark grammar from ``grammars/``: arithmetic expressions (or SQL with ``--grammar sql``).

The output is a sentence of the grammar by construction; we check it with the compiled grammar
(``Grammar.accepts``) and, for arithmetic, evaluate it.

Run:  python examples/lark_grammar.py [--grammar arithmetic|sql] [--model DIR] [--quick]
"""

from __future__ import annotations

import ast
import operator
import time
from pathlib import Path

from _common import load_model, parser

from corral import Grammar, generate

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"
CASES = {
    "arithmetic": ("arithmetic.lark", "Translate each question into an arithmetic expression.\n"
                                      "Q: two boxes of 6 eggs and 3 loose eggs\nA: 2*6+3\n"
                                      "Q: 3 apples at 4 dollars each and 2 pears at 5 dollars each\nA:"),
    "sql": ("sql_select.lark", "Write a SQL query selecting the name and age of every user older than 30 from the table "
                               "users. Only the query."),
}

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv, ast.Mod: operator.mod, ast.Pow: operator.pow,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def safe_eval(expr: str) -> float:
    """Evaluate + - * / % ** and parentheses over numbers (nothing else)."""

    def ev(n: ast.AST) -> float:
        if isinstance(n, ast.Expression):
            return ev(n.body)
        if isinstance(n, ast.Constant) and isinstance(n.value, (int, float)):
            return n.value
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.left), ev(n.right))
        if isinstance(n, ast.UnaryOp) and type(n.op) in _OPS:
            return _OPS[type(n.op)](ev(n.operand))
        raise ValueError(f"not arithmetic: {ast.dump(n)}")

    return ev(ast.parse(expr, mode="eval"))


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--grammar", choices=sorted(CASES), default="arithmetic")
    args = p.parse_args()
    model, tokenizer = load_model(args)
    fname, prompt = CASES[args.grammar]
    text = (GRAMMARS / fname).read_text(encoding="utf-8")
    t0 = time.perf_counter()
    grammar = Grammar.from_lark(text, tokenizer)
    print(f"compiled grammars/{fname} in {time.perf_counter() - t0:.2f}s")
    t1 = time.perf_counter()
    res = generate(model, tokenizer, prompt, grammar, max_new_tokens=24 if args.quick else 64, allow_incomplete=args.quick,
                   chat=args.grammar != "arithmetic")  # arithmetic: a few-shot completion prompt
    print("output:", res.text)
    print(f"({res.n_tokens} tokens in {time.perf_counter() - t1:.2f}s, finish_reason={res.finish_reason}, "
          f"complete={res.complete})")
    if res.complete:
        assert grammar.accepts(res.text)
        if args.grammar == "arithmetic":
            try:
                print("value:", safe_eval(" ".join(res.text.split()).replace("^", "**")))
            except (ValueError, SyntaxError, ZeroDivisionError) as exc:  # the grammar may allow more than Python's subset
                print("value: (not evaluated:", exc, ")")


if __name__ == "__main__":
    main()
