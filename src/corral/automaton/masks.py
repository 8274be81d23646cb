"""Token masks: which vocabulary tokens a byte-automaton state allows.

A state's allowed tokens split into two kinds (see ``lexer.py`` for states):

- tokens read entirely inside the terminal in progress: they depend only on the
  terminal's DFA and its state ``q``, not on the grammar around it, so they are
  computed once per (vocabulary, DFA, q) by a trie walk and shared by every
  grammar containing that terminal ("inside" masks);
- tokens that may finish the terminal part-way and go on ("crossing" tokens).
  The walk files them as trie subtrees with the byte offsets ("cuts") where the
  terminal could have ended. At run time, once the parser column after the
  terminal is known, each subtree is walked again (compiled, in one call)
  through the union DFA of the terminals that may come next; only tokens that
  cross a second boundary are checked byte by byte against the full automaton.

``Grammar`` caches the result per (column, terminal, q) and per state, so a
repeated state costs a dictionary lookup.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from numba import njit

from .dfa import ByteDFA
from .memo import BoundedCache
from .trie import TokenTrie, _utf8_step, trie_for


@njit(cache=True, nogil=True)
def _put_record(rec_node, rec_ds, rec_dn, cuts, n_rec, n_cut, node, acc_path, nacc):
    """Append one crossing record (subtree root and its cuts) to preallocated buffers; False when
    they are full (the caller retries with bigger ones). The buffers are never reassigned in a
    walk's loop: numba would then count references to them on every iteration, which tripled
    the cost of small walks."""
    if n_rec >= rec_node.shape[0] or n_cut + nacc > cuts.shape[0]:
        return False
    rec_node[n_rec] = node
    rec_ds[n_rec] = n_cut
    rec_dn[n_rec] = nacc
    for i in range(nacc):
        cuts[n_cut + i] = acc_path[i]
    return True


@njit(cache=True, nogil=True)
def _set_bits(bits, sorted_ids, lo, hi):
    for k in range(lo, hi):
        tid = sorted_ids[k]
        bits[tid >> 5] |= np.uint32(1) << np.uint32(tid & 31)


@njit(cache=True, nogil=True)
def _self_loop(trans, loops, known, q):
    """Fill ``loops[q]`` once: the 256-bit set of bytes that lead from q back to q.

    Per state on demand: a bounded string's DFA has tens of thousands of states, and a walk
    visits a handful of them."""
    if known[q]:
        return
    for b in range(256):
        if trans[q, b] == q:
            loops[q, b >> 6] |= np.uint64(1) << np.uint64(b & 63)
    known[q] = True


@njit(cache=True, nogil=True)
def _continue_all(trans, states, n_states, lo, hi, out):
    """The distinct states reached from ``states[:n_states]`` by every byte in lo..hi, into
    ``out``; -1 when one of those bytes dies."""
    m = 0
    for i in range(n_states):
        s = states[i]
        for c in range(lo, hi + 1):
            t = trans[s, c]
            if t < 0:
                return -1
            seen = False
            for j in range(m):
                if out[j] == t:
                    seen = True
                    break
            if not seen:
                if m == out.shape[0]:
                    return -1  # too many distinct states to be a plain run of characters
                out[m] = t
                m += 1
    return m


# UTF-8 lead bytes (first, last) with the continuation bytes they take (k) and the range of the
# first of those (lo, hi); the others are always 80..BF
_UTF8_LEADS = np.array([
    (0xC2, 0xDF, 1, 0x80, 0xBF),
    (0xE0, 0xE0, 2, 0xA0, 0xBF),
    (0xE1, 0xEC, 2, 0x80, 0xBF),
    (0xED, 0xED, 2, 0x80, 0x9F),
    (0xEE, 0xEF, 2, 0x80, 0xBF),
    (0xF0, 0xF0, 3, 0x90, 0xBF),
    (0xF1, 0xF3, 3, 0x80, 0xBF),
    (0xF4, 0xF4, 3, 0x80, 0x8F),
], dtype=np.int64)


@njit(cache=True, nogil=True)
def _utf8_leads(trans, q, target):
    """Whether every non-ASCII UTF-8 character read from q leads to ``target`` through live
    states (with target == q: q is 'any character here', as inside a JSON string)."""
    a = np.empty(8, dtype=np.int64)
    b = np.empty(8, dtype=np.int64)
    for row in range(_UTF8_LEADS.shape[0]):
        k = _UTF8_LEADS[row, 2]
        for lead in range(_UTF8_LEADS[row, 0], _UTF8_LEADS[row, 1] + 1):
            lo, hi = _UTF8_LEADS[row, 3], _UTF8_LEADS[row, 4]
            s1 = trans[q, lead]
            if s1 < 0:
                return False
            a[0] = s1
            m = 1
            for level in range(k):
                m = _continue_all(trans, a, m, lo, hi, b)
                if m < 0:
                    return False
                a, b = b, a
                lo, hi = 0x80, 0xBF
            for j in range(m):
                if a[j] != target:
                    return False
    return True


@njit(cache=True, nogil=True)
def _stays(below, utf8_ok, node, f, trans, q):
    """Whether every token under ``node`` stays alive in q's loop.

    Either all bytes below loop on q, or the ASCII ones do and the rest are valid UTF-8
    characters that q reads as a whole (``f.closed``: -1 not yet known, 0 no, 1 yes).
    """
    _self_loop(trans, f.loops, f.known, q)
    loops = f.loops
    closed = f.closed
    if below[node, 0] & ~loops[q, 0] or below[node, 1] & ~loops[q, 1]:
        return False
    if not (below[node, 2] & ~loops[q, 2] or below[node, 3] & ~loops[q, 3]):
        return True
    if not utf8_ok[node]:
        return False
    if closed[q] < 0:
        closed[q] = 1 if _utf8_leads(trans, q, q) else 0
    return closed[q] == 1


_UNKNOWN = -2
_ENDLESS = 1 << 30

# Per DFA state, memoised across the walks of one DFA: its self-loop bytes (``loops``, filled
# where ``known``), whether it reads every non-ASCII character as a loop (``closed``), and the
# run of states that read one character per step from it (bounded strings; see ``_chain``).
_Facts = namedtuple("_Facts", ["loops", "known", "closed", "succ", "asc", "u8step", "length", "run_asc", "run_u8"])


def _new_facts(n: int) -> _Facts:
    return _Facts(np.zeros((n, 4), dtype=np.uint64), np.zeros(n, dtype=np.bool_), np.full(n, -1, dtype=np.int8),
                  np.full(n, _UNKNOWN, dtype=np.int64), np.zeros((n, 2), dtype=np.uint64),
                  np.full(n, _UNKNOWN, dtype=np.int64), np.full(n, _UNKNOWN, dtype=np.int64),
                  np.zeros((n, 2), dtype=np.uint64), np.full(n, _UNKNOWN, dtype=np.int64))


@njit(cache=True, nogil=True)
def _content_successor(trans, q):
    """The state most printable ASCII bytes lead to from q (-1 if none): the next position of
    a counted run of characters, as in a string with maxLength."""
    # a majority (the usual case) is found in two passes
    cand = -1
    votes = 0
    for b in range(0x20, 0x7F):
        t = trans[q, b]
        if votes == 0:
            cand, votes = t, 1
        elif t == cand:
            votes += 1
        else:
            votes -= 1
    c = 0
    for b in range(0x20, 0x7F):
        if trans[q, b] == cand:
            c += 1
    if cand >= 0 and 2 * c > 0x7F - 0x20:
        return cand
    best = -1
    best_n = 0
    for b in range(0x20, 0x7F):
        t = trans[q, b]
        if t < 0 or t == best:
            continue
        c = 0
        for b2 in range(0x20, 0x7F):
            if trans[q, b2] == t:
                c += 1
        if c > best_n:
            best, best_n = t, c
    return best


@njit(cache=True, nogil=True)
def _step_info(trans, s, succ, asc):
    """Memoise, for state s, its content successor and the ASCII bytes that lead there."""
    if succ[s] != _UNKNOWN:
        return
    t = _content_successor(trans, s)
    succ[s] = t
    if t < 0:
        return
    for b in range(128):
        if trans[s, b] == t:
            asc[s, b >> 6] |= np.uint64(1) << np.uint64(b & 63)


@njit(cache=True, nogil=True)
def _chain(trans, q, ch, cap):
    """Fill ``ch`` for q: the run q -> succ -> ... of states that read the same ASCII bytes as q
    does, each to the next: its length in characters (endless when it cycles, or when it is
    longer than ``cap``, the most characters any token has) and that byte set.
    Whether each step also reads any non-ASCII character as one step is left unknown: it is
    costly and only needed below non-ASCII bytes."""
    succ, asc = ch.succ, ch.asc
    n = min(trans.shape[0], cap)
    _step_info(trans, q, succ, asc)
    a0 = asc[q, 0]
    a1 = asc[q, 1]
    s = q
    steps = 0
    while steps <= n:
        _step_info(trans, s, succ, asc)
        if succ[s] < 0 or asc[s, 0] != a0 or asc[s, 1] != a1:
            break
        steps += 1
        s = succ[s]
    ch.length[q] = _ENDLESS if steps > n else steps
    ch.run_asc[q, 0] = a0
    ch.run_asc[q, 1] = a1


@njit(cache=True, nogil=True)
def _chain_reads_utf8(trans, q, length, ch):
    """Every step of the run from q (up to ``length`` steps) reads any non-ASCII character as one step."""
    s = q
    for _ in range(length):
        t = ch.succ[s]
        if t < 0:
            return True
        if ch.u8step[s] == _UNKNOWN:
            ch.u8step[s] = 1 if _utf8_leads(trans, s, t) else 0
        if ch.u8step[s] == 0:
            return False
        s = t
    return True


@njit(cache=True, nogil=True)
def _counted(below, utf8_ok, chars_below, node, trans, q, ch):
    """Whether every token under ``node`` is a run of at most as many characters as the run of
    states from q can still read (a bounded string): then all of them stay alive in it."""
    if ch.length[q] == _UNKNOWN:
        _chain(trans, q, ch, chars_below[0] + 1)
    if chars_below[node] > ch.length[q]:
        return False
    if below[node, 0] & ~ch.run_asc[q, 0] or below[node, 1] & ~ch.run_asc[q, 1]:
        return False
    if not (below[node, 2] or below[node, 3]):
        return True
    if not utf8_ok[node]:
        return False
    if ch.run_u8[q] == _UNKNOWN:
        ch.run_u8[q] = 1 if _chain_reads_utf8(trans, q, min(ch.length[q], chars_below[0] + 1), ch) else 0
    return ch.run_u8[q] == 1


@njit(cache=True, nogil=True)
def _walk_trie(trans, accepting, q0, child_ptr, child_byte, child_node, tok_lo, tok_hi, sorted_ids, n_words,
               sub_hi, below, utf8_ok, chars_below, facts, first_bytes, st_node, st_q, st_nacc, st_depth,
               rec_node, rec_ds, rec_dn, cuts):
    """DFS over the trie from DFA state q0 (``facts``: the DFA's ``_Facts``, filled as needed),
    over the tokens whose first byte b has ``first_bytes[b]``. ``st_*``: scratch stacks of at least
    one slot per trie node; ``rec_*``, ``cuts``: scratch space for the records (see ``_scratch``).

    Returns the inside bits and the crossing records: subtree root nodes with
    the cut offsets (depths where the DFA accepted on the way to that node).
    A subtree whose tokens all stay in the loop of one state (string content, an
    identifier's tail) is inside as a whole and is not walked: its tokens never
    leave the terminal, so they add no crossing records.
    """
    inside = np.zeros(n_words, dtype=np.uint32)
    acc_path = np.empty(1024, dtype=np.int32)
    n_rec = 0
    n_cut = 0
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
        if depth >= 1 and accepting[q] and nacc < 1024:
            acc_path[nacc] = depth
            nacc += 1
        for e in range(child_ptr[node], child_ptr[node + 1]):
            if depth == 0 and not first_bytes[child_byte[e]]:
                continue
            ch = child_node[e]
            q2 = trans[q, child_byte[e]]
            if q2 < 0:
                if nacc > 0:
                    if not _put_record(rec_node, rec_ds, rec_dn, cuts, n_rec, n_cut, ch, acc_path, nacc):
                        return inside, rec_node[:0].copy(), rec_ds[:0].copy(), rec_dn[:0].copy(), cuts[:0].copy(), False
                    n_cut += nacc
                    n_rec += 1
            elif _stays(below, utf8_ok, ch, facts, trans, q2) or _counted(
                    below, utf8_ok, chars_below, ch, trans, q2, facts):
                _set_bits(inside, sorted_ids, tok_lo[ch], sub_hi[ch])  # subtrees met here are disjoint
            else:
                _set_bits(inside, sorted_ids, tok_lo[ch], tok_hi[ch])
                st_node[sp] = ch
                st_q[sp] = q2
                st_nacc[sp] = nacc
                st_depth[sp] = depth + 1
                sp += 1
    return inside, rec_node[:n_rec].copy(), rec_ds[:n_rec].copy(), rec_dn[:n_rec].copy(), cuts[:n_cut].copy(), True


@njit(cache=True, nogil=True)
def _run_from(trans, q, chars_below, ch):
    """The counted run of characters that starts at q (see ``_chain``): its length (at most one
    more than the longest token; -1 when q has no content successor), its ASCII byte set, and
    whether each of its steps reads any non-ASCII character as one step."""
    cap = chars_below[0] + 1
    if ch.length[q] == _UNKNOWN:
        _chain(trans, q, ch, cap)
    if ch.succ[q] < 0:
        return -1, np.uint64(0), np.uint64(0), False
    length = min(ch.length[q], cap)
    if ch.run_u8[q] == _UNKNOWN:
        ch.run_u8[q] = 1 if _chain_reads_utf8(trans, q, length, ch) else 0
    return length, ch.run_asc[q, 0], ch.run_asc[q, 1], ch.run_u8[q] == 1


@njit(cache=True, nogil=True)
def _run_chars(flat, offs, asc0, asc1, utf8):
    """Per token (sorted position): its length in characters if every character is one a run
    with ASCII set (asc0, asc1) reads (and, with ``utf8``, any whole non-ASCII character);
    otherwise -1."""
    n = offs.shape[0] - 1
    out = np.empty(n, dtype=np.int32)
    for k in range(n):
        c = 0
        u = 0  # the UTF-8 automaton's state: 0 at a character boundary
        for i in range(offs[k], offs[k + 1]):
            b = flat[i]
            if b < 128:
                word = asc0 if b < 64 else asc1
                if u != 0 or not (word >> np.uint64(b & 63)) & np.uint64(1):
                    c = -1
                    break
            elif not utf8:
                c = -1
                break
            else:
                u = _utf8_step(u, b)
                if u < 0:
                    c = -1
                    break
            if u == 0:
                c += 1
        out[k] = c if u == 0 else -1
    return out


@njit(cache=True, nogil=True)
def _walk_run(trans, accepting, q0, to_read, flat, offs, sorted_ids, inside, parent, token_node, sub_hi,
              rec_node, rec_ds, rec_dn, cuts, path_q, path_acc, path_cut):
    """``_walk_trie``'s result for a state q0 that starts a run of characters.

    ``inside`` comes in holding the tokens made only of the run's characters and no longer
    than it (they stay inside without being read); the tokens at the sorted positions
    ``to_read`` (every other one, in trie order) are read byte by byte from q0, each from
    where it parts from the token read before it (``path_*`` hold the states, the count of
    accepting positions and those positions along that token). Where one dies after the
    terminal could have ended, its record covers the whole subtree that dies there, and the
    tokens of that subtree are skipped. ``rec_*`` (one slot per token) and ``cuts`` (one per
    vocabulary byte) are scratch space: at most one record per token and one cut per byte, so
    nothing grows (growing slowed the loop ten-fold).
    """
    m = to_read.shape[0]
    n_rec = 0
    n_cut = 0
    j = 0
    prev = -1
    known = 0  # path_q[0..known] hold the states along the previous token's bytes
    path_q[0] = q0
    path_acc[0] = 0
    while j < m:
        k = to_read[j]
        base = offs[k]
        n = offs[k + 1] - base
        d = 0
        if prev >= 0:
            pb = offs[prev]
            lim = min(known, n)
            while d < lim and flat[pb + d] == flat[base + d]:
                d += 1
        q = path_q[d]
        nacc = path_acc[d]
        died = -1
        for i in range(d, n):
            q = trans[q, flat[base + i]]
            if q < 0:
                died = i
                break
            if accepting[q]:
                path_cut[nacc] = i + 1
                nacc += 1
            path_q[i + 1] = q
            path_acc[i + 1] = nacc
        known = died if died >= 0 else n
        prev = k
        j += 1
        if died < 0:
            tid = sorted_ids[k]
            inside[tid >> 5] |= np.uint32(1) << np.uint32(tid & 31)
            continue
        # every token below the node of the first died + 1 bytes dies the same way
        node = token_node[k]
        for _ in range(n - died - 1):
            node = parent[node]
        if nacc > 0:
            rec_node[n_rec] = node
            rec_ds[n_rec] = n_cut
            rec_dn[n_rec] = nacc
            n_rec += 1
            for a in range(nacc):
                cuts[n_cut + a] = path_cut[a]
            n_cut += nacc
        hi = sub_hi[node]
        while j < m and to_read[j] < hi:
            j += 1
    return inside, rec_node[:n_rec].copy(), rec_ds[:n_rec].copy(), rec_dn[:n_rec].copy(), cuts[:n_cut].copy()


@njit(cache=True, nogil=True)
def _set_ranges(bits, sorted_ids, ranges):
    """Set the bits of the tokens at sorted positions ``lo <= k < hi`` for each (lo, hi) row."""
    for r in range(ranges.shape[0]):
        _set_bits(bits, sorted_ids, ranges[r, 0], ranges[r, 1])


def set_token_ranges(bits: np.ndarray, vocab, ranges: list) -> None:
    """OR into ``bits`` the tokens at trie positions [lo, hi) for each (lo, hi) in ``ranges``."""
    if ranges:
        _set_ranges(bits, trie_for(vocab).sorted_ids, np.array(ranges, dtype=np.int64))


@njit(cache=True, nogil=True)
def _longest_first(chars, counts):
    """Positions of the tokens with ``chars >= 0``, most characters first, in trie order among
    equals (a counting sort; ``counts[c]``: how many tokens have c characters)."""
    n_c = counts.shape[0]
    start = np.empty(n_c, dtype=np.int64)
    acc = 0
    for c in range(n_c - 1, -1, -1):
        start[c] = acc
        acc += counts[c]
    out = np.empty(acc, dtype=np.int32)
    for k in range(chars.shape[0]):
        c = chars[k]
        if c >= 0:
            out[start[c]] = k
            start[c] += 1
    return out


@njit(cache=True, nogil=True)
def _put_bits(bits, positions, sorted_ids, value):
    """Set (or clear) the bits of the tokens at these sorted (trie-order) positions."""
    for k in positions:
        tid = sorted_ids[k]
        if value:
            bits[tid >> 5] |= np.uint32(1) << np.uint32(tid & 31)
        else:
            bits[tid >> 5] &= ~(np.uint32(1) << np.uint32(tid & 31))


@njit(cache=True, nogil=True)
def _bits_at(positions, sorted_ids, n_words):
    """The bitmask of the tokens at these sorted (trie-order) positions."""
    bits = np.zeros(n_words, dtype=np.uint32)
    _put_bits(bits, positions, sorted_ids, True)
    return bits


@njit(cache=True, nogil=True)
def _resolve_crossing(
    trans, accepting, rec_node, rec_ds, rec_dn, cuts,
    child_ptr, child_byte, child_node, tok_lo, tok_hi, sub_hi, sorted_ids, depth, flat, offs, n_words,
    below, utf8_ok, chars_below, facts, whole_min, st_node, st_q, st_nacc, o_node, o_ds, o_dn, o_cuts,
):
    """Walk each crossing subtree, from each of its cuts, through one next terminal's DFA.

    Sets the bits of tokens that stay inside it. Subtrees where this terminal
    could itself end part-way come back as new records (node, cuts), in the
    same form, for the caller to resolve one parser step further. A subtree of more than
    ``whole_min`` tokens that all stay alive from where its root leads (a loop, or a counted run
    long enough: the next block of a long string) is inside at once, as in ``_walk_trie``. That
    is checked at the subtree roots only, and only for big ones: checks per node, or at every
    root, cost more than they saved.
    ``st_*``, ``o_*``: scratch space, as for ``_walk_trie``; the last value returned is False
    when ``o_*`` were too small.
    """
    bits = np.zeros(n_words, dtype=np.uint32)
    n_out = 0
    n_oc = 0
    acc_path = np.empty(1024, dtype=np.int32)
    for r in range(rec_node.shape[0]):
        root = rec_node[r]
        j = depth[root]
        base = offs[tok_lo[root]]
        for ci in range(rec_ds[r], rec_ds[r] + rec_dn[r]):
            c = cuts[ci]
            # the fixed bytes between the cut and the subtree root
            q = 0
            nacc = 0
            for p in range(base + c, base + j):
                q = trans[q, flat[p]]
                if q < 0:
                    break
                if accepting[q] and nacc < 1024:
                    acc_path[nacc] = p - base + 1
                    nacc += 1
            if q < 0:
                if nacc > 0:
                    if not _put_record(o_node, o_ds, o_dn, o_cuts, n_out, n_oc, root, acc_path, nacc):
                        return bits, o_node[:0].copy(), o_ds[:0].copy(), o_dn[:0].copy(), o_cuts[:0].copy(), False
                    n_oc += nacc
                    n_out += 1
                continue
            if sub_hi[root] - tok_lo[root] > whole_min and (
                    _stays(below, utf8_ok, root, facts, trans, q)
                    or _counted(below, utf8_ok, chars_below, root, trans, q, facts)):
                _set_bits(bits, sorted_ids, tok_lo[root], sub_hi[root])
                continue
            _set_bits(bits, sorted_ids, tok_lo[root], tok_hi[root])
            st_node[0] = root
            st_q[0] = q
            st_nacc[0] = nacc
            sp = 1
            while sp > 0:
                sp -= 1
                node = st_node[sp]
                q = st_q[sp]
                nacc = st_nacc[sp]
                if node != root and accepting[q] and nacc < 1024:
                    acc_path[nacc] = depth[node]
                    nacc += 1
                for e in range(child_ptr[node], child_ptr[node + 1]):
                    ch = child_node[e]
                    q2 = trans[q, child_byte[e]]
                    if q2 < 0:
                        if nacc > 0:
                            if not _put_record(o_node, o_ds, o_dn, o_cuts, n_out, n_oc, ch, acc_path, nacc):
                                return bits, o_node[:0].copy(), o_ds[:0].copy(), o_dn[:0].copy(), o_cuts[:0].copy(), False
                            n_oc += nacc
                            n_out += 1
                    else:
                        _set_bits(bits, sorted_ids, tok_lo[ch], tok_hi[ch])
                        st_node[sp] = ch
                        st_q[sp] = q2
                        st_nacc[sp] = nacc
                        sp += 1
    return bits, o_node[:n_out].copy(), o_ds[:n_out].copy(), o_dn[:n_out].copy(), o_cuts[:n_oc].copy(), True


@dataclass(frozen=True, eq=False)
class TerminalStateMasks:
    """What one (vocabulary, terminal DFA, state q) contributes to any grammar's masks."""

    inside: np.ndarray  # uint32 [n_words]: tokens read entirely inside the terminal
    rec_node: np.ndarray  # int32 [R]: roots of crossing subtrees
    rec_ds: np.ndarray  # int32 [R]: first cut of each record in ``cuts``
    rec_dn: np.ndarray  # int32 [R]: number of cuts of each record
    cuts: np.ndarray  # int32: byte offsets where the terminal could end

    @property
    def has_crossing(self) -> bool:
        return self.rec_node.shape[0] > 0


def _tsm_bytes(m: "TerminalStateMasks") -> int:
    return m.inside.nbytes + m.rec_node.nbytes + m.rec_ds.nbytes + m.rec_dn.nbytes + m.cuts.nbytes


_TSM_CACHE_BYTES = 512 << 20  # terminal-state masks kept across grammars (a schema adds 1-2 MB at 128k tokens)
_tsm_cache: dict[tuple[str, bytes, int], TerminalStateMasks] = BoundedCache(_TSM_CACHE_BYTES, _tsm_bytes)
_tsm_lock = threading.Lock()
_DISK_MIN_SECONDS = 0.002  # only walks slower than this are worth a file
_RESIDUAL_MAX_STATES = 256  # bigger DFAs key their states' masks by (DFA, state), not by residual


def clear_cache(disk: bool = False) -> None:
    """Forget every terminal-state mask and crossing walk, and what was learnt about each DFA
    (in memory; also the masks on disk with ``disk=True``). Tables that depend only on the
    vocabulary (its trie, per character set the tokens' lengths) are kept."""
    with _tsm_lock:
        _tsm_cache.clear()
        _cross_memo.clear()
        _facts.clear()
    if disk:
        import shutil

        shutil.rmtree(_disk_dir(), ignore_errors=True)
        _disk_names.clear()


def _disk_dir() -> Path:
    root = os.environ.get("CORRAL_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "corral")
    return Path(root) / "masks"


def _disk_path(key: tuple[str, bytes, int]) -> Path | str | None:
    env = os.environ
    if env.get("CORRAL_NO_DISK_CACHE"):
        return None
    fp, dkey, q = key
    root = env.get("CORRAL_CACHE")
    base = _disk_base.get(root)
    if base is None:  # string paths: pathlib's joins cost more than a cached file read
        base = _disk_base[root] = str(_disk_dir())
    return f"{base}{os.sep}{fp[:24]}{os.sep}{dkey.hex()}-{q}.bin"


_disk_base: dict[str | None, str] = {}
_disk_names: dict[str, set[str]] = {}  # folder -> names of its files, listed once per process


def _on_disk(path: str) -> bool:
    """Whether the cache file may exist: a set lookup, not a failed open per new state. The
    folder is listed once per process; files other processes write later are not seen (they
    would only have saved a walk)."""
    folder, name = os.path.split(path)
    names = _disk_names.get(folder)
    if names is None:
        try:
            names = set(os.listdir(folder))
        except OSError:
            names = set()
        names = _disk_names.setdefault(folder, names)
    return name in names


def terminal_state_masks(vocab, dfa: ByteDFA, q: int) -> TerminalStateMasks:
    """Inside mask and crossing records of DFA state ``q``.

    Memoised across grammars in memory, and on disk (``$CORRAL_CACHE/masks``,
    default ``~/.cache/corral``) for walks slow enough to be worth it; set
    ``CORRAL_NO_DISK_CACHE=1`` to disable the disk part.
    """
    key = (vocab.fingerprint, dfa.key(), q)
    out = _tsm_cache.get(key)
    if out is not None:
        return out
    # The masks depend only on the language read from q: key the expensive part by it, so that
    # terminals that end alike (every key and string of every schema) share one walk. Hashing
    # that language reads all of the DFA q reaches: in a big DFA (a format under a length
    # bound) that costs more than the sharing saves, and the DFA's own key serves.
    if dfa.n_states > _RESIDUAL_MAX_STATES:
        rkey = key
    else:
        h1, h2 = _residual_hash(dfa.trans, dfa.accepting, np.int32(q))
        rkey = (vocab.fingerprint, np.array([h1, h2], dtype=np.uint64).tobytes(), -1)
    out = _tsm_cache.get(rkey)
    if out is not None:
        _tsm_cache.setdefault(key, out)
        return out
    path = _disk_path(rkey)
    out = _load(path) if path is not None and _on_disk(path) else None
    if out is None:
        trie = trie_for(vocab)
        t0 = time.perf_counter()
        inside, node, ds, dn, cuts = _walk(vocab, trie, dfa, q)
        out = TerminalStateMasks(inside, node, ds, dn, cuts)
        if path is not None and time.perf_counter() - t0 > _DISK_MIN_SECONDS:
            _save(path, out)
    for a in (out.inside, out.rec_node, out.rec_ds, out.rec_dn, out.cuts):
        a.setflags(write=False)
    out = _tsm_cache.setdefault(rkey, out)  # a BoundedCache: its writes hold its own lock
    _tsm_cache.setdefault(key, out)
    return out


def _walk(vocab, trie: TokenTrie, dfa: ByteDFA, q: int, runs: bool = True, refs: bool = True) -> tuple:
    """The inside bits and crossing records of state q: read token by token when q starts a
    long run of characters that most tokens stay inside (a bounded string's content, whose
    every position is a new state); from a reference state's masks when q reads most bytes
    as that state does (see ``_reference_state``); else by the trie walk."""
    facts, lock = _dfa_facts(dfa)
    if int(np.count_nonzero(dfa.trans[q] >= 0)) < min(_RUN_MIN_ASCII, _REF_MIN_LIVE):
        runs = refs = False  # a narrow state: neither shortcut applies, and its walk is quick
    if runs:
        with lock:  # the facts are filled in place, without the GIL
            plan = _run_plan(vocab, trie, dfa, q, facts)
            if plan is not None:
                length, cls = plan
                short, to_read = cls.split(length, trie, vocab.n_words)
                n_tok = trie.offs.shape[0] - 1
                rec_node, rec_ds, rec_dn = _scratch("run_records", n_tok, 3)
                (cuts,) = _scratch("run_cuts", trie.flat.shape[0], 1)
                path = _scratch("run_path", trie.longest + 1, 3)
                return _walk_run(dfa.trans, dfa.accepting, np.int32(q), to_read, trie.flat, trie.offs,
                                 trie.sorted_ids, short.copy(), trie.parent, trie.token_node, trie.sub_hi,
                                 rec_node, rec_ds, rec_dn, cuts, *path)
    ref = _reference_state(dfa.trans, q) if refs else None
    first_bytes = _ALL_BYTES
    if ref is not None:
        r, first_bytes = ref
        base = terminal_state_masks(vocab, dfa, r)  # before taking the lock: r's walk takes it too
    with lock:
        stacks = _scratch("trie_stacks", trie.n_nodes + 1, 4)
        part = _with_record_space(trie, lambda *space: _walk_trie(
            dfa.trans, dfa.accepting, np.int32(q),
            trie.child_ptr, trie.child_byte, trie.child_node, trie.tok_lo, trie.tok_hi, trie.sorted_ids,
            vocab.n_words, trie.sub_hi, trie.below, trie.utf8_ok, trie.chars_below, facts, first_bytes,
            *stacks, *space,
        ))
    return part if ref is None else _patch(trie, base, part, first_bytes)


_ALL_BYTES = np.ones(256, dtype=np.bool_)
_ALL_BYTES.setflags(write=False)
_REF_MIN_LIVE = 64  # a state reading fewer bytes is walked quickly anyway
_REF_MAX_DIFFER = 32  # first bytes read differently from the reference, walked from q itself


def _reference_state(trans: np.ndarray, q: int) -> "tuple[int, np.ndarray] | None":
    """(r, the first bytes q reads differently from r) when the masks of q are best taken from r.

    Inside a string whose continuations are partly spelled out (an object key next to the
    names of known properties, a string that must avoid a few words) each position is a new
    state that reads almost every byte, and its trie walk visits most of the vocabulary. Yet
    most bytes lead where they lead from the plain string state r, which loops on them and
    whose masks every schema shares. After the first byte a token's fate depends only on the
    state reached, so for tokens whose first byte q and r send to the same state the masks of
    q are those of r; only the few other first bytes are walked from q.
    """
    row = trans[q]
    live = row >= 0
    if int(live.sum()) < _REF_MIN_LIVE:
        return None
    r = int(np.bincount(row[live]).argmax())
    if r == q:
        return None  # q loops on most bytes: its own walk skips those subtrees already
    r_row = trans[r]
    if int((r_row == r).sum()) * 2 < int(live.sum()):
        return None  # r must be a loop state, so that its own masks come quickly
    differ = row != r_row
    if int(differ.sum()) > _REF_MAX_DIFFER:
        return None
    differ.setflags(write=False)  # like _ALL_BYTES: one compiled specialisation of the walk
    return r, differ


def _patch(trie: TokenTrie, base: "TerminalStateMasks", part: tuple, differ: np.ndarray) -> tuple:
    """The masks of q: the reference's, with the tokens starting with a ``differ`` byte taken from
    ``part`` (the walk of those tokens from q) instead."""
    inside_d, node_d, ds_d, dn_d, cuts_d = part
    root_bytes, root_nodes = trie.root_children
    redo = root_nodes[differ[root_bytes]]
    drop = np.zeros_like(base.inside)
    _set_ranges(drop, trie.sorted_ids, np.stack([trie.tok_lo[redo], trie.sub_hi[redo]], axis=1).astype(np.int64))
    inside = base.inside & ~drop
    inside |= inside_d
    node = base.rec_node
    keep = ~differ[trie.flat[trie.offs[trie.tok_lo[node]]]] if len(node) else np.zeros(0, dtype=bool)
    dn = base.rec_dn[keep]
    cut_idx = np.repeat(base.rec_ds[keep], dn) + (np.arange(int(dn.sum())) - np.repeat(np.cumsum(dn) - dn, dn))
    cuts = base.cuts[cut_idx]
    ds = (np.cumsum(dn) - dn).astype(np.int32)
    return (
        inside,
        np.concatenate([node[keep], node_d]).astype(np.int32),
        np.concatenate([ds, ds_d + len(cuts)]).astype(np.int32),
        np.concatenate([dn, dn_d]).astype(np.int32),
        np.concatenate([cuts, cuts_d]).astype(np.int32),
    )


def _run_plan(vocab, trie: TokenTrie, dfa: ByteDFA, q: int, facts: _Facts) -> "tuple[int, _RunClass] | None":
    """(run length, character set) when q is worth the token-by-token walk, else None.

    A narrow run (a literal, digits) kills most tokens at once, and a run of a few characters
    leaves almost every token to read: the trie walk is quicker for both, unless the terminal
    may end where the short run ends and read on (see ``_run_ends_open``). From four
    characters on, the run walk was the quicker on every such state met in MaskBench (a
    trie walk there visits every prefix of up to that many characters)."""
    length, asc0, asc1, utf8 = _run_from(dfa.trans, np.int32(q), trie.chars_below, facts)
    if length < 1 or int(asc0).bit_count() + int(asc1).bit_count() < _RUN_MIN_ASCII:
        return None
    if length < _RUN_MIN_LENGTH and not (_RUN_OPEN_END and _run_ends_open(dfa, q, length, facts)):
        return None
    return length, _run_class(vocab, trie, int(asc0), int(asc1), bool(utf8))


def run_successor(dfa: ByteDFA, q: int) -> int:
    """The next state of the broad run of characters that q starts (a bounded string's next
    position), or -1 when q starts none (or loops on itself)."""
    nxt = int(_content_successor(dfa.trans, np.int32(q)))
    if nxt < 0 or nxt == q or int((dfa.trans[q, 0x20:0x7F] == nxt).sum()) < _RUN_MIN_ASCII:
        return -1
    return nxt


def _run_ends_open(dfa: ByteDFA, q: int, length: int, facts: _Facts) -> bool:
    """Whether the terminal may end where the run ends and then go on reading the run's
    characters. Then every longer token of the set crosses there (a block of a long string
    followed by the next block), and a short run's trie walk files a record for each."""
    end = q
    for _ in range(length):
        end = int(facts.succ[end])
        if end < 0:
            return False
    return bool(dfa.accepting[end])


def _dfa_facts(dfa: ByteDFA) -> tuple[_Facts, threading.Lock]:
    with _tsm_lock:
        out = _facts.get(dfa.key())
        if out is None:
            if len(_facts) > 256:
                _facts.clear()
            out = _facts[dfa.key()] = (_new_facts(dfa.trans.shape[0]), threading.Lock())
    return out


_facts: dict[bytes, tuple[_Facts, threading.Lock]] = {}  # per DFA, shared by the walks of its states
_RUN_MIN_LENGTH = 4
_RUN_MIN_ASCII = 64  # of the 95 printable ASCII characters
_RUN_OPEN_END = True  # shorter runs too when the terminal may end at the run's end (see _run_ends_open)


@dataclass(frozen=True, eq=False)
class _RunClass:
    """The vocabulary seen from one run's character set: each token's length in characters
    (-1 if it has a character outside the set), how many tokens are at most k long, and, per
    run length met so far, which tokens a walk takes at once and which it must read."""

    chars: np.ndarray  # int32 [n_tokens], in trie (sorted) order
    at_most: np.ndarray  # int64 [max_chars + 2]: at_most[k] = tokens of the set with <= k characters
    longest_first: np.ndarray  # int32: positions of the tokens of the set, most characters first
    splits: dict = field(default_factory=dict)  # clamped length -> (short-token bits, to_read)

    def _clamp(self, length: int) -> int:
        return min(length, len(self.at_most) - 1)

    def split(self, length: int, trie: TokenTrie, n_words: int) -> tuple[np.ndarray, np.ndarray]:
        """(bits of the tokens of the set no longer than the run, read-only; sorted positions of
        the others). Kept per length: a bounded string's every position asks for the next one,
        so a new length starts from the nearest one kept and changes only the tokens between."""
        length = self._clamp(length)
        out = self.splits.get(length)
        if out is None:
            lf = self.longest_first
            n_long = len(lf) - int(self.at_most[length])
            near = min(self.splits, key=lambda k: abs(k - length), default=None)
            if near is None:
                short = _bits_at(lf[n_long:], trie.sorted_ids, n_words)
            else:
                short = self.splits[near][0].copy()
                n_near = len(lf) - int(self.at_most[near])
                if near > length:  # tokens of (length, near] characters are no longer short
                    _put_bits(short, lf[n_near:n_long], trie.sorted_ids, False)
                else:
                    _put_bits(short, lf[n_long:n_near], trie.sorted_ids, True)
            chars = self.chars
            to_read = np.flatnonzero((chars > length) | (chars < 0)).astype(np.int32)
            short.setflags(write=False)
            out = self.splits.setdefault(length, (short, to_read))
        return out


_run_classes: dict[tuple, _RunClass] = {}


def _run_class(vocab, trie: TokenTrie, asc0: int, asc1: int, utf8: bool) -> _RunClass:
    key = (vocab.fingerprint, asc0, asc1, utf8)
    cls = _run_classes.get(key)
    if cls is None:
        chars = _run_chars(trie.flat, trie.offs, np.uint64(asc0), np.uint64(asc1), utf8)
        counts = np.bincount(chars[chars >= 0], minlength=int(trie.chars_below[0]) + 2)
        cls = _RunClass(chars, np.cumsum(counts), _longest_first(chars, counts))
        with _tsm_lock:
            cls = _run_classes.setdefault(key, cls)
    return cls


@njit(cache=True, nogil=True)
def _residual_hash(trans, accepting, q):
    """A 128-bit hash of the DFA read from state q: its reachable part numbered breadth first.

    Our DFAs are minimal, so equal hashes mean equal languages (up to hash collisions,
    negligible at 128 bits).
    """
    n = trans.shape[0]
    index = np.full(n, -1, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    index[q] = 0
    order[0] = q
    m = 1
    i = 0
    h1 = np.uint64(14695981039346656037)
    h2 = np.uint64(9650029242287828579)
    p1 = np.uint64(1099511628211)
    p2 = np.uint64(6700417)
    while i < m:
        s = order[i]
        i += 1
        v = np.uint64(3 if accepting[s] else 2)
        h1 = (h1 ^ v) * p1
        h2 = (h2 ^ v) * p2 + np.uint64(0x9E3779B97F4A7C15)
        # the row as runs of equal successors: (successor's number, run end) pairs
        b = 0
        while b < 256:
            t = trans[s, b]
            e = b + 1
            while e < 256 and trans[s, e] == t:
                e += 1
            if t >= 0 and index[t] < 0:
                index[t] = m
                order[m] = t
                m += 1
            v = (np.uint64(index[t] + 2) if t >= 0 else np.uint64(1)) | (np.uint64(e) << np.uint64(40))
            h1 = (h1 ^ v) * p1
            h2 = (h2 ^ v) * p2 + np.uint64(0x9E3779B97F4A7C15)
            b = e
    return h1, h2


# On-disk layout: a header of int64 (magic, n_words, records, cuts), then the raw uint32 inside
# mask and the int32 record arrays. A plain read is several times faster than an .npz (zip).
_MAGIC = 0x636F7272616C3031  # "corral01"


def _save(path: Path | str, tsm: TerminalStateMasks) -> None:
    try:
        parent = os.path.dirname(path)
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=parent, suffix=".tmp")
        header = np.array([_MAGIC, tsm.inside.shape[0], tsm.rec_node.shape[0], tsm.cuts.shape[0]], dtype=np.int64)
        with os.fdopen(fd, "wb") as f:
            for a in (header, tsm.inside, tsm.rec_node, tsm.rec_ds, tsm.rec_dn, tsm.cuts):
                f.write(np.ascontiguousarray(a).tobytes())
        os.replace(tmp, path)
        folder, name = os.path.split(path)
        _disk_names.setdefault(folder, set()).add(name)
    except OSError:
        pass  # a cache that cannot be written is only slower


def _load(path: Path | str) -> TerminalStateMasks | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < 32:
        return None
    magic, n_words, n_rec, n_cut = np.frombuffer(data, dtype=np.int64, count=4).tolist()
    if magic != _MAGIC or len(data) != 32 + 4 * (n_words + 3 * n_rec + n_cut):
        return None  # not ours, or cut short: recompute
    arrays = []
    off = 32
    for dtype, n in ((np.uint32, n_words), (np.int32, n_rec), (np.int32, n_rec), (np.int32, n_rec), (np.int32, n_cut)):
        arrays.append(np.frombuffer(data, dtype=dtype, count=n, offset=off))
        off += 4 * n
    inside = arrays[0]
    return TerminalStateMasks(inside, *arrays[1:])


_work = threading.local()


def _scratch(name: str, n: int, k: int) -> tuple[np.ndarray, ...]:
    """``k`` int32 work arrays of at least ``n`` slots, kept per thread and per use and reused
    across calls: allocating megabytes per call (stacks with a slot per trie node) cost more
    than a small walk itself."""
    bufs = getattr(_work, "bufs", None)
    if bufs is None:
        bufs = _work.bufs = {}
    st = bufs.get(name)
    if st is None or st[0].shape[0] < n:
        st = bufs[name] = tuple(np.empty(n, dtype=np.int32) for _ in range(k))
    return st


_RECORDS_INITIAL: int | None = None  # records a fresh thread's buffers hold (None: one per trie node)


def _with_record_space(trie: TokenTrie, walk: Callable[..., tuple]) -> tuple:
    """``walk(rec_node, rec_ds, rec_dn, cuts)`` on this thread's scratch record buffers, grown
    and retried while the walk reports them too small."""
    n = _RECORDS_INITIAL or trie.n_nodes + 1
    while True:
        records = _scratch("records", n, 3)
        *out, ok = walk(*records, *_scratch("record_cuts", 4 * n, 1))
        if ok:
            return tuple(out)
        n = 2 * records[0].shape[0]


def walk_crossing(vocab, dfa: ByteDFA, records: tuple) -> tuple[np.ndarray, tuple]:
    """One parser step of crossing resolution: (bits kept inside ``dfa``, records ending it part-way)."""
    trie: TokenTrie = trie_for(vocab)
    rec_node, rec_ds, rec_dn, cuts = records
    facts, lock = _dfa_facts(dfa)
    with lock:  # the facts are filled in place, without the GIL
        stacks = _scratch("cross_stacks", trie.n_nodes + 1, 3)
        bits, n2, ds2, dn2, c2 = _with_record_space(trie, lambda *space: _resolve_crossing(
            dfa.trans, dfa.accepting, rec_node, rec_ds, rec_dn, cuts,
            trie.child_ptr, trie.child_byte, trie.child_node, trie.tok_lo, trie.tok_hi, trie.sub_hi,
            trie.sorted_ids, trie.depth, trie.flat, trie.offs, vocab.n_words,
            trie.below, trie.utf8_ok, trie.chars_below, facts, _CROSS_WHOLE_MIN, *stacks, *space,
        ))
    return bits, (n2, ds2, dn2, c2)


_CROSS_WHOLE_MIN = 64  # crossing subtrees of more tokens are checked for staying alive whole (see _resolve_crossing)
_CROSS_MEMO_BYTES = 256 << 20  # crossing walks kept across grammars
_cross_memo: dict[tuple[str, bytes, bytes], tuple[np.ndarray, np.ndarray]] = BoundedCache(
    _CROSS_MEMO_BYTES, lambda v: v[0].nbytes + v[1].nbytes)


def record_keys(records: tuple) -> np.ndarray:
    """Crossing records (node, first cut, cut count, cuts) as sorted (node << 20 | cut) keys."""
    node, ds, dn, cuts = records
    # records list their cuts contiguously, so repeating nodes by dn aligns them with cuts
    keys = (np.repeat(node, dn).astype(np.int64) << 20) | cuts.astype(np.int64)
    if len(keys) > 1 and not bool((keys[1:] > keys[:-1]).all()):  # walks mostly file them in order
        keys = np.unique(keys)
    return keys


def walk_crossing_keys(vocab, dfa: ByteDFA, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``walk_crossing`` for records given as sorted (node << 20 | cut) keys, memoised; the
    records that cross again come back as keys too.

    The result depends only on the vocabulary, the terminal and the records, not
    on the parser column, so it is shared by every column and every grammar.
    """
    memo_key = (vocab.fingerprint, dfa.key(), keys.tobytes())
    out = _cross_memo.get(memo_key)
    if out is None:
        k = len(keys)
        records = (
            (keys >> 20).astype(np.int32),
            np.arange(k, dtype=np.int32),
            np.ones(k, dtype=np.int32),
            (keys & 0xFFFFF).astype(np.int32),
        )
        bits, deeper = walk_crossing(vocab, dfa, records)
        bits.setflags(write=False)
        deeper_keys = record_keys(deeper)
        deeper_keys.setflags(write=False)
        out = (bits, deeper_keys)
        _cross_memo[memo_key] = out
    return out
