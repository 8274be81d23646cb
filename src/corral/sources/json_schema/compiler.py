"""JSON Schema -> nodes and Shapes (see shapes.py): the semantic half of the compiler."""

from __future__ import annotations

import math
from decimal import InvalidOperation

from ...automaton import dfa_ops as ops
from ...errors import (
    BudgetError,
    CompileLimitError,
    InvalidSchemaError,
    RegexError,
    SchemaTooLargeError,
    UnsupportedSchemaError,
)
from . import numbers as nm
from .keywords import ANNOTATION_KEYWORDS, UNSUPPORTED_KEYWORDS
from .resolver import Ctx, Registry
from .shapes import (ANY_NODE, EXP_ALL, EXP_DROP, EXP_NONE, NEVER_NODE, ArrShape, ObjShape, Shape, exp_and,
                     exp_not, exp_or)
from .strings import KNOWN_UNIMPLEMENTED, StrLang, format_lang, pattern_lang

MAX_ALTERNATIVES = 64
MAX_NODES = 20_000

ANY_SHAPE = Shape(null=True, bools=frozenset({True, False}), num=nm.NUM_UNIVERSE, exp=EXP_ALL, str=StrLang.any(),
                  arrs=(ArrShape(),), objs=(ObjShape(),))
EMPTY_SHAPE = Shape()
TYPES = ("null", "boolean", "number", "integer", "string", "array", "object")


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


class _Unsup(Exception):
    """Raised inside shape algebra; turned into UnsupportedSchemaError with a pointer by callers."""


class Compiler:
    def __init__(self, schema, *, strict: bool = True, resolver=None, format_assertion: bool = True,
                 default_draft: int = 2020) -> None:
        if not isinstance(schema, (dict, bool)):
            raise InvalidSchemaError(f"a schema must be an object or a boolean, not {type(schema).__name__}")
        self.strict = strict
        self.format_assertion = format_assertion
        self.reg = Registry(schema, resolver, default_draft)
        self.nodes: list[tuple] = [("any",), ("never",)]
        self.index: dict = {}
        self.schemas: dict[int, tuple] = {}
        self.shapes: dict[int, Shape] = {0: ANY_SHAPE, 1: EMPTY_SHAPE}
        self.busy: set[int] = set()
        self.relaxed: list[dict] = []
        self.node_ptr: dict[int, str] = {}
        self._keys_cache: dict = {}
        self.root = self.schema_node(schema, self.reg.context(schema) if isinstance(schema, dict)
                                     else Ctx("urn:corral:root", "#", self.reg.root_draft))

    # ---------------------------------------------------------------- nodes
    def _new(self, key, node) -> int:
        i = self.index.get(key)
        if i is not None:
            return i
        if len(self.nodes) > MAX_NODES:
            raise CompileLimitError("schema expands to too many nodes")
        i = len(self.nodes)
        self.nodes.append(node)
        self.index[key] = i
        return i

    def schema_node(self, s, ctx: Ctx) -> int:
        if s is True:
            return ANY_NODE
        if s is False:
            return NEVER_NODE
        if not isinstance(s, dict):
            raise InvalidSchemaError(f"a schema must be an object or a boolean, not {type(s).__name__}", ctx.pointer)
        if not s or all(k in ANNOTATION_KEYWORDS for k in s):
            return ANY_NODE
        c = self.reg.ctx.get(id(s), ctx)
        i = self._new(("S", id(s)), ("S", s, c))
        self.node_ptr.setdefault(i, c.pointer)
        return i

    def and_node(self, *ids: int) -> int:
        flat: set[int] = set()
        for i in ids:
            n = self.nodes[i]
            if n[0] == "and":
                flat |= n[1]
            else:
                flat.add(i)
        flat.discard(ANY_NODE)
        if NEVER_NODE in flat:
            return NEVER_NODE
        if not flat:
            return ANY_NODE
        if len(flat) == 1:
            return next(iter(flat))
        fs = frozenset(flat)
        return self._new(("and", fs), ("and", fs))

    def or_node(self, *ids: int) -> int:
        flat: set[int] = set()
        for i in ids:
            n = self.nodes[i]
            if n[0] == "or":
                flat |= n[1]
            else:
                flat.add(i)
        flat.discard(NEVER_NODE)
        if ANY_NODE in flat:
            return ANY_NODE
        if not flat:
            return NEVER_NODE
        if len(flat) == 1:
            return next(iter(flat))
        fs = frozenset(flat)
        return self._new(("or", fs), ("or", fs))

    def not_node(self, i: int) -> int:
        if i == ANY_NODE:
            return NEVER_NODE
        if i == NEVER_NODE:
            return ANY_NODE
        if self.nodes[i][0] == "not":
            return self.nodes[i][1]
        return self._new(("not", i), ("not", i))

    def shape_node(self, sh: Shape) -> int:
        return self._new(("shape", id(sh), len(self.nodes)), ("shape", sh))

    def shape(self, i: int) -> Shape:
        sh = self.shapes.get(i)
        if sh is not None:
            return sh
        if i in self.busy:
            raise UnsupportedSchemaError("a reference cycle that consumes no input (the schema refers to itself "
                                         "without nesting)", self.node_ptr.get(i, "#"), "$ref")
        self.busy.add(i)
        try:
            n = self.nodes[i]
            if n[0] == "S":
                sh = self.schema_shape(n[1], n[2])
            elif n[0] == "and":
                parts = sorted(n[1])
                sh = self.shape(parts[0])
                for p in parts[1:]:
                    sh = self.s_and(sh, self.shape(p))
            elif n[0] == "or":
                parts = sorted(n[1])
                sh = self.shape(parts[0])
                for p in parts[1:]:
                    sh = self.s_or(sh, self.shape(p))
            elif n[0] == "not":
                sh = self.s_not(self.shape(n[1]))
            else:
                sh = n[1]
        except _Unsup as e:
            raise UnsupportedSchemaError(str(e.args[0]), self.node_ptr.get(i, "#"), e.args[1] if len(e.args) > 1 else None)
        finally:
            self.busy.discard(i)
        self.shapes[i] = sh
        return sh

    # ---------------------------------------------------------------- shape algebra
    def s_and(self, a: Shape, b: Shape) -> Shape:
        if a is ANY_SHAPE:
            return b
        if b is ANY_SHAPE:
            return a
        num = None
        if a.num is not None and b.num is not None:
            num = a.num if a.num == b.num else ops.intersection(a.num, b.num)
            if num.is_empty:
                num = None
        st = None
        if a.str is not None and b.str is not None:
            st = a.str & b.str
            if st.is_empty:
                st = None
        arrs = _dedup(x for p in a.arrs for q in b.arrs if (x := self.arr_and(p, q)) is not None)
        objs = _dedup(x for p in a.objs for q in b.objs if (x := self.obj_and(p, q)) is not None)
        self._limit(arrs, objs)
        return Shape(a.null and b.null, a.bools & b.bools, num, exp_and(a.exp, b.exp), st, arrs, objs)

    def s_or(self, a: Shape, b: Shape) -> Shape:
        if a is ANY_SHAPE or b is ANY_SHAPE:
            return ANY_SHAPE
        if a.num is None or b.num is None:
            num = a.num if b.num is None else b.num
        else:
            num = a.num if a.num == b.num else ops.union(a.num, b.num)
        if a.str is None or b.str is None:
            st = a.str if b.str is None else b.str
        else:
            st = a.str | b.str
        arrs = _dedup(list(a.arrs) + list(b.arrs))
        objs = _dedup(list(a.objs) + list(b.objs))
        if any(x == ArrShape() for x in arrs):
            arrs = (ArrShape(),)
        if any(x == ObjShape() for x in objs):
            objs = (ObjShape(),)
        self._limit(arrs, objs)
        return Shape(a.null or b.null, a.bools | b.bools, num, exp_or(a.exp, b.exp), st, arrs, objs)

    def s_not(self, a: Shape) -> Shape:
        if a is ANY_SHAPE:
            return EMPTY_SHAPE
        num = nm.NUM_UNIVERSE if a.num is None else ops.difference(nm.NUM_UNIVERSE, a.num)
        if num.is_empty:
            num = None
        st = StrLang.any() if a.str is None else ~a.str
        if st.is_empty:
            st = None
        arrs: tuple = (ArrShape(),)
        for x in a.arrs:
            neg = self.arr_not(x)
            arrs = _dedup(z for p in arrs for q in neg if (z := self.arr_and(p, q)) is not None)
            self._limit(arrs, ())
        objs: tuple = (ObjShape(),)
        for x in a.objs:
            neg = self.obj_not(x)
            objs = _dedup(z for p in objs for q in neg if (z := self.obj_and(p, q)) is not None)
            self._limit((), objs)
        return Shape(not a.null, frozenset({True, False}) - a.bools, num, exp_not(a.exp), st, arrs, objs)

    def _limit(self, arrs, objs) -> None:
        if len(arrs) > MAX_ALTERNATIVES or len(objs) > MAX_ALTERNATIVES:
            raise _Unsup("the combination of subschemas needs too many alternatives", None)

    def arr_and(self, a: ArrShape, b: ArrShape) -> ArrShape | None:
        if a == ArrShape():
            return b
        if b == ArrShape():
            return a
        n = max(len(a.prefix), len(b.prefix))
        prefix = [self.and_node(a.item_at(i), b.item_at(i)) for i in range(n)]
        items = self.and_node(a.items, b.items)
        lo = max(a.minI, b.minI)
        hi = a.maxI if b.maxI is None else (b.maxI if a.maxI is None else min(a.maxI, b.maxI))
        for i, p in enumerate(prefix):
            if p == NEVER_NODE:
                hi = i if hi is None else min(hi, i)
                break
        if items == NEVER_NODE:
            hi = n if hi is None else min(hi, n)
        if hi is not None:
            if lo > hi:
                return None
            prefix = prefix[:hi]
        while prefix and prefix[-1] == items:
            prefix.pop()
        contains = tuple(dict.fromkeys(a.contains + b.contains))
        return ArrShape(tuple(prefix), items, lo, hi, contains, a.unique or b.unique)

    def arr_not(self, a: ArrShape) -> list[ArrShape]:
        if a.unique:
            raise _Unsup("negating uniqueItems is not supported", "uniqueItems")
        out = []
        if a.minI > 0:
            out.append(ArrShape(maxI=a.minI - 1))
        if a.maxI is not None:
            out.append(ArrShape(minI=a.maxI + 1))
        for i, p in enumerate(a.prefix):
            if p != ANY_NODE:
                out.append(ArrShape(prefix=(ANY_NODE,) * i + (self.not_node(p),), minI=i + 1))
        if a.items == NEVER_NODE:
            out.append(ArrShape(minI=len(a.prefix) + 1))
        elif a.items != ANY_NODE:
            out.append(ArrShape(contains=((self.not_node(a.items), 1, None, len(a.prefix)),)))
        for c, lo, hi, frm in a.contains:
            if lo > 0:
                out.append(ArrShape(contains=((c, 0, lo - 1, frm),)))
            if hi is not None:
                out.append(ArrShape(contains=((c, hi + 1, None, frm),)))
        return out

    def obj_and(self, a: ObjShape, b: ObjShape) -> ObjShape | None:
        if a == ObjShape():
            return b
        if b == ObjShape():
            return a
        decl = [n for n in a.names if n not in a.promoted] + [n for n in b.names if n not in b.promoted]
        names = list(dict.fromkeys(decl + a.names + b.names))
        promoted = frozenset(names) - frozenset(decl)
        props = tuple((n, self.and_node(a.value_for(n), b.value_for(n))) for n in names)
        required = a.required | b.required
        for n, v in props:
            if v == NEVER_NODE and n in required:
                return None
        rest = []
        for ka, va in a.rest:
            for kb, vb in b.rest:
                v = self.and_node(va, vb)
                if v == NEVER_NODE:
                    continue
                k = ka & kb
                if not k.is_empty:
                    rest.append((k, v))
        lo = max(a.minp, b.minp)
        hi = a.maxp if b.maxp is None else (b.maxp if a.maxp is None else min(a.maxp, b.maxp))
        if hi is not None and lo > hi:
            return None
        deps = tuple(dict.fromkeys(a.deps + b.deps))
        needs = tuple(dict.fromkeys(a.needs + b.needs))
        for k, v in needs:
            if k.is_empty or v == NEVER_NODE:
                return None
        return ObjShape(props, frozenset(required), tuple(rest), lo, hi, deps, promoted, needs)

    def obj_not(self, a: ObjShape) -> list[ObjShape]:
        out = []
        for n, v in a.props:
            if v != ANY_NODE:
                out.append(ObjShape(props=((n, self.not_node(v)),), required=frozenset({n})))
        for n in a.required:
            out.append(ObjShape(props=((n, NEVER_NODE),)))
        if a.rest != ObjShape().rest:
            # some key outside the listed names is in no rest class, or has a value its class refuses
            listed = StrLang.none()
            for n in a.names:
                listed = listed | StrLang.literal(n)
            covered = StrLang.none()
            for k, v in a.rest:
                covered = covered | k
                if v != ANY_NODE:
                    kk = k - listed
                    if not kk.is_empty:
                        out.append(ObjShape(needs=((kk, self.not_node(v)),)))
            unc = ~covered - listed
            if not unc.is_empty:
                out.append(ObjShape(needs=((unc, ANY_NODE),)))
        for k, v in a.needs:
            # every present key in k has a value outside v
            nv = self.not_node(v)
            rest = [(~k, ANY_NODE)] + ([(k, nv)] if nv != NEVER_NODE else [])
            out.append(ObjShape(rest=tuple((kk, vv) for kk, vv in rest if not kk.is_empty)))
        if a.minp > 0:
            out.append(ObjShape(maxp=a.minp - 1))
        if a.maxp is not None:
            out.append(ObjShape(minp=a.maxp + 1))
        for n, req in a.deps:
            for r in sorted(req):
                out.append(ObjShape(props=((n, ANY_NODE), (r, NEVER_NODE)), required=frozenset({n})))
        return out

    # conservative disjointness, used to make oneOf cheap
    def disjoint(self, a: Shape, b: Shape, depth: int = 2) -> bool:
        if a.null and b.null or (a.bools & b.bools):
            return False
        if a.exp != EXP_NONE and b.exp != EXP_NONE:
            return False
        if a.num is not None and b.num is not None and not ops.intersection(a.num, b.num).is_empty:
            return False
        if a.str is not None and b.str is not None and not a.str.disjoint(b.str):
            return False
        for x in a.objs:
            for y in b.objs:
                if not self._obj_disjoint(x, y, depth):
                    return False
        for x in a.arrs:
            for y in b.arrs:
                if not self._arr_disjoint(x, y, depth):
                    return False
        return True

    def _node_disjoint(self, i: int, j: int, depth: int) -> bool:
        if i == NEVER_NODE or j == NEVER_NODE:
            return True
        if depth <= 0 or i in self.busy or j in self.busy:
            return False
        try:
            return self.disjoint(self.shape(i), self.shape(j), depth - 1)
        except (UnsupportedSchemaError, _Unsup):
            return False

    def _allowed_keys(self, x: ObjShape) -> StrLang:
        """The keys an object of shape x may have."""
        k = self._keys_cache.get(x)
        if k is None:
            listed = StrLang.none()
            ok = StrLang.none()
            for n, v in x.props:
                listed = listed | StrLang.literal(n)
                if v != NEVER_NODE:
                    ok = ok | StrLang.literal(n)
            for kk, v in x.rest:
                ok = ok | (kk - listed)
            k = self._keys_cache[x] = ok
        return k

    def _obj_disjoint(self, x: ObjShape, y: ObjShape, depth: int) -> bool:
        if x.maxp is not None and y.minp > x.maxp or y.maxp is not None and x.minp > y.maxp:
            return True
        nonempty = x.minp > 0 or y.minp > 0 or x.required or y.required or x.needs or y.needs
        if nonempty and (x.rest != ObjShape().rest and y.rest != ObjShape().rest):
            try:
                if self._allowed_keys(x).disjoint(self._allowed_keys(y)):
                    return True
            except CompileLimitError as _e:
                _reraise_budget(_e)
                pass
        for n in x.required | y.required:
            if n in x.required and y.value_for(n) == NEVER_NODE:
                return True
            if n in y.required and x.value_for(n) == NEVER_NODE:
                return True
            if n in x.required and n in y.required and self._node_disjoint(x.value_for(n), y.value_for(n), depth):
                return True
        return False

    def _arr_disjoint(self, x: ArrShape, y: ArrShape, depth: int) -> bool:
        if x.maxI is not None and y.minI > x.maxI or y.maxI is not None and x.minI > y.maxI:
            return True
        for i in range(min(x.minI, y.minI, 8)):
            if self._node_disjoint(x.item_at(i), y.item_at(i), depth):
                return True
        return False

    # ---------------------------------------------------------------- schemas
    def unsupported(self, msg: str, ctx: Ctx, keyword: str, what: str, cause: Exception | None = None) -> None:
        if self.strict:
            cls = SchemaTooLargeError if isinstance(cause, CompileLimitError) else UnsupportedSchemaError
            raise cls(msg, _ptr(ctx, keyword), keyword)
        self.relaxed.append({"pointer": _ptr(ctx, keyword), "keyword": keyword, "what": what})

    def sub(self, s, ctx: Ctx, *path) -> int:
        if isinstance(s, dict):
            return self.schema_node(s, self.reg.context(s))
        if isinstance(s, bool):
            return ANY_NODE if s else NEVER_NODE
        raise InvalidSchemaError("a subschema must be an object or a boolean", _ptr(ctx, *path))

    def schema_shape(self, s, ctx: Ctx) -> Shape:
        draft = ctx.draft
        if "$ref" in s:
            ref = s["$ref"]
            if not isinstance(ref, str):
                raise InvalidSchemaError("$ref must be a string", _ptr(ctx, "$ref"))
            target, tctx = self.reg.resolve(ref, ctx)
            rnode = self.sub(target, tctx, "$ref")
            if draft <= 7:
                return self.shape(rnode)
        else:
            rnode = ANY_NODE
        for kw in ("$dynamicRef", "$recursiveRef"):
            if kw in s:
                rnode = self.and_node(rnode, self._dynamic_ref(s, ctx, kw))
        for kw in s:
            if kw in UNSUPPORTED_KEYWORDS:
                if kw in ("unevaluatedProperties", "unevaluatedItems") and self._simple_unevaluated(s, kw):
                    continue
                if kw in ("unevaluatedProperties", "unevaluatedItems") and draft >= 2019:
                    continue  # the general form is a combination below
                self.unsupported(f"keyword {kw!r} is not supported", ctx, kw, "ignored")
        sh = self.base_shape(s, ctx)
        combos: list[tuple[str, callable]] = []
        if rnode != ANY_NODE:
            combos.append(("$ref", lambda: self.shape(rnode)))
        if "enum" in s or "const" in s:
            combos.append(("enum", lambda: self._enum_shape(s, ctx)))
        if "allOf" in s:
            combos.append(("allOf", lambda: self._all_of(s["allOf"], ctx)))
        if "anyOf" in s:
            combos.append(("anyOf", lambda: self._any_of(s["anyOf"], ctx)))
        if "oneOf" in s:
            combos.append(("oneOf", lambda: self._one_of(s["oneOf"], ctx, sh)))
        if "not" in s:
            combos.append(("not", lambda: self.s_not(self.shape(self.sub(s["not"], ctx, "not")))))
        if "if" in s and draft >= 7:
            combos.append(("if", lambda: self._if_then_else(s, ctx)))
        deps = self._dep_schemas(s, ctx)
        for name, dnode, kw in deps:
            combos.append((kw, lambda name=name, dnode=dnode: self._dep_shape(name, dnode)))
        if draft >= 2019:
            for kw in ("unevaluatedProperties", "unevaluatedItems"):
                if kw in s and not self._simple_unevaluated(s, kw):
                    combos.append((kw, lambda kw=kw: self._unevaluated(s, ctx, kw)))
        for kw, f in combos:
            try:
                part = f()
            except (UnsupportedSchemaError, _Unsup, CompileLimitError) as e:
                _reraise_budget(e)
                if self.strict:
                    if isinstance(e, _Unsup):
                        raise UnsupportedSchemaError(str(e.args[0]), _ptr(ctx, kw), kw) from None
                    if isinstance(e, CompileLimitError) and not isinstance(e, UnsupportedSchemaError):
                        raise SchemaTooLargeError(str(e), _ptr(ctx, kw), kw) from None
                    raise
                self.relaxed.append({"pointer": _ptr(ctx, kw), "keyword": kw, "what": f"ignored ({e})"})
                if kw == "oneOf":
                    try:
                        part = self._any_of(s["oneOf"], ctx)
                        self.relaxed[-1]["what"] = "oneOf compiled as anyOf (more than one branch may match)"
                    except (UnsupportedSchemaError, _Unsup, CompileLimitError) as _e:
                        _reraise_budget(_e)
                        continue
                else:
                    continue
            try:
                sh = self.s_and(sh, part)
            except _Unsup as e:
                if self.strict:
                    raise UnsupportedSchemaError(str(e.args[0]), _ptr(ctx, kw), kw) from None
                self.relaxed.append({"pointer": _ptr(ctx, kw), "keyword": kw, "what": f"ignored ({e.args[0]})"})
        return sh

    def _simple_unevaluated(self, s, kw) -> bool:
        """unevaluated* equals additional*/items when no in-place applicator can evaluate more."""
        applicators = {"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "$dynamicRef",
                       "dependentSchemas", "dependencies", "$recursiveRef"}
        if any(k in s for k in applicators):
            return False
        if kw == "unevaluatedProperties":
            return "additionalProperties" not in s
        return "items" not in s and "contains" not in s and "additionalItems" not in s

    # ---- unevaluatedProperties / unevaluatedItems in general
    #
    # The keys (items) evaluated by a valid schema are a static part (properties, patternProperties,
    # prefixItems ... of the schema and of the subschemas that must hold: allOf, $ref) plus, for each
    # conditional subschema (anyOf/oneOf branches, if/then, else, dependentSchemas), its part when its
    # condition holds. More holding conditions only evaluate more, so "the unevaluated ones satisfy U" holds
    # iff some set of conditions holds and the keys outside static + their parts satisfy U: an exact union
    # over subsets of the conditions (intersected with the schema's other keywords, which a valid instance
    # satisfies anyway).
    MAX_UNEVAL_ALTS = 6

    def _unevaluated(self, s, ctx, kw) -> Shape:
        items = kw == "unevaluatedItems"
        u = self.sub(s[kw], ctx, kw)
        static, alts = self._evaluated(s, ctx, items, kw, True, ())
        if len(alts) > self.MAX_UNEVAL_ALTS:
            raise _Unsup(f"{kw} under more than {self.MAX_UNEVAL_ALTS} conditional subschemas", kw)
        out = EMPTY_SHAPE
        for mask in range(1 << len(alts)):
            sh = ANY_SHAPE
            e = static
            for j, (cond, ej) in enumerate(alts):
                if mask >> j & 1:
                    sh = self.s_and(sh, self.shape(cond))
                    e = self._ev_join(e, ej, items)
            if sh.is_empty:
                continue
            out = self.s_or(out, self.s_and(sh, self._uneval_restriction(e, u, items)))
        return out

    @staticmethod
    def _ev_empty(items):
        return (0, frozenset()) if items else StrLang.none()

    @staticmethod
    def _ev_is_empty(e, items):
        return e == (0, frozenset()) if items else e.is_empty

    @staticmethod
    def _ev_join(a, b, items):
        if items:
            n = None if a[0] is None or b[0] is None else max(a[0], b[0])
            return (n, a[1] | b[1])
        return a | b

    def _uneval_restriction(self, e, u: int, items: bool) -> Shape:
        if items:
            n, contains = e
            if n is None:
                return ANY_SHAPE
            it = self.or_node(u, *contains)
            if it == ANY_NODE:
                return ANY_SHAPE
            prefix = (ANY_NODE,) * n
            arr = ArrShape(prefix, it, 0, n if it == NEVER_NODE else None)
            return Shape(null=True, bools=frozenset({True, False}), num=nm.NUM_UNIVERSE, exp=EXP_ALL,
                         str=StrLang.any(), arrs=(arr,), objs=(ObjShape(),))
        if e.is_any or u == ANY_NODE:
            return ANY_SHAPE
        rest = ([(e, ANY_NODE)] if not e.is_empty else []) + ([(~e, u)] if u != NEVER_NODE else [])
        return Shape(null=True, bools=frozenset({True, False}), num=nm.NUM_UNIVERSE, exp=EXP_ALL,
                     str=StrLang.any(), arrs=(ArrShape(),), objs=(ObjShape(rest=tuple(rest)),))

    def _evaluated(self, x, ctx, items: bool, kw: str, top: bool, stack: tuple):
        """(static part, [(condition node, part when it holds), ...]) of what a valid x evaluates."""
        e = self._ev_empty(items)
        alts: list = []
        if not isinstance(x, dict):
            return e, alts
        if id(x) in stack:
            raise _Unsup(f"{kw} through a reference cycle of in-place applicators", kw)
        stack = stack + (id(x),)
        ctx = self.reg.ctx.get(id(x), ctx)
        draft = ctx.draft
        if not top and kw in x:
            return ((None, frozenset()) if items else StrLang.any()), []
        if draft <= 7 and "$ref" in x:
            target, tctx = self.reg.resolve(x["$ref"], ctx)
            return self._evaluated(target, tctx, items, kw, False, stack)
        if items:
            n, contains = 0, set()
            if draft >= 2020:
                if isinstance(x.get("prefixItems"), list):
                    n = len(x["prefixItems"])
                if "items" in x:
                    n = None
                if "contains" in x:
                    contains.add(self.sub(x["contains"], ctx, "contains"))
            else:
                it = x.get("items")
                if isinstance(it, list):
                    n = None if "additionalItems" in x else len(it)
                elif it is not None:
                    n = None
            e = (n, frozenset(contains))
        else:
            if "additionalProperties" in x:
                return StrLang.any(), []
            for name in x.get("properties", {}) if isinstance(x.get("properties"), dict) else ():
                e = e | StrLang.literal(name)
            for pat in x.get("patternProperties", {}) if isinstance(x.get("patternProperties"), dict) else ():
                try:
                    e = e | pattern_lang(pat)
                except (RegexError, CompileLimitError) as err:
                    _reraise_budget(err)
                    raise _Unsup(f"pattern {pat!r}: {err}", kw) from None

        def merge(sub, cond):
            nonlocal e
            if not isinstance(sub, dict):
                return
            sctx = self.reg.ctx.get(id(sub), ctx)
            st, al = self._evaluated(sub, sctx, items, kw, False, stack)
            if cond is None:
                e = self._ev_join(e, st, items)
                alts.extend(al)
            else:
                if not self._ev_is_empty(st, items):
                    alts.append((cond, st))
                alts.extend((self.and_node(cond, c), ej) for c, ej in al)

        if "$ref" in x:
            target, _ = self.reg.resolve(x["$ref"], ctx)
            merge(target, None)
        for rk in ("$dynamicRef", "$recursiveRef"):
            if rk in x:
                node = self._dynamic_ref(x, ctx, rk)
                if self.nodes[node][0] == "S":
                    merge(self.nodes[node][1], None)
        for b in x.get("allOf", ()) if isinstance(x.get("allOf"), list) else ():
            merge(b, None)
        for k in ("anyOf", "oneOf"):
            for i, b in enumerate(x.get(k, ()) if isinstance(x.get(k), list) else ()):
                merge(b, self.sub(b, ctx, k, i))
        if "if" in x and draft >= 7:
            # if's own annotations count when it holds, even without then/else
            ifn = self.sub(x["if"], ctx, "if")
            merge(x["if"], ifn)
            if "then" in x:
                merge(x["then"], ifn)
            if "else" in x:
                merge(x["else"], self.not_node(ifn))
        deps = {}
        if draft >= 2019 and isinstance(x.get("dependentSchemas"), dict):
            deps.update(x["dependentSchemas"])
        if isinstance(x.get("dependencies"), dict):
            deps.update({k: v for k, v in x["dependencies"].items() if isinstance(v, (dict, bool))})
        for name, d in deps.items():
            has = self.shape_node(Shape(objs=(ObjShape(props=((name, ANY_NODE),), required=frozenset({name})),)))
            merge(d, has)
        return e, alts

    def _dynamic_ref(self, s, ctx, kw) -> int:
        ref = s[kw]
        target, tctx = self.reg.resolve(ref, ctx, kw)
        anchor = None
        if kw == "$dynamicRef" and "#" in ref and isinstance(target, dict):
            frag = ref.split("#", 1)[1]
            if target.get("$dynamicAnchor") == frag:
                anchor = frag
        if kw == "$recursiveRef" and isinstance(target, dict) and target.get("$recursiveAnchor") is True:
            anchor = "$recursive"
        if anchor is not None:
            others = [k for k, v in self.reg.anchors.items() if k[1] == anchor and v is not target
                      and isinstance(v, dict) and v.get("$dynamicAnchor") == anchor]
            if kw == "$recursiveRef":
                others = [d for u, (d, _) in self.reg.docs.items()
                          if isinstance(d, dict) and d.get("$recursiveAnchor") is True and d is not target]
            if others:
                if self.strict:
                    raise UnsupportedSchemaError(f"{kw} with more than one dynamic target", _ptr(ctx, kw), kw)
                self.relaxed.append({"pointer": _ptr(ctx, kw), "keyword": kw,
                                     "what": "resolved statically to its lexical target"})
        return self.sub(target, tctx, kw)

    # ---- the keyword families
    def base_shape(self, s: dict, ctx: Ctx) -> Shape:
        draft = ctx.draft
        t = s.get("type")
        if t is None:
            types = set(TYPES)
        else:
            tl = [t] if isinstance(t, str) else t
            if not isinstance(tl, list) or not all(isinstance(x, str) for x in tl):
                raise InvalidSchemaError("type must be a string or an array of strings", _ptr(ctx, "type"))
            for x in tl:
                if x not in TYPES:
                    raise InvalidSchemaError(f"unknown type {x!r}", _ptr(ctx, "type"))
            types = set(tl)
        null = "null" in types
        bools = frozenset({True, False}) if "boolean" in types else frozenset()
        if "number" in types:
            num, exp = nm.NUM_UNIVERSE, EXP_ALL
        elif "integer" in types:
            num, exp = (nm.INTEGERS_DRAFT4 if ctx.draft == 4 else nm.INTEGERS), EXP_DROP
        else:
            num, exp = None, EXP_NONE
        if num is not None:
            num, exp = self._numeric(s, ctx, num, exp)
        st = StrLang.any() if "string" in types else None
        if st is not None:
            st = self._string(s, ctx, st)
        arrs = (ArrShape(),) if "array" in types else ()
        if arrs:
            a = self._array(s, ctx)
            arrs = (a,) if a is not None else ()
        objs = (ObjShape(),) if "object" in types else ()
        if objs:
            o = self._object(s, ctx)
            objs = (o,) if o is not None else ()
        del draft
        return Shape(null, bools, num, exp, st, arrs, objs)

    def _numeric(self, s, ctx, num, exp):
        draft = ctx.draft
        cons = []

        def dec(kw):
            v = s[kw]
            if not _is_num(v):
                raise InvalidSchemaError(f"{kw} must be a number", _ptr(ctx, kw))
            if isinstance(v, float) and not math.isfinite(v):
                raise InvalidSchemaError(f"{kw} must be finite", _ptr(ctx, kw))
            return nm.to_decimal(v)

        for kw, op in (("minimum", ">="), ("maximum", "<=")):
            if kw in s:
                excl = "exclusiveMinimum" if kw == "minimum" else "exclusiveMaximum"
                if draft == 4 and s.get(excl) is True:
                    op = op[0]
                cons.append((kw, op, dec(kw)))
        for kw, op in (("exclusiveMinimum", ">"), ("exclusiveMaximum", "<")):
            if kw in s:
                v = s[kw]
                if isinstance(v, bool):
                    if draft > 4 and draft != 2020 and draft != 2019:
                        raise InvalidSchemaError(f"{kw} must be a number", _ptr(ctx, kw))
                    continue  # draft-4 boolean form modifies minimum/maximum
                cons.append((kw, op, dec(kw)))
        for kw, op, v in cons:
            try:
                num = ops.intersection(num, nm.compare_dfa(op, v))
            except (CompileLimitError, ValueError) as e:
                _reraise_budget(e)
                self.unsupported(f"{kw}: {e}", ctx, kw, "ignored", e)
                continue
            exp = exp_and(exp, EXP_DROP)
        if "multipleOf" in s:
            k = dec("multipleOf")
            if k <= 0:
                raise InvalidSchemaError("multipleOf must be > 0", _ptr(ctx, "multipleOf"))
            try:
                num = ops.intersection(num, nm.multiple_of_dfa(k))
                exp = exp_and(exp, EXP_DROP)
            except (CompileLimitError, InvalidOperation) as e:
                _reraise_budget(e)
                self.unsupported(f"multipleOf {k} cannot be enforced exactly: {e}", ctx, "multipleOf", "ignored", e)
        if num is not None and num.is_empty:
            num = None
        return num, exp

    def _string(self, s, ctx, st: StrLang) -> StrLang | None:
        lo, hi = 0, None
        for kw in ("minLength", "maxLength"):
            if kw in s:
                v = s[kw]
                if not (_is_num(v) and v >= 0 and float(v).is_integer()):
                    raise InvalidSchemaError(f"{kw} must be a non-negative integer", _ptr(ctx, kw))
                if kw == "minLength":
                    lo = int(v)
                else:
                    hi = int(v)
        if lo or hi is not None:
            st = st & StrLang.length(lo, hi)
        if "pattern" in s:
            p = s["pattern"]
            if not isinstance(p, str):
                raise InvalidSchemaError("pattern must be a string", _ptr(ctx, "pattern"))
            try:
                st = st & pattern_lang(p)
            except (RegexError, CompileLimitError) as e:
                _reraise_budget(e)
                self.unsupported(f"pattern {p!r}: {e}", ctx, "pattern", "ignored", e)
        if "format" in s and self.format_assertion:
            f = s["format"]
            if isinstance(f, str):
                try:
                    fl = format_lang(f)
                except (RegexError, CompileLimitError) as e:  # pragma: no cover
                    _reraise_budget(e)
                    fl = None
                    self.unsupported(f"format {f!r}: {e}", ctx, "format", "ignored", e)
                if fl is not None:
                    try:
                        st = st & fl
                    except CompileLimitError as e:
                        _reraise_budget(e)
                        self.unsupported(f"format {f!r} with length bounds: {e}", ctx, "format", "ignored", e)
                elif f in KNOWN_UNIMPLEMENTED:
                    self.unsupported(f"format {f!r} is not implemented", ctx, "format", "ignored")
        return None if st.is_empty else st

    def _array(self, s, ctx) -> ArrShape | None:
        draft = ctx.draft
        prefix: list[int] = []
        items = ANY_NODE
        if "prefixItems" in s:
            pi = s["prefixItems"]
            if not isinstance(pi, list):
                raise InvalidSchemaError("prefixItems must be an array", _ptr(ctx, "prefixItems"))
            prefix = [self.sub(x, ctx, "prefixItems", i) for i, x in enumerate(pi)]
        if "items" in s:
            it = s["items"]
            if isinstance(it, list):
                prefix = [self.sub(x, ctx, "items", i) for i, x in enumerate(it)]
                if "additionalItems" in s:
                    items = self.sub(s["additionalItems"], ctx, "additionalItems")
            else:
                items = self.sub(it, ctx, "items")
        elif "unevaluatedItems" in s and self._simple_unevaluated(s, "unevaluatedItems"):
            items = self.sub(s["unevaluatedItems"], ctx, "unevaluatedItems")
        lo = 0
        hi = None
        for kw in ("minItems", "maxItems"):
            if kw in s:
                v = s[kw]
                if not (_is_num(v) and v >= 0 and float(v).is_integer()):
                    raise InvalidSchemaError(f"{kw} must be a non-negative integer", _ptr(ctx, kw))
                if kw == "minItems":
                    lo = int(v)
                else:
                    hi = int(v)
        contains = ()
        if "contains" in s and draft >= 6:
            c = self.sub(s["contains"], ctx, "contains")
            cmin, cmax = 1, None
            if draft >= 2019:
                if "minContains" in s:
                    cmin = int(s["minContains"])
                if "maxContains" in s:
                    cmax = int(s["maxContains"])
            if cmax is not None and cmin > cmax:
                return None
            if not (cmin == 0 and cmax is None):
                contains = ((c, cmin, cmax, 0),)
        unique = False
        if s.get("uniqueItems") is True and not (hi is not None and hi <= 1):
            unique = True
        if items == NEVER_NODE:
            hi = len(prefix) if hi is None else min(hi, len(prefix))
        if hi is not None:
            if lo > hi:
                return None
            prefix = prefix[:hi]
        for i, p in enumerate(prefix):
            if p == NEVER_NODE:
                if lo > i:
                    return None
                hi = i
                prefix = prefix[:i]
                break
        return ArrShape(tuple(prefix), items, lo, hi, contains, unique)

    def _object(self, s, ctx) -> ObjShape | None:
        draft = ctx.draft
        props: dict[str, int] = {}
        if "properties" in s:
            p = s["properties"]
            if not isinstance(p, dict):
                raise InvalidSchemaError("properties must be an object", _ptr(ctx, "properties"))
            for k, v in p.items():
                props[k] = self.sub(v, ctx, "properties", k)
        patterns = []
        if "patternProperties" in s:
            pp = s["patternProperties"]
            if not isinstance(pp, dict):
                raise InvalidSchemaError("patternProperties must be an object", _ptr(ctx, "patternProperties"))
            for k, v in pp.items():
                try:
                    patterns.append((pattern_lang(k), self.sub(v, ctx, "patternProperties", k)))
                except (RegexError, CompileLimitError) as e:
                    _reraise_budget(e)
                    if self.strict:
                        raise UnsupportedSchemaError(f"pattern {k!r}: {e}", _ptr(ctx, "patternProperties", k),
                                                     "patternProperties") from None
                    self.relaxed.append({"pointer": _ptr(ctx, "patternProperties", k),
                                         "keyword": "patternProperties", "what": "keys matched as any string"})
                    patterns.append((StrLang.any(), self.sub(v, ctx, "patternProperties", k)))
        add = ANY_NODE
        if "additionalProperties" in s:
            add = self.sub(s["additionalProperties"], ctx, "additionalProperties")
        elif "unevaluatedProperties" in s and self._simple_unevaluated(s, "unevaluatedProperties"):
            add = self.sub(s["unevaluatedProperties"], ctx, "unevaluatedProperties")
        parts: list[tuple[StrLang, list[int]]] = [(StrLang.any(), [])]
        for pl, node in patterns:
            new = []
            for k, nodes in parts:
                a = k & pl
                if not a.is_empty:
                    new.append((a, nodes + [node]))
                b = k - pl
                if not b.is_empty:
                    new.append((b, nodes))
            parts = new
            if len(parts) > 32:
                raise UnsupportedSchemaError("too many overlapping patternProperties", _ptr(ctx, "patternProperties"),
                                             "patternProperties")
        rest = []
        for k, nodes in parts:
            v = self.and_node(*nodes) if nodes else add
            if v != NEVER_NODE:
                rest.append((k, v))
        req = s.get("required", [])
        if isinstance(req, bool) and draft <= 3:
            req = []
        if not isinstance(req, list) or not all(isinstance(x, str) for x in req):
            raise InvalidSchemaError("required must be an array of strings", _ptr(ctx, "required"))
        deps = []
        dr = dict(s.get("dependentRequired", {})) if draft >= 2019 else {}
        if isinstance(s.get("dependencies"), dict):
            for k, v in s["dependencies"].items():
                if isinstance(v, list):
                    dr[k] = v
        for k, v in dr.items():
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise InvalidSchemaError("dependentRequired values must be arrays of strings",
                                         _ptr(ctx, "dependentRequired", k))
            if v:
                deps.append((k, frozenset(v)))
        names = list(props)
        for n in list(req) + [x for d, v in dr.items() if v for x in [d, *v]]:
            if n not in props and n not in names:
                names.append(n)
        plist = []
        for n in names:
            v = props.get(n)
            pat_nodes = [node for pl, node in patterns if pl.accepts(n)]
            if v is None:
                v = self.and_node(*pat_nodes) if pat_nodes else add
            elif pat_nodes:
                v = self.and_node(v, *pat_nodes)
            plist.append((n, v))
        pn = s.get("propertyNames")
        if pn is not None and draft >= 6:
            pns = self.shape(self.sub(pn, ctx, "propertyNames"))
            keys = pns.str
            plist = [(n, v if keys is not None and keys.accepts(n) else NEVER_NODE) for n, v in plist]
            rest = [(k & keys, v) for k, v in rest if keys is not None and not (k & keys).is_empty]
        minp, maxp = 0, None
        for kw in ("minProperties", "maxProperties"):
            if kw in s:
                v = s[kw]
                if not (_is_num(v) and v >= 0 and float(v).is_integer()):
                    raise InvalidSchemaError(f"{kw} must be a non-negative integer", _ptr(ctx, kw))
                if kw == "minProperties":
                    minp = int(v)
                else:
                    maxp = int(v)
        required = frozenset(req)
        for n, v in plist:
            if n in required and v == NEVER_NODE:
                return None
        if maxp is not None and minp > maxp:
            return None
        return ObjShape(tuple(plist), required, tuple(rest), minp, maxp, tuple(deps),
                        frozenset(n for n, _ in plist if n not in props))

    def _dep_schemas(self, s, ctx):
        out = []
        if ctx.draft >= 2019 and isinstance(s.get("dependentSchemas"), dict):
            for k, v in s["dependentSchemas"].items():
                out.append((k, self.sub(v, ctx, "dependentSchemas", k), "dependentSchemas"))
        if isinstance(s.get("dependencies"), dict):
            for k, v in s["dependencies"].items():
                if isinstance(v, (dict, bool)):
                    out.append((k, self.sub(v, ctx, "dependencies", k), "dependencies"))
        return out

    def _dep_shape(self, name: str, dnode: int) -> Shape:
        has = Shape(objs=(ObjShape(props=((name, ANY_NODE),), required=frozenset({name})),))
        without = Shape(null=True, bools=frozenset({True, False}), num=nm.NUM_UNIVERSE, exp=EXP_ALL,
                        str=StrLang.any(), arrs=(ArrShape(),), objs=(ObjShape(props=((name, NEVER_NODE),)),))
        return self.s_or(without, self.s_and(self.shape(dnode), has))

    def _list(self, v, ctx, kw) -> list[int]:
        if not isinstance(v, list) or not v:
            raise InvalidSchemaError(f"{kw} must be a non-empty array", _ptr(ctx, kw))
        return [self.sub(x, ctx, kw, i) for i, x in enumerate(v)]

    def _all_of(self, v, ctx) -> Shape:
        sh = ANY_SHAPE
        for n in self._list(v, ctx, "allOf"):
            sh = self.s_and(sh, self.shape(n))
        return sh

    def _any_of(self, v, ctx) -> Shape:
        sh = EMPTY_SHAPE
        for n in self._list(v, ctx, "anyOf"):
            sh = self.s_or(sh, self.shape(n))
        return sh

    def _one_of(self, v, ctx, within: Shape = ANY_SHAPE) -> Shape:
        """oneOf, restricted to `within` (the sibling keywords' shape): exact since
        within & oneOf(B...) == oneOf(within & B...), and the restricted branches are more often disjoint."""
        nodes = self._list(v, ctx, "oneOf")
        shapes = [self.shape(n) for n in nodes]
        if within is not ANY_SHAPE:
            shapes = [self.s_and(within, x) for x in shapes]
        out = EMPTY_SHAPE
        # a value has one JSON type, so oneOf is computed per kind (scalars, arrays, objects): exact, and
        # branches that only overlap on another kind need no complement here
        for kind in ("scalar", "arrs", "objs"):
            ps = [_kind_part(x, kind) for x in shapes]
            for i, si in enumerate(ps):
                if si.is_empty:
                    continue
                part = si
                for j, sj in enumerate(ps):
                    if i != j and not sj.is_empty and not self.disjoint(si, sj):
                        part = self.s_and(part, self.s_not(sj))
                out = self.s_or(out, part)
        return out

    def _if_then_else(self, s, ctx) -> Shape:
        i = self.shape(self.sub(s["if"], ctx, "if"))
        t = self.shape(self.sub(s["then"], ctx, "then")) if "then" in s else ANY_SHAPE
        e = self.shape(self.sub(s["else"], ctx, "else")) if "else" in s else ANY_SHAPE
        if "then" not in s and "else" not in s:
            return ANY_SHAPE
        return self.s_or(self.s_and(i, t), self.s_and(self.s_not(i), e))

    def _enum_shape(self, s, ctx) -> Shape:
        if "const" in s and ctx.draft >= 6:
            sh = self.value_shape(s["const"])
        else:
            sh = ANY_SHAPE
        if "enum" in s:
            vals = s["enum"]
            if not isinstance(vals, list):
                raise InvalidSchemaError("enum must be an array", _ptr(ctx, "enum"))
            es = EMPTY_SHAPE
            for v in vals:
                es = self.s_or(es, self.value_shape(v))
            sh = self.s_and(sh, es)
        return sh

    def value_shape(self, v) -> Shape:
        """The values equal to ``v`` under JSON Schema equality (1 == 1.0, not == true)."""
        if v is None:
            return Shape(null=True)
        if isinstance(v, bool):
            return Shape(bools=frozenset({v}))
        if _is_num(v):
            if isinstance(v, float) and not math.isfinite(v):
                return EMPTY_SHAPE
            return Shape(num=nm.const_number_dfa(nm.to_decimal(v)), exp=EXP_DROP)
        if isinstance(v, str):
            return Shape(str=StrLang.literal(v))
        if isinstance(v, list):
            return Shape(arrs=(ArrShape(prefix=tuple(self.shape_node(self.value_shape(x)) for x in v),
                                        items=NEVER_NODE, minI=len(v), maxI=len(v)),))
        if isinstance(v, dict):
            return Shape(objs=(ObjShape(props=tuple((k, self.shape_node(self.value_shape(x))) for k, x in v.items()),
                                        required=frozenset(v), rest=()),))
        raise InvalidSchemaError(f"not a JSON value: {v!r}")


def _kind_part(sh: Shape, kind: str) -> Shape:
    if kind == "scalar":
        return Shape(sh.null, sh.bools, sh.num, sh.exp, sh.str) if (sh.arrs or sh.objs) else sh
    if kind == "arrs":
        return Shape(arrs=sh.arrs)
    return Shape(objs=sh.objs)


def _dedup(xs) -> tuple:
    return tuple(dict.fromkeys(xs))


def _ptr(ctx: Ctx, *path) -> str:
    p = ctx.pointer
    for x in path:
        p += "/" + str(x).replace("~", "~0").replace("/", "~1")
    return p


def _reraise_budget(e: BaseException) -> None:
    """A spent time/memory budget ends the compile; it is never a relaxation or a keyword error."""
    if isinstance(e, BudgetError):
        raise e
