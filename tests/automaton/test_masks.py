"""Terminal-state masks: the token-by-token walk over runs of characters, and masks taken
from a reference state, must give exactly what the plain trie walk gives, for every state of
terminals with counted and looping runs and of object keys next to spelled-out names."""

from __future__ import annotations

import numpy as np
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corral.automaton import dfa_ops as ops
from corral.automaton import masks as M
from corral.automaton.dfa import ByteDFA
from corral.automaton.regex import regex_to_char_dfa
from corral.automaton.trie import trie_for
from corral.sources.json_schema.strings import StrLang
from corral.vocab import Vocabulary


def _records(walk) -> list:
    _, node, ds, dn, cuts = walk
    return sorted((int(n), tuple(cuts[d:d + k].tolist())) for n, d, k in zip(node, ds, dn))


def _assert_same_walks(vocab, dfa: ByteDFA, counted: str = "runs") -> int:
    """Compare the walks from every state with the plain trie walk; return how many states took
    the ``counted`` shortcut ("runs": the run walk, "refs": a reference state's masks)."""
    trie = trie_for(vocab)
    used = 0
    for q in range(dfa.trans.shape[0]):
        fast = M._walk(vocab, trie, dfa, q)
        slow = M._walk(vocab, trie, dfa, q, runs=False, refs=False)
        assert np.array_equal(fast[0], slow[0]), f"inside bits differ at state {q}"
        assert _records(fast) == _records(slow), f"crossing records differ at state {q}"
        plan = M._run_plan(vocab, trie, dfa, q, M._new_facts(dfa.trans.shape[0]))
        if counted == "runs":
            used += plan is not None
        else:
            used += plan is None and M._reference_state(dfa.trans, q) is not None
    return used


@pytest.fixture(scope="module")
def vocab(smollm_tokenizer):
    return Vocabulary.from_tokenizer(smollm_tokenizer)


@pytest.mark.parametrize("lo,hi", [(0, 20), (5, 60), (50, 64), (3, None), (0, None)])
def test_json_string_lengths(vocab, lo, hi):
    dfa = ops.concat(StrLang.length(lo, hi).to_dfa().to_byte_dfa("json"), ByteDFA.literal(b'"'))
    assert _assert_same_walks(vocab, dfa) > 0


def test_open_ended_short_runs(vocab):
    """A block of a long string (exactly 64 characters, then the next block or the tail): near
    its end, every longer token crosses into what follows. The run walk takes those short runs
    too, and files the same records as the trie walk."""
    block = StrLang.length(64, 64).to_dfa().to_byte_dfa("json")
    trie = trie_for(vocab)
    facts = M._new_facts(block.trans.shape[0])
    short_open = 0
    for q in range(block.trans.shape[0]):
        length = M._run_from(block.trans, np.int32(q), trie.chars_below, facts)[0]
        if 1 <= length < M._RUN_MIN_LENGTH and M._run_plan(vocab, trie, block, q, facts) is not None:
            short_open += 1
    assert short_open >= M._RUN_MIN_LENGTH - 2
    assert _assert_same_walks(vocab, block) > short_open


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lengths=st.lists(st.integers(0, 140), min_size=1, max_size=12))
def test_run_splits_from_nearest_length(vocab, lengths):
    """A run class builds each length's split from the nearest length it holds; in any order of
    lengths, that equals the split computed from scratch."""
    trie = trie_for(vocab)
    base = M._run_class(vocab, trie, *M._run_from(
        regex_to_char_dfa(r"[ -~]{0,200}").to_byte_dfa("utf8").trans, np.int32(0), trie.chars_below,
        M._new_facts(201))[1:3], False)
    cls = M._RunClass(base.chars, base.at_most, base.longest_first)  # nothing kept yet
    for length in lengths:
        short, to_read = cls.split(length, trie, vocab.n_words)
        clamped = min(length, len(cls.at_most) - 1)
        fits = (cls.chars >= 0) & (cls.chars <= clamped)
        expect = M._bits_at(np.flatnonzero(fits).astype(np.int32), trie.sorted_ids, vocab.n_words)
        assert np.array_equal(short, expect)
        assert np.array_equal(to_read, np.flatnonzero(~fits))


@pytest.mark.parametrize("pattern", [r"[^\n]{0,30}\n", r".{10,40}", r"[ -~]{3,50}(x|\.\n)", r"[^<]{1,20}<[a-z]{2,9}"])
def test_broad_regex_runs(vocab, pattern):
    dfa = regex_to_char_dfa(pattern).to_byte_dfa("utf8")
    assert _assert_same_walks(vocab, dfa) > 0


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cls=st.sampled_from([r"[a-z]", r"[ -~]", r"[^\"\\]", r".", r"[a-zA-Z0-9_]", r"[é\u4e00-\u9fff a-c]"]),
    lo=st.integers(0, 12),
    extra=st.integers(0, 30),
    tail=st.sampled_from(["", "!", r"\.", "[0-9]+"]),
)
def test_random_counted_runs(vocab, cls, lo, extra, tail):
    dfa = regex_to_char_dfa(f"{cls}{{{lo},{lo + extra}}}{tail}").to_byte_dfa("utf8")
    _assert_same_walks(vocab, dfa)


_NAMES = ["name", "nickname", "age", "address", "addresses", "naïve", "id", "ids", "\u00e9t\u00e9", "zip code"]


def _key_dfa(names: list[str], others: str) -> ByteDFA:
    """An object key: one of ``names`` (each to its own end), or, with ``others`` "any", any
    other string, or with "none" no other string."""
    quote = ByteDFA.literal(b'"')
    known = [ops.concat(StrLang.literal(n).to_dfa().to_byte_dfa("json"), quote, ByteDFA.literal(b":" + str(i).encode()))
             for i, n in enumerate(names)]
    parts = list(known)
    if others == "any":
        rest = ops.difference(StrLang.any().to_dfa().to_byte_dfa("json"),
                              ops.union(*[StrLang.literal(n).to_dfa().to_byte_dfa("json") for n in names]))
        parts.append(ops.concat(rest, quote, ByteDFA.literal(b":x")))
    return ops.union(*parts)


@pytest.mark.parametrize("others", ["any", "none"])
def test_object_keys_from_reference_state(vocab, others):
    """Keys: "known name" states read most bytes as the plain string state does."""
    used = _assert_same_walks(vocab, _key_dfa(_NAMES, others), counted="refs")
    assert used > 0 if others == "any" else used == 0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.text(alphabet="abné_ \"\\", min_size=1, max_size=6), min_size=1, max_size=6, unique=True))
def test_random_key_sets_from_reference_state(vocab, names):
    _assert_same_walks(vocab, _key_dfa(names, "any"), counted="refs")


def test_walks_grow_full_record_buffers(vocab, monkeypatch):
    """Walks write crossing records into per-thread buffers; when those are too small the walk
    is redone with bigger ones, and the result is the same."""
    dfa = _key_dfa(_NAMES, "any")
    follow = ByteDFA.literal(b'"x"')
    trie = trie_for(vocab)

    def walks():
        out = []
        for q in range(dfa.trans.shape[0]):
            w = M._walk(vocab, trie, dfa, q, runs=False, refs=False)
            crossed = M.walk_crossing(vocab, follow, w[1:]) if len(w[1]) else None
            out.append((w, crossed))
        return out

    expected = walks()
    monkeypatch.setattr(M, "_RECORDS_INITIAL", 1)
    monkeypatch.setattr(M._work, "bufs", {}, raising=False)
    got = walks()
    assert M._work.bufs["records"][0].shape[0] > 1, "the buffers never had to grow"
    assert sum(len(w[1]) for w, _ in expected) > 0
    for (w0, c0), (w1, c1) in zip(expected, got):
        assert np.array_equal(w0[0], w1[0]) and _records(w0) == _records(w1)
        assert (c0 is None) == (c1 is None)
        if c0 is not None:
            assert np.array_equal(c0[0], c1[0])
            assert _records((None, *c0[1])) == _records((None, *c1[1]))


def test_disk_cache_round_trip(vocab, tmp_path, monkeypatch):
    """Masks saved to the disk cache come back equal in a fresh memory cache, without a walk."""
    monkeypatch.setenv("CORRAL_CACHE", str(tmp_path))
    monkeypatch.delenv("CORRAL_NO_DISK_CACHE", raising=False)
    monkeypatch.setattr(M, "_DISK_MIN_SECONDS", 0.0)
    dfa = _key_dfa(_NAMES, "any")
    M.clear_cache()
    first = [M.terminal_state_masks(vocab, dfa, q) for q in range(dfa.n_states)]
    assert list(tmp_path.rglob("*.bin")), "nothing was saved"
    M.clear_cache()

    def no_walk(*args, **kwargs):
        raise AssertionError("walked although the masks were on disk")

    monkeypatch.setattr(M, "_walk", no_walk)
    again = [M.terminal_state_masks(vocab, dfa, q) for q in range(dfa.n_states)]
    for a, b in zip(first, again):
        assert np.array_equal(a.inside, b.inside)
        assert _records((None, a.rec_node, a.rec_ds, a.rec_dn, a.cuts)) == _records((None, b.rec_node, b.rec_ds, b.rec_dn, b.cuts))
    M.clear_cache()


_NAMES = ["a_rather_long_property_name_%d" % i for i in range(6)]


def _compiled_then_no_walks(vocab, monkeypatch, property_schema: dict):
    """A matcher for an object of six such properties, compiled (too big to precompute whole);
    any terminal-state walk after that fails the test."""
    from corral import Grammar
    from corral.automaton import grammar as G

    M.clear_cache()
    g = Grammar.from_json_schema({"type": "object", "properties": {n: property_schema for n in _NAMES}}, vocab)
    assert sum(d.n_states for d in g.ir.terminals) > G._EAGER_STATE_LIMIT

    def no_walk(*args, **kwargs):
        raise AssertionError("a terminal state was walked after compiling")

    monkeypatch.setattr(M, "_walk", no_walk)
    return g.matcher()


def test_terminal_starts_are_walked_at_compile_time(vocab, monkeypatch):
    """A grammar too big to precompute whole still walks each terminal's first states when it
    is compiled, so the step that opens an object (where any key may start) walks nothing."""
    m = _compiled_then_no_walks(vocab, monkeypatch, {"type": "integer"})
    assert m.consume_bytes(b'{"')
    assert m.next_token_mask().any()
    M.clear_cache()


def test_bounded_string_positions_are_walked_at_compile_time(vocab, monkeypatch):
    """Each position of a bounded string is a new state; the first _EAGER_RUN_STEPS of them are
    walked when the grammar is compiled, so a string's first characters walk nothing."""
    from corral.automaton import grammar as G

    m = _compiled_then_no_walks(vocab, monkeypatch, {"type": "string", "maxLength": 300})
    prefix = b'{"%s":"' % _NAMES[0].encode()
    for n in (0, 1, 7, 30, G._EAGER_RUN_STEPS - 2):
        m2 = m.copy()
        assert m2.consume_bytes(prefix + b"x" * n)
        assert m2.next_token_mask().any()
    M.clear_cache()


def test_crossing_sets_are_walked_at_compile_time(vocab, monkeypatch):
    """Whitespace before a word is crossed by thousands of tokens (" x", " foo", ...). Compiling
    a small grammar walks the crossing tokens of every terminal state through every terminal
    that may follow, so that no step pays for them: afterwards each of those walks is a memo
    hit."""
    from corral import Grammar
    from corral.automaton import grammar as G
    from corral.automaton.ir import terminal_follow

    M.clear_cache()
    monkeypatch.setattr(G, "_EAGER_CROSS_DEEPER", 16)  # this vocabulary has few tokens like " x)"
    g = Grammar.from_lark((Path(__file__).resolve().parents[2] / "grammars" / "arithmetic.lark").read_text(), vocab)
    masker, ir = g._masker, g.automaton.ir
    trie = trie_for(vocab)

    def no_walk(*args, **kwargs):
        raise AssertionError("a crossing set was walked after compiling")

    monkeypatch.setattr(M, "walk_crossing", no_walk)
    follow = terminal_follow(ir)
    biggest = second = 0
    for t, dfa in enumerate(ir.terminals):
        for q in range(dfa.n_states):
            tsm = M.terminal_state_masks(vocab, dfa, q)
            if tsm.has_crossing:
                biggest = max(biggest, int((trie.sub_hi[tsm.rec_node] - trie.tok_lo[tsm.rec_node]).sum()))
                for u in follow[t]:
                    _, deeper = M.walk_crossing_keys(vocab, ir.terminals[u], masker._records(t, q, tsm))
                    nodes = deeper >> 20
                    if len(deeper) and (trie.sub_hi[nodes] - trie.tok_lo[nodes]).sum() >= G._EAGER_CROSS_DEEPER:
                        second += 1  # tokens crossing two terminals (" x)", " 1+"): walked one level on
                        for v in follow[u]:
                            M.walk_crossing_keys(vocab, ir.terminals[v], deeper)
    assert biggest > 10_000 and second  # the ignored whitespace, then a name or number
    M.clear_cache()


def _image_crossings_computed_after_compiling(g, ids: list[int], settles: bool = False) -> tuple[int, int]:
    """Walk token ``ids`` one by one, computing masks: (crossing sets of column images that
    ``_term_mask`` read and compiling had not computed, all those it read), distinct ones.
    With ``settles``, the sets read when settling through images instead."""
    view = g._masker._view
    at_compile = set(view._crossings)
    read: set = set()
    real_crossing = view.crossing

    def crossing(column, records, records_id):
        # _term_mask names records by (terminal, state); a settle by their bytes
        if isinstance(records_id, bytes) == settles:
            read.add((column, records_id))
        return real_crossing(column, records, records_id)

    view.crossing = crossing
    m = g.matcher()
    for tid in ids:
        m.next_token_mask()
        assert m.consume_token(tid)
    m.next_token_mask()
    return len(read - at_compile), len(read)


def _walk_to_completion(monkeypatch) -> None:
    """Lift the compile-time walk's time and size bounds, so what it computes does not depend
    on this machine's speed."""
    from corral.automaton import grammar as G

    monkeypatch.setattr(G, "_EAGER_IMAGE_SECONDS", 60.0)
    monkeypatch.setattr(G, "_EAGER_DEEPER_SECONDS", 0.0)  # the second walk only where a test asks for it
    monkeypatch.setattr(G, "_EAGER_IMAGES", 100_000)
    monkeypatch.setattr(G, "_EAGER_IMAGE_CROSSINGS", 1_000_000)


def test_column_images_reached_from_the_start_are_computed_at_compile_time(vocab, smollm_tokenizer, monkeypatch):
    """Compiling reads terminals forward from the first column, one real column per column
    image, and computes the crossing sets of every terminal state on each image. A sentence
    then finds nearly all the crossing sets it reads already there. Without the walk
    (``_EAGER_IMAGES = 0``) it computes every one."""
    from corral import Grammar
    from corral.automaton import grammar as G

    _walk_to_completion(monkeypatch)
    text = (Path(__file__).resolve().parents[2] / "grammars" / "arithmetic.lark").read_text()
    ids = smollm_tokenizer.encode("(x1 + 2) * f(y, 3.5) / (4 - z) ^ 2 + g(-x)", add_special_tokens=False)
    new, read = _image_crossings_computed_after_compiling(Grammar.from_lark(text, vocab), ids)
    assert read >= 20 and new <= read // 10, (new, read)
    monkeypatch.setattr(G, "_EAGER_IMAGES", 0)
    monkeypatch.setattr(G, "_EAGER_INITIAL", False)
    new, read = _image_crossings_computed_after_compiling(Grammar.from_lark(text, vocab), ids)
    assert read >= 20 and new == read


def test_the_image_walk_follows_reads_that_pop_several_levels(vocab, smollm_tokenizer, monkeypatch):
    """In SQL a name that ends a list item (``users`` in ``FROM users``) completes the name,
    the table and the table list at once: three levels. The walk reads real columns, so it
    reaches the images after such reads, and a whole statement finds most of the crossing
    sets it reads computed at compile time. (A walk over cut columns stopped at the first
    such read: every image after ``FROM`` was computed during the statement.)"""
    from corral import Grammar

    _walk_to_completion(monkeypatch)
    text = (Path(__file__).resolve().parents[2] / "grammars" / "sql_select.lark").read_text()
    statement = "SELECT name, email FROM users WHERE age > 30 ORDER BY name ASC LIMIT 10"
    ids = smollm_tokenizer.encode(statement, add_special_tokens=False)
    new, read = _image_crossings_computed_after_compiling(Grammar.from_lark(text, vocab), ids)
    assert read >= 30 and new <= read // 5, (new, read)


def test_a_second_walk_one_link_deeper_reaches_the_contexts_of_nested_lists(vocab, smollm_tokenizer, monkeypatch):
    """After a value inside a list, what may follow depends on where the list began, two or
    three origin links down: one real column per image leaves those contexts to run time. A
    small grammar (JSON) has time for a second walk with one real column per image one link
    deeper, and then a document with nested lists finds more of its settles computed."""
    from corral import Grammar
    from corral.automaton import grammar as G

    _walk_to_completion(monkeypatch)
    text = (Path(__file__).resolve().parents[2] / "grammars" / "json.lark").read_text()
    doc = '{"id": 7, "tags": ["a", "b", "c"], "items": [{"k": 1, "v": [true, null]}, {"k": 2, "v": []}], "ok": false}'
    ids = smollm_tokenizer.encode(doc, add_special_tokens=False)
    without, read = _image_crossings_computed_after_compiling(Grammar.from_lark(text, vocab), ids, True)
    monkeypatch.setattr(G, "_EAGER_DEEPER_SECONDS", 60.0)
    with_it, _ = _image_crossings_computed_after_compiling(Grammar.from_lark(text, vocab), ids, True)
    assert read >= 5 and with_it < without, (with_it, without, read)


@pytest.mark.parametrize("grammar, sentences, switch, settles", [
    ("sql_select", ["SELECT DISTINCT a, f(b) FROM t WHERE (x = 1 OR y < 2) AND z IS NOT NULL"], "_EAGER_UNIONS", False),
    ("arithmetic", ["(x + 1) * (y - 2)", "sqrt(x^2 + y^2) / (2 * a)", "max(a, b, c) + min(d, e) % 7",
                    "-(x - 1) * (x + 1) / (2 * x)"], "_EAGER_SETTLES", True),
])
def test_image_walk_unions_and_settles(vocab, smollm_tokenizer, monkeypatch, grammar, sentences, switch, settles):
    """Text such as ``DISTINCT`` or ``a`` ends several terminals at once (a keyword, a name, a
    qualified name): the column after it is the union of the columns after each, which the
    walk reaches through ``co_accepting``. Records that pop past an image are settled
    through the image of the column the pop leads to, which the walk also computes. Run to
    completion, each leaves fewer sets to compute after compiling than with it turned off."""
    from corral import Grammar
    from corral.automaton import grammar as G

    _walk_to_completion(monkeypatch)
    text = (Path(__file__).resolve().parents[2] / "grammars" / f"{grammar}.lark").read_text()

    def computed_after_compiling() -> tuple[int, int]:
        new = read = 0
        for sentence in sentences:
            ids = smollm_tokenizer.encode(sentence, add_special_tokens=False)
            n, r = _image_crossings_computed_after_compiling(Grammar.from_lark(text, vocab), ids, settles)
            new, read = new + n, read + r
        return new, read

    with_it, read = computed_after_compiling()
    monkeypatch.setattr(G, switch, False)
    without, _ = computed_after_compiling()
    assert read >= 5 and with_it < without, (with_it, without, read)


def test_json_schema_grammars_skip_the_image_walk(vocab, monkeypatch):
    """JSON Schema grammars are compiled per request: their compile time is not spent on images."""
    from corral import Grammar
    from corral.automaton import grammar as G

    monkeypatch.setattr(G, "_EAGER_INITIAL", False)

    g = Grammar.from_json_schema({"type": "object", "properties": {"a": {"type": "integer"}}}, vocab)
    assert not g._masker._view._crossings


def test_tokens_crossing_into_the_next_block_of_a_long_string(vocab):
    """Near the end of a long string's 64-character block every longer token crosses into the
    next block, where big subtrees are taken whole (``_resolve_crossing``): masks there agree
    with reading each token byte by byte through the automaton."""
    from corral import Grammar

    schema = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 300}}, "required": ["s"]}
    M.clear_cache()
    g = Grammar.from_json_schema(schema, vocab)
    for n in (0, 61, 63, 64, 65, 126, 127):
        prefix = b'{"s":"' + b"ab" * (n // 2) + b"c" * (n % 2)
        m = g.matcher()
        assert m.consume_bytes(prefix)
        got = set(m.allowed_token_ids().tolist())
        walk = g.automaton.walk  # byte by byte from the prefix's state: no trie, no crossing records
        want = {i for i, tb in enumerate(vocab.token_bytes) if tb and walk(m.state, tb) >= 0}
        assert got == want, f"{n} characters in: {sorted(got ^ want)[:10]}"


def test_mask_caches_stay_bounded_and_recompute_what_they_forget(vocab, smollm_tokenizer, monkeypatch):
    """Masks per real state and column grow with every new sequence; past their bound the
    oldest are dropped. A walk over more states than the bound keeps the caches within it, and
    walking the same text again (recomputing what was dropped) gives the same masks."""
    from corral import Grammar
    from corral.automaton import grammar as G

    monkeypatch.setattr(G, "_MASK_CACHE_BYTES", 1)  # the floor: 64 entries
    text = (Path(__file__).resolve().parents[2] / "grammars" / "arithmetic.lark").read_text()
    g = Grammar.from_lark(text, vocab)
    sentence = " + ".join(f"f{i}(x{i}, (y{i} - {i}) * z{i})" for i in range(12))
    ids = smollm_tokenizer.encode(sentence, add_special_tokens=False)

    def walk() -> list[np.ndarray]:
        m, seen = g.matcher(), []
        for tid in ids:
            seen.append(m.next_token_mask().copy())
            assert m.consume_token(tid)
        return seen

    first = walk()
    masker = g._masker
    assert len(set(masker._state_masks)) <= 64 < len(ids)
    assert len(masker._term_masks) <= 64
    second = walk()
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    fresh = Grammar.from_lark(text, vocab)  # nothing dropped yet
    m = fresh.matcher()
    for tid, mask in zip(ids, first):
        assert np.array_equal(m.next_token_mask(), mask)
        m.consume_token(tid)


@pytest.mark.parametrize("prefix, depth", [("price * ", 0), ("f(a) - ", 0), ("(x + ", 1), ("((x + ", 2)])
def test_images_keep_the_first_column_so_pops_to_it_are_decided(vocab, smollm_tokenizer, prefix, depth):
    """Nothing lies below the first column, so an image keeps it as it is instead of making it
    opaque. At the top level of an expression, a token such as `` x)`` (a name, then a ``)``
    that would pop past the image) is then refused on the image itself: no record is left
    for the real column. Inside parentheses the image stops one origin link down, as before,
    and such tokens are settled on the real column. The masks equal the oracle's either way."""
    from corral import Grammar

    text = (Path(__file__).resolve().parents[2] / "grammars" / "arithmetic.lark").read_text()
    g = Grammar.from_lark(text, vocab)
    m = g.matcher()
    assert m.consume_tokens(smollm_tokenizer.encode(prefix, add_special_tokens=False)) >= 1
    view = g._masker._view
    left: list[int] = []
    real_crossing = view.crossing

    def crossing(column, records, records_id):
        certain, uncertain = real_crossing(column, records, records_id)
        left.extend(len(rest) for _, rest in uncertain)
        return certain, uncertain

    view.crossing = crossing
    allowed = set(m.allowed_token_ids().tolist())
    if depth == 0:
        assert sum(left) == 0
    else:
        assert sum(left) > 0  # `` x))`` and the like depend on what lies below
    pre = prefix.encode()
    for tid in range(len(vocab.token_bytes)):
        tb = vocab.token_bytes[tid]
        if tb and tb.startswith(b" ") and tb[1:].rstrip(b")").isalpha() and tb.endswith(b")"):
            assert (tid in allowed) == g.is_viable_prefix(pre + tb), tb
