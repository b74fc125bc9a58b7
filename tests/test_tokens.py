"""Token planning: lm-eval's context/continuation split, shared prefixes, token-budget batches."""

from __future__ import annotations

from mmlu_bench.backends import tokens as tk
from mmlu_bench.schema import ScoreRequest


def char_encode(text: str) -> list[int]:
    """A toy tokenizer: one token per character, with a BOS (0) in front, like Llama's."""
    return [0] + [ord(c) for c in text]


def merge_space_encode(text: str) -> list[int]:
    """A toy tokenizer that glues a space to the next character, as BPE does (" A" is one
    token), so tokenizing the continuation alone would differ from tokenizing it in context."""
    out, i = [], 0
    while i < len(text):
        if text[i] == " " and i + 1 < len(text):
            out.append(1000 + ord(text[i + 1]))
            i += 2
        else:
            out.append(ord(text[i]))
            i += 1
    return out


def test_encode_pair_splits_after_the_whole_string_is_tokenized():
    ctx, cont = tk.encode_pair(merge_space_encode, "Answer:", " A")
    assert ctx == [ord(c) for c in "Answer:"] and cont == [1000 + ord("A")]


def test_trailing_context_space_moves_into_the_continuation():
    ctx, cont = tk.encode_pair(merge_space_encode, "Answer: ", "A")
    assert cont == [1000 + ord("A")]


def test_bos_stays_only_at_the_start():
    ctx, cont = tk.encode_pair(char_encode, "Q?", " B")
    assert ctx == [0, ord("Q"), ord("?")] and cont == [ord(" "), ord("B")]


def test_one_token_letters_make_one_row_per_question():
    request = ScoreRequest("x/0", "Answer:", (" A", " B", " C", " D"))
    (row,) = tk.plan_rows(request, merge_space_encode, max_length=100)
    assert row.tokens == tuple(ord(c) for c in "Answer:")
    assert [choice for choice, _ in row.reads] == [0, 1, 2, 3]
    assert row.n_tokens == 7  # what the model reads: the context, once


def test_multi_token_continuations_make_one_row_per_choice_and_left_truncate():
    # Continuations that differ before their last token (sharing all but the last, like a
    # chat template's "\nA".."\nD", makes one row: test_chat.py).
    request = ScoreRequest("x/0", "abcdef", ("BB", "CC"))
    rows = tk.plan_rows(request, char_encode, max_length=4)
    assert len(rows) == 2
    # context+continuation = [0,a..f,'B','B'] -> last 5 tokens, minus the final one
    assert rows[0].tokens == (ord("d"), ord("e"), ord("f"), ord("B"))
    assert rows[0].reads == ((0, (ord("B"), ord("B"))),)


def test_common_prefix_leaves_each_row_one_token():
    rows = [tk.Row("a", (1, 2, 3, 4), (), 0), tk.Row("b", (1, 2, 3, 5, 6), (), 0)]
    assert tk.common_prefix(rows) == 3
    same = [tk.Row("a", (1, 2, 3), (), 0), tk.Row("b", (1, 2, 3), (), 0)]
    assert tk.common_prefix(same) == 2


def test_batches_sort_longest_first_and_respect_budget_or_count():
    rows = [tk.Row(str(n), tuple(range(n)), (), 0) for n in (3, 10, 5, 8)]
    by_budget = tk.batches(rows, offset=0, batch_size=None, token_budget=20, overhead=48)
    assert [[len(r.tokens) for r in b] for b in by_budget] == [[10, 8], [5, 3]]
    by_count = tk.batches(rows, offset=0, batch_size=3, token_budget=0, overhead=48)
    assert [[len(r.tokens) for r in b] for b in by_count] == [[10, 8, 5], [3]]
    shared = tk.batches(rows, offset=2, batch_size=None, token_budget=16, overhead=48)
    assert [[len(r.tokens) for r in b] for b in shared] == [[10, 8], [5, 3]]


def _cost(batches, offset, overhead):
    return sum(overhead + len(b) * (len(b[0].tokens) - offset) for b in batches)


def test_batches_do_not_pad_a_short_question_to_a_long_one():
    # --limit 10 of a subject: one long passage and nine short questions. Cutting at the
    # budget would pad two short rows to 300 tokens each.
    lengths = (300, 100, 95, 90, 85, 80, 80, 75, 70, 60)
    rows = [tk.Row(str(i), tuple(range(n)), (), 0) for i, n in enumerate(lengths)]
    out = tk.batches(rows, offset=0, batch_size=None, token_budget=1024, overhead=48)
    assert [len(r.tokens) for r in out[0]] == [300]
    assert sorted(r.qid for b in out for r in b) == sorted(r.qid for r in rows)
    assert all(len(b) * len(b[0].tokens) <= 1024 for b in out)
    padding = sum(len(b) * len(b[0].tokens) for b in out) - sum(lengths)
    assert padding < 100
    # Where a pass costs thousands of tokens' worth (a GPU), padding is cheap: one batch.
    gpu = tk.batches(rows, offset=0, batch_size=None, token_budget=32768, overhead=4096)
    assert [len(b) for b in gpu] == [10]


def test_batches_are_the_cheapest_cut_of_the_sorted_rows():
    import itertools
    import random

    rnd = random.Random(7)
    for _ in range(200):
        n, offset = rnd.randint(1, 7), rnd.randint(0, 3)
        rows = [tk.Row(str(i), tuple(range(offset + rnd.randint(1, 40))), (), 0)
                for i in range(n)]
        budget, overhead = rnd.randint(40, 120), rnd.randint(0, 30)
        got = tk.batches(rows, offset, None, budget, overhead)
        ordered = sorted(rows, key=lambda r: -len(r.tokens))
        best = None
        for mask in itertools.product((0, 1), repeat=n - 1):  # every contiguous cut
            cuts = [0] + [i + 1 for i, m in enumerate(mask) if m] + [n]
            parts = [ordered[a:b] for a, b in zip(cuts, cuts[1:])]
            if any(len(p) > 1 and len(p) * (len(p[0].tokens) - offset) > budget for p in parts):
                continue
            cost = _cost(parts, offset, overhead)
            best = cost if best is None else min(best, cost)
        assert _cost(got, offset, overhead) == best
        assert [r for b in got for r in b] == ordered
