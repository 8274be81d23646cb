"""Schema resources, base URIs, ``$id``/``$anchor`` registration and ``$ref`` resolution.

No network access ever: a reference to a document that is not part of the schema
needs the user's ``resolver(uri) -> schema``; without one it is an error.
"""

from __future__ import annotations

from urllib.parse import unquote, urldefrag, urljoin

from ...errors import InvalidSchemaError, UnsupportedSchemaError

DRAFTS = {
    "http://json-schema.org/draft-04/schema": 4,
    "http://json-schema.org/draft-06/schema": 6,
    "http://json-schema.org/draft-07/schema": 7,
    "https://json-schema.org/draft/2019-09/schema": 2019,
    "https://json-schema.org/draft/2020-12/schema": 2020,
}
DEFAULT_BASE = "urn:corral:root"


def join(base: str, ref: str) -> str:
    """urljoin that also handles urn: bases and fragment-only references."""
    if ref.startswith("#"):
        return urldefrag(base)[0] + ref
    if ":" in ref.split("/", 1)[0]:
        return ref
    if base.startswith("urn:"):
        return ref
    return urljoin(base, ref)


# keywords whose value is a schema / a map of schemas / a list of schemas
SCHEMA_KW = {"additionalProperties", "propertyNames", "additionalItems", "contains", "not", "if", "then",
             "else", "unevaluatedProperties", "unevaluatedItems", "contentSchema"}
MAP_KW = {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
LIST_KW = {"allOf", "anyOf", "oneOf", "prefixItems"}


def draft_of(uri: str | None, default: int) -> int:
    if not isinstance(uri, str):
        return default
    u = uri.rstrip("#")
    if u in DRAFTS:
        return DRAFTS[u]
    u2 = u.replace("https://", "http://")
    for k, v in DRAFTS.items():
        if k.replace("https://", "http://") == u2:
            return v
    return default


class Ctx:
    """Where a subschema lives: its base URI, JSON pointer (for messages) and draft."""

    __slots__ = ("base", "pointer", "draft")

    def __init__(self, base: str, pointer: str, draft: int) -> None:
        self.base = base
        self.pointer = pointer
        self.draft = draft


def _esc(k: str) -> str:
    return k.replace("~", "~0").replace("/", "~1")


class Registry:
    def __init__(self, root, resolver=None, default_draft: int = 2020) -> None:
        self.resolver = resolver
        self.docs: dict[str, tuple[object, int]] = {}  # uri -> (document, draft)
        self.anchors: dict[tuple[str, str], object] = {}
        self.ctx: dict[int, Ctx] = {}
        self._keep: list = []  # keep walked objects alive so id() stays unique
        draft = draft_of(root.get("$schema") if isinstance(root, dict) else None, default_draft)
        self.root_draft = draft
        self.add_document(DEFAULT_BASE, root, draft, "#")

    def add_document(self, uri: str, doc, draft: int, pointer: str) -> None:
        uri = urldefrag(uri)[0]
        self.docs.setdefault(uri, (doc, draft))
        self._walk(doc, uri, pointer, draft, uri)

    def _walk(self, s, base: str, pointer: str, draft: int, doc_uri: str) -> None:
        if isinstance(s, bool):
            self.ctx.setdefault(id(s) if False else -1, Ctx(base, pointer, draft))
            return
        if not isinstance(s, dict):
            return
        if id(s) in self.ctx:
            return
        self._keep.append(s)
        if "$schema" in s and isinstance(s["$schema"], str):
            draft = draft_of(s["$schema"], draft)
        idk = "id" if draft == 4 else "$id"
        sid = s.get(idk)
        if isinstance(sid, str) and not ("$ref" in s and draft <= 7):
            if sid.startswith("#") and draft <= 7:
                self.anchors[(base, sid[1:])] = s
            else:
                new = join(base, sid)
                nb, frag = urldefrag(new)
                base = nb
                self.docs.setdefault(nb, (s, draft))
                if frag and draft <= 7:
                    self.anchors[(nb, frag)] = s
        for ak in ("$anchor", "$dynamicAnchor"):
            if isinstance(s.get(ak), str):
                self.anchors.setdefault((base, s[ak]), s)
        self.ctx[id(s)] = Ctx(base, pointer, draft)
        for k, v in s.items():
            p = f"{pointer}/{_esc(k)}"
            if k in SCHEMA_KW:
                self._walk(v, base, p, draft, doc_uri)
            elif k in MAP_KW and isinstance(v, dict):
                for kk, vv in v.items():
                    self._walk(vv, base, f"{p}/{_esc(kk)}", draft, doc_uri)
            elif k in LIST_KW and isinstance(v, list):
                for i, vv in enumerate(v):
                    self._walk(vv, base, f"{p}/{i}", draft, doc_uri)
            elif k == "items":
                if isinstance(v, list):
                    for i, vv in enumerate(v):
                        self._walk(vv, base, f"{p}/{i}", draft, doc_uri)
                else:
                    self._walk(v, base, p, draft, doc_uri)
            elif k == "dependencies" and isinstance(v, dict):
                for kk, vv in v.items():
                    if isinstance(vv, (dict, bool)):
                        self._walk(vv, base, f"{p}/{_esc(kk)}", draft, doc_uri)

    def context(self, s) -> Ctx:
        c = self.ctx.get(id(s))
        if c is None:
            return Ctx(DEFAULT_BASE, "#", self.root_draft)
        return c

    def resolve(self, ref: str, ctx: Ctx, keyword: str = "$ref"):
        """The schema a reference points at, and its context."""
        full = join(ctx.base, ref)
        uri, frag = urldefrag(full)
        if uri not in self.docs:
            # json-schema meta-schemas and remote documents need the user's resolver
            if self.resolver is None:
                raise UnsupportedSchemaError(
                    f"remote reference {ref!r} needs a resolver (corral never fetches)", ctx.pointer, keyword)
            doc = self.resolver(uri)
            if doc is None:
                raise InvalidSchemaError(f"resolver found nothing for {uri!r}", ctx.pointer)
            d = draft_of(doc.get("$schema") if isinstance(doc, dict) else None, ctx.draft)
            self.add_document(uri, doc, d, uri + "#")
        doc, _ = self.docs[uri]
        frag = unquote(frag)
        if frag == "":
            target = doc
        elif frag.startswith("/"):
            target = doc
            for part in frag[1:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, dict) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    raise InvalidSchemaError(f"dangling reference {ref!r}", ctx.pointer)
        else:
            target = self.anchors.get((uri, frag))
            if target is None:
                raise InvalidSchemaError(f"dangling reference {ref!r} (no anchor {frag!r})", ctx.pointer)
        if not isinstance(target, (dict, bool)):
            raise InvalidSchemaError(f"reference {ref!r} does not point at a schema", ctx.pointer)
        if isinstance(target, dict) and id(target) not in self.ctx:
            # a schema reached through a pointer into a non-schema location: walk it now
            self._walk(target, uri, full, ctx.draft, uri)
        return target, self.context(target) if isinstance(target, dict) else Ctx(uri, full, ctx.draft)
