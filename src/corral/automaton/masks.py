"""Token masks: which vocabulary tokens a byte-automaton state allows.

A state's allowed tokens split into two kinds (see ``lexer.py`` for states):
- tokens read entirely inside the terminal in progress: they depend only on the
  terminal's DFA and its state ``q``, not on the grammar around it, so they are
  computed once per (vocabulary, DFA, q) by a trie walk and shared by every
  grammar containing that terminal ("inside" masks);
- tokens that finish the terminal part-way and go on: each such token is filed
  under its *remainders* (the bytes after each point where the terminal could
  end), and at run time only the distinct remainders are checked against the
  parser, usually a few dozen short walks, however many tokens share them.

State masks are then cached per interned state, so a repeated state costs a
dictionary lookup.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

from .dfa import ByteDFA
from .trie import TokenTrie, trie_for


@njit(cache=True, nogil=True)
def _walk_trie(trans, accepting, q0, child_ptr, child_byte, child_node, tok_lo, tok_hi, sub_hi, sorted_ids, n_words):
    """DFS over the trie from DFA state q0; returns inside bits and cross records."""
    inside = np.zeros(n_words, dtype=np.uint32)
    n_nodes = child_ptr.shape[0] - 1
    st_node = np.empty(n_nodes + 1, dtype=np.int32)
    st_q = np.empty(n_nodes + 1, dtype=np.int32)
    st_nacc = np.empty(n_nodes + 1, dtype=np.int32)
    st_depth = np.empty(n_nodes + 1, dtype=np.int32)
    acc_path = np.empty(1024, dtype=np.int32)
    cap = 64
    rec_lo = np.empty(cap, dtype=np.int32)
    rec_hi = np.empty(cap, dtype=np.int32)
    rec_ds = np.empty(cap, dtype=np.int32)
    rec_dn = np.empty(cap, dtype=np.int32)
    dcap = 256
    depths = np.empty(dcap, dtype=np.int32)
    n_rec = 0
    n_dep = 0
    sp = 0
    st_node[0] = 0
    st_q[0] = q0
    st_nacc[0] = 0
    st_depth[0] = 0
    sp = 1
    while sp > 0:
        sp -= 1
        node = st_node[sp]
        q = st_q[sp]
        nacc = st_nacc[sp]
        depth = st_depth[sp]
        if depth >= 1 and accepting[q]:
            if nacc < 1024:
                acc_path[nacc] = depth
                nacc += 1
        for e in range(child_ptr[node], child_ptr[node + 1]):
            ch = child_node[e]
            q2 = trans[q, child_byte[e]]
            if q2 < 0:
                if nacc > 0:
                    if n_rec == cap:
                        cap *= 2
                        rec_lo = _grow(rec_lo, cap)
                        rec_hi = _grow(rec_hi, cap)
                        rec_ds = _grow(rec_ds, cap)
                        rec_dn = _grow(rec_dn, cap)
                    if n_dep + nacc > dcap:
                        while n_dep + nacc > dcap:
                            dcap *= 2
                        depths = _grow(depths, dcap)
                    rec_lo[n_rec] = tok_lo[ch]
                    rec_hi[n_rec] = sub_hi[ch]
                    rec_ds[n_rec] = n_dep
                    rec_dn[n_rec] = nacc
                    for i in range(nacc):
                        depths[n_dep + i] = acc_path[i]
                    n_dep += nacc
                    n_rec += 1
            else:
                for k in range(tok_lo[ch], tok_hi[ch]):
                    tid = sorted_ids[k]
                    inside[tid >> 5] |= np.uint32(1) << np.uint32(tid & 31)
                st_node[sp] = ch
                st_q[sp] = q2
                st_nacc[sp] = nacc
                st_depth[sp] = depth + 1
                sp += 1
    return inside, rec_lo[:n_rec], rec_hi[:n_rec], rec_ds[:n_rec], rec_dn[:n_rec], depths[:n_dep]


@njit(cache=True, nogil=True)
def _grow(a, cap):
    b = np.empty(cap, dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


class RemainderTrie:
    """The distinct remainders of a terminal state's crossing tokens, as a byte trie.

    ``children[n]`` maps a byte to a child node; ``ends[n]`` lists the remainder
    indices that end at node ``n``. Walking it from a parser column prunes every
    remainder that shares a dead prefix at once.
    """

    __slots__ = ("children", "ends", "n_remainders")

    def __init__(self, remainders: list[bytes]) -> None:
        children: list[dict[int, int]] = [{}]
        ends: list[list[int]] = [[]]
        for i, r in enumerate(remainders):
            node = 0
            for b in r:
                nxt = children[node].get(b)
                if nxt is None:
                    nxt = len(children)
                    children[node][b] = nxt
                    children.append({})
                    ends.append([])
                node = nxt
            ends[node].append(i)
        self.children = [tuple(c.items()) for c in children]
        self.ends = [tuple(e) for e in ends]
        self.n_remainders = len(remainders)


@dataclass(frozen=True, eq=False)
class TerminalStateMasks:
    """What one (vocabulary, terminal DFA, state q) contributes to any grammar's masks.

    ``inside``: tokens read entirely inside the terminal (always allowed here).
    Crossing tokens: ``cross_ids[i]`` is allowed iff remainder ``cross_rem[i]`` is
    viable after the terminal ends; the few tokens with several possible ends are
    in ``multi`` as (token id, remainder indices), allowed iff any is viable.
    """

    inside: np.ndarray  # uint32 [n_words]
    remainders: RemainderTrie
    cross_ids: np.ndarray  # int64
    cross_rem: np.ndarray  # int64
    multi: tuple[tuple[int, tuple[int, ...]], ...]
    n_inside: int
    n_cross: int
_tsm_cache: dict[tuple[str, bytes, int], TerminalStateMasks] = {}
_tsm_lock = threading.Lock()


def terminal_state_masks(vocab, dfa: ByteDFA, q: int) -> TerminalStateMasks:
    """Inside mask and cross groups of DFA state ``q`` (memoised across grammars)."""
    key = (vocab.fingerprint, dfa.key(), q)
    out = _tsm_cache.get(key)
    if out is not None:
        return out
    trie = trie_for(vocab)
    out = _compute_tsm(vocab, trie, dfa, q)
    with _tsm_lock:
        _tsm_cache.setdefault(key, out)
    return _tsm_cache[key]


def _compute_tsm(vocab, trie: TokenTrie, dfa: ByteDFA, q: int) -> TerminalStateMasks:
    inside, lo, hi, ds, dn, depths = _walk_trie(
        dfa.trans,
        dfa.accepting,
        np.int32(q),
        trie.child_ptr,
        trie.child_byte,
        trie.child_node,
        trie.tok_lo,
        trie.tok_hi,
        trie.sub_hi,
        trie.sorted_ids,
        vocab.n_words,
    )
    token_bytes = vocab.token_bytes
    sorted_ids = trie.sorted_ids
    rem_index: dict[bytes, int] = {}
    single_ids: list[int] = []
    single_rem: list[int] = []
    multi: list[tuple[int, tuple[int, ...]]] = []
    for r in range(len(lo)):
        cuts = depths[ds[r] : ds[r] + dn[r]].tolist()
        for k in range(lo[r], hi[r]):
            tid = int(sorted_ids[k])
            tb = token_bytes[tid]
            idx = tuple(rem_index.setdefault(tb[c:], len(rem_index)) for c in cuts)
            if len(idx) == 1:
                single_ids.append(tid)
                single_rem.append(idx[0])
            else:
                multi.append((tid, idx))
    inside.setflags(write=False)
    n_inside = int(np.bitwise_count(inside).sum())
    return TerminalStateMasks(
        inside=inside,
        remainders=RemainderTrie(list(rem_index)),
        cross_ids=np.asarray(single_ids, dtype=np.int64),
        cross_rem=np.asarray(single_rem, dtype=np.int64),
        multi=tuple(multi),
        n_inside=n_inside,
        n_cross=len(single_ids) + len(multi),
    )
