"""The vocabulary as a byte trie in flat arrays, numbered in depth-first preorder.

Tokens are sorted by their bytes; because nodes are numbered in preorder, the
tokens below any node form one contiguous slice of that sorted order
(``sub_lo[node]:sub_hi[node]``), so a whole subtree is accepted or rejected at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit


@dataclass(frozen=True, eq=False)
class TokenTrie:
    child_ptr: np.ndarray  # int32 [n_nodes + 1]: children of node i are child_ptr[i]:child_ptr[i+1]
    child_byte: np.ndarray  # int32 [n_nodes - 1]
    child_node: np.ndarray  # int32 [n_nodes - 1]
    tok_lo: np.ndarray  # int32 [n_nodes]: tokens ending at node i are sorted_ids[tok_lo[i]:tok_hi[i]]
    tok_hi: np.ndarray  # int32 [n_nodes]
    sub_hi: np.ndarray  # int32 [n_nodes]: tokens at or below node i are sorted_ids[tok_lo[i]:sub_hi[i]]
    sorted_ids: np.ndarray  # int32 [n_tokens] token ids in byte order
    depth: np.ndarray  # int32 [n_nodes]
    parent: np.ndarray  # int32 [n_nodes]: -1 at the root
    token_node: np.ndarray  # int32 [n_tokens]: the node where the token at sorted position k ends
    flat: np.ndarray  # uint8: the bytes of all tokens, in sorted order
    offs: np.ndarray  # int64 [n_tokens + 1]: token at sorted position k is flat[offs[k]:offs[k+1]]
    below: np.ndarray  # uint64 [n_nodes, 4]: the set of bytes read anywhere strictly below node i
    utf8_ok: np.ndarray  # bool [n_nodes]: every path below node i, read from a character boundary, is valid UTF-8
    chars_below: np.ndarray  # int64 [n_nodes]: most characters (bytes that are not 80..BF) on a path below node i

    @property
    def n_nodes(self) -> int:
        return int(self.depth.shape[0])

    @cached_property
    def root_children(self) -> tuple[np.ndarray, np.ndarray]:
        """(first bytes, their nodes): the root's children."""
        lo, hi = int(self.child_ptr[0]), int(self.child_ptr[1])
        return self.child_byte[lo:hi], self.child_node[lo:hi]

    @cached_property
    def longest(self) -> int:
        """The most bytes of any token."""
        return int(self.depth.max())


_cache: dict[str, TokenTrie] = {}
_lock = threading.Lock()


def trie_for(vocab) -> TokenTrie:
    """The trie of a vocabulary (memoised by fingerprint)."""
    key = vocab.fingerprint
    with _lock:
        t = _cache.get(key)
        if t is None:
            t = build_trie(vocab.token_bytes)
            _cache[key] = t
            _warm_up(t, vocab.n_words)
            _lists_cache[key] = TrieLists(t)
    return t


def _warm_up(t: TokenTrie, n_words: int) -> None:
    """Load the compiled trie walks now (about a second, once per process), not in the first mask."""
    from .masks import (
        _CROSS_WHOLE_MIN, _bits_at, _longest_first, _new_facts, _put_bits, _resolve_crossing, _run_chars, _run_from,
        _set_ranges, _walk_run, _walk_trie,
    )

    none = np.zeros(0, dtype=np.int32)
    stack = np.empty(1, dtype=np.int32)
    every_byte = np.ones(256, dtype=np.bool_)
    every_byte.setflags(write=False)
    for frozen in (False, True):  # DFA tables are read-only arrays, a separate numba specialisation
        dead = np.full((1, 256), -1, dtype=np.int32)
        no_accept = np.zeros(1, dtype=bool)
        if frozen:
            dead.setflags(write=False)
            no_accept.setflags(write=False)
        _walk_trie(dead, no_accept, np.int32(0), t.child_ptr, t.child_byte, t.child_node,
                   t.tok_lo, t.tok_hi, t.sorted_ids, n_words, t.sub_hi, t.below, t.utf8_ok, t.chars_below,
                   _new_facts(1), every_byte, stack, stack, stack, stack, stack, stack, stack, stack)
        _resolve_crossing(dead, no_accept, none, none, none, none, t.child_ptr, t.child_byte, t.child_node,
                          t.tok_lo, t.tok_hi, t.sub_hi, t.sorted_ids, t.depth, t.flat, t.offs, n_words,
                          t.below, t.utf8_ok, t.chars_below, _new_facts(1), _CROSS_WHOLE_MIN,
                          stack, stack, stack, stack, stack, stack, stack)
        _run_from(dead, np.int32(0), t.chars_below, _new_facts(1))
        _walk_run(dead, no_accept, np.int32(0), none, t.flat, t.offs, t.sorted_ids,
                  _bits_at(none, t.sorted_ids, n_words), t.parent, t.token_node, t.sub_hi,
                  stack, stack, stack, stack, stack, stack, stack)
    _set_ranges(np.zeros(n_words, dtype=np.uint32), t.sorted_ids, np.zeros((0, 2), dtype=np.int64))
    for value in (False, True):
        _put_bits(np.zeros(n_words, dtype=np.uint32), none, t.sorted_ids, value)
    _longest_first(_run_chars(t.flat, t.offs[:1], np.uint64(0), np.uint64(0), True), np.zeros(1, dtype=np.int64))


def build_trie(token_bytes) -> TokenTrie:
    items = sorted((b, i) for i, b in enumerate(token_bytes) if b)
    sorted_ids = np.fromiter((i for _, i in items), dtype=np.int32, count=len(items))
    # Preorder nodes: walk sorted tokens, a node per new prefix.
    parent = [-1]
    pbyte = [-1]
    depth = [0]
    tok_start = [0]
    path = [0]  # node ids along the current token's prefix
    prev = b""
    node_of_token = np.zeros(len(items), dtype=np.int64)
    for k, (tb, _) in enumerate(items):
        lcp = 0
        m = min(len(prev), len(tb))
        while lcp < m and prev[lcp] == tb[lcp]:
            lcp += 1
        del path[lcp + 1 :]
        for d in range(lcp, len(tb)):
            nid = len(parent)
            parent.append(path[-1])
            pbyte.append(tb[d])
            depth.append(d + 1)
            tok_start.append(k)
            path.append(nid)
        node_of_token[k] = path[len(tb)]
        prev = tb
    n = len(parent)
    parent_a = np.asarray(parent, dtype=np.int64)
    # children in preorder: sorted by parent, then by node id (which is byte order)
    order = np.argsort(parent_a[1:], kind="stable") + 1
    counts = np.bincount(parent_a[1:], minlength=n)
    child_ptr = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=child_ptr[1:])
    child_node = order.astype(np.int32)
    child_byte = np.asarray(pbyte, dtype=np.int32)[order]
    # tokens ending at each node: contiguous since sorted and preorder
    tcount = np.bincount(node_of_token, minlength=n)
    tok_lo = np.asarray(tok_start, dtype=np.int32)
    tok_hi = (tok_lo + tcount).astype(np.int32)
    # subtree end: the next node in preorder that is not a descendant starts there.
    sub_hi = np.empty(n, dtype=np.int32)
    depth_a = np.asarray(depth, dtype=np.int32)
    # sub_hi[i] = tok_start of the next node j > i with depth[j] <= depth[i], else len(items)
    stack: list[int] = []
    for j in range(n):
        dj = depth_a[j]
        while stack and depth_a[stack[-1]] >= dj:
            sub_hi[stack.pop()] = tok_start[j]
        stack.append(j)
    for i in stack:
        sub_hi[i] = len(items)
    return TokenTrie(
        child_ptr=child_ptr,
        child_byte=child_byte.astype(np.int32),
        child_node=child_node,
        tok_lo=tok_lo,
        tok_hi=tok_hi,
        sub_hi=sub_hi,
        sorted_ids=sorted_ids,
        depth=depth_a,
        parent=parent_a.astype(np.int32),
        token_node=node_of_token.astype(np.int32),
        flat=np.frombuffer(b"".join(b for b, _ in items), dtype=np.uint8).copy(),
        offs=np.concatenate([[0], np.cumsum([len(b) for b, _ in items])]).astype(np.int64),
        below=_bytes_below(child_ptr, child_node, child_byte, depth_a),
        utf8_ok=_utf8_ok_below(child_ptr, child_byte.astype(np.int32), child_node),
        chars_below=_chars_below(child_ptr, child_byte.astype(np.int32), child_node),
    )


@njit(cache=True)
def _chars_below(child_ptr, child_byte, child_node):
    """Per node, the most character starts (bytes outside 80..BF) on any path below it."""
    n = child_ptr.shape[0] - 1
    out = np.zeros(n, dtype=np.int64)
    for node in range(n - 1, -1, -1):
        best = 0
        for e in range(child_ptr[node], child_ptr[node + 1]):
            b = child_byte[e]
            c = out[child_node[e]] + (0 if 0x80 <= b <= 0xBF else 1)
            if c > best:
                best = c
        out[node] = best
    return out


@njit(cache=True)
def _utf8_step(s, b):
    """UTF-8 validation automaton: 0 boundary; 1-3 continuation bytes still due; 4-7 the
    restricted first continuation after E0, ED, F0, F4 (then 1, 1, 2, 2 more). -1: invalid."""
    if s == 0:
        if b < 0x80:
            return 0
        if 0xC2 <= b <= 0xDF:
            return 1
        if b == 0xE0:
            return 4
        if b == 0xED:
            return 5
        if 0xE1 <= b <= 0xEF:
            return 2
        if b == 0xF0:
            return 6
        if b == 0xF4:
            return 7
        if 0xF1 <= b <= 0xF3:
            return 3
        return -1
    if s <= 3:
        return s - 1 if 0x80 <= b <= 0xBF else -1
    if s == 4:
        return 1 if 0xA0 <= b <= 0xBF else -1
    if s == 5:
        return 1 if 0x80 <= b <= 0x9F else -1
    if s == 6:
        return 2 if 0x90 <= b <= 0xBF else -1
    return 2 if 0x80 <= b <= 0x8F else -1


@njit(cache=True)
def _utf8_ok_below(child_ptr, child_byte, child_node):
    """Per node, whether all byte paths below it are valid UTF-8 (prefixes) from a boundary.

    Children come after their parent in preorder, so one reverse pass sees them first.
    """
    n = child_ptr.shape[0] - 1
    ok = np.ones((n, 8), dtype=np.bool_)
    for node in range(n - 1, -1, -1):
        for s in range(8):
            good = True
            for e in range(child_ptr[node], child_ptr[node + 1]):
                s2 = _utf8_step(s, child_byte[e])
                if s2 < 0 or not ok[child_node[e], s2]:
                    good = False
                    break
            ok[node, s] = good
    return ok[:, 0].copy()


def _bytes_below(child_ptr: np.ndarray, child_node: np.ndarray, child_byte: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Per node, the 256-bit set of bytes on the edges of its subtree (deepest level first)."""
    n = depth.shape[0]
    parent = np.full(n, -1, dtype=np.int64)
    parent[child_node] = np.repeat(np.arange(n, dtype=np.int64), np.diff(child_ptr))
    pbyte = np.zeros(n, dtype=np.int64)
    pbyte[child_node] = child_byte
    below = np.zeros((n, 4), dtype=np.uint64)
    own = np.zeros((n, 4), dtype=np.uint64)  # the edge into each node, as a bit set
    own[np.arange(n), pbyte >> 6] = np.left_shift(np.uint64(1), (pbyte & 63).astype(np.uint64))
    for d in range(int(depth.max()), 0, -1):
        nodes = np.flatnonzero(depth == d)
        np.bitwise_or.at(below, parent[nodes], below[nodes] | own[nodes])
    return below


class TrieLists:
    """The trie's arrays as Python lists, for the pure-Python exact walks (fast scalar access)."""

    def __init__(self, t: TokenTrie) -> None:
        self.child_ptr = t.child_ptr.tolist()
        self.child_byte = t.child_byte.tolist()
        self.child_node = t.child_node.tolist()
        self.tok_lo = t.tok_lo.tolist()
        self.tok_hi = t.tok_hi.tolist()
        self.sorted_ids = t.sorted_ids.tolist()
        self.depth = t.depth.tolist()
        self.sub_hi_np = t.sub_hi.astype(np.int64)
        self.tok_lo_np = t.tok_lo.astype(np.int64)


_lists_cache: dict[str, TrieLists] = {}


def trie_lists(vocab) -> TrieLists:
    key = vocab.fingerprint
    out = _lists_cache.get(key)
    if out is None:
        out = TrieLists(trie_for(vocab))
        with _lock:
            _lists_cache.setdefault(key, out)
    return _lists_cache[key]
