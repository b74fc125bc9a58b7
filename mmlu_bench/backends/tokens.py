"""Token-level planning shared by the in-process backends (transformers, MLX, llama.cpp).

Turns requests into model input rows exactly as lm-eval 0.4.13 builds them, finds the token
prefix a subject's rows share so it can be computed once, cuts batches, and turns the batches'
log-softmax outputs back into each question's scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ..schema import ChoiceScores, ScoreRequest

Encode = Callable[[str], list[int]]

# Rows sharing fewer tokens than this are run without a prefix cache (not worth the copy).
MIN_SHARED_PREFIX = 32


@dataclass(frozen=True, slots=True)
class Row:
    """One model input and what to read from its logits.

    `reads` pairs a choice index with that choice's continuation tokens; continuation token j
    is read from the logits at position len(tokens) - len(targets) + j.
    """

    qid: str
    tokens: tuple[int, ...]
    reads: tuple[tuple[int, tuple[int, ...]], ...]
    n_tokens: int  # tokens the model reads for this question (all its rows), as lm-eval feeds them


def lm_eval_encoder(tokenizer) -> Encode:
    """A Hugging Face tokenizer's encode as lm-eval 0.4.13's hf model calls it.

    With add_bos_token unset, lm-eval encodes with the tokenizer's own default for special
    tokens: Llama-style tokenizers prepend BOS, GPT-2-style ones add nothing. A text that
    already starts with the BOS string gets no second one.
    """
    bos = tokenizer.bos_token
    bos_text = bos if isinstance(bos, str) and bos else None

    def encode(text: str) -> list[int]:
        if bos_text and text.startswith(bos_text):
            return tokenizer.encode(text, add_special_tokens=False)
        return tokenizer.encode(text)

    return encode


def max_length(setting: Callable[[str], object], tokenizer) -> int:
    """lm-eval's rule: the model config's context size (`setting(name)`), else the
    tokenizer's, else 2048."""
    for name in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = setting(name)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**9 else 2048


def encode_pair(encode: Encode, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's _encode_pair: trailing context spaces move into the continuation, and the
    continuation is what tokenizing context+continuation adds beyond the context's tokens.

    Tokenizing " A" on its own can differ from how it tokenizes after "Answer:" (and BOS is
    added only at the start), so the split is taken from the whole string.
    """
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        context, continuation = context[:-n_spaces], context[-n_spaces:] + continuation
    whole = encode(context + continuation)
    context_enc = encode(context)
    return context_enc, whole[len(context_enc):]


def plan_rows(request: ScoreRequest, encode: Encode, max_length: int) -> list[Row]:
    """One row when the continuations differ only in their last token (" A".." D"; or a chat
    template's "\nA".."\nD", whose newline is shared): the shared tokens are fed once and every
    letter read from the same pass. Else one row per choice, as lm-eval runs them."""
    encode = functools.lru_cache(maxsize=2)(encode)  # the four pairs share one context
    pairs = [encode_pair(encode, request.context, c) for c in request.continuations]
    for ctx, cont in pairs:
        assert ctx and cont, f"{request.qid}: empty context or continuation after tokenizing"
    head = pairs[0][0] + pairs[0][1][:-1]
    if all(ctx + cont[:-1] == head for ctx, cont in pairs):
        # lm-eval feeds (context + continuation)[-(max_length + 1):][:-1]: the context,
        # left-truncated so that context + one token fits.
        tokens = tuple(head[-max_length:])
        return [Row(request.qid, tokens, tuple((i, tuple(c)) for i, (_, c) in enumerate(pairs)),
                    len(tokens))]
    inputs = [tuple((ctx + cont)[-(max_length + 1):][:-1]) for ctx, cont in pairs]
    n_tokens = sum(len(t) for t in inputs)
    return [Row(request.qid, tokens, ((i, tuple(cont)),), n_tokens)
            for i, (tokens, (_, cont)) in enumerate(zip(inputs, pairs, strict=True))]


def common_prefix(rows: Sequence[Row]) -> int:
    """Length of the longest token prefix all rows share, leaving each row at least one token
    of its own (the answer position must be computed in the row's batch)."""
    if not rows:
        return 0
    first = rows[0].tokens
    n = min(len(r.tokens) for r in rows) - 1
    for r in rows[1:]:
        t = r.tokens
        i = 0
        while i < n and t[i] == first[i]:
            i += 1
        n = i
    return max(n, 0)


def batches(rows: Sequence[Row], offset: int, batch_size: int | None,
            token_budget: int, overhead: int) -> list[list[Row]]:
    """Longest rows first (an out-of-memory shows up at once). A batch holds `batch_size` rows;
    with batch_size None, batches are cut to compute the fewest padded tokens beyond the shared
    `offset`, counting `overhead` tokens per forward pass, each batch within `token_budget`.

    Cutting greedily at the budget wastes a quarter of the work on padding when a subject has
    few questions of spread-out lengths (`--limit 10`): a 300-token question padded to 1000.
    """
    ordered = sorted(rows, key=lambda r: -len(r.tokens))
    if batch_size:
        return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]
    widths = [len(r.tokens) - offset for r in ordered]
    # best[i]: cheapest cost of the first i rows; cut[i]: where their last batch starts. A batch
    # [j, i) is padded to widths[j], its first (longest) row.
    best, cut = [0] * (len(ordered) + 1), [0] * (len(ordered) + 1)
    for i in range(1, len(ordered) + 1):
        best[i] = -1
        for j in range(i - 1, -1, -1):
            if j < i - 1 and (i - j) * widths[j] > token_budget:
                break
            cost = best[j] + overhead + (i - j) * widths[j]
            if best[i] < 0 or cost < best[i]:
                best[i], cut[i] = cost, j
    out, i = [], len(ordered)
    while i:
        out.append(ordered[cut[i]:i])
        i = cut[i]
    return out[::-1]


class Collector:
    """Gathers each question's choice log-likelihoods from its rows' log-softmax outputs; a
    question is complete once all of its choices are read (one row, or one row per choice)."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.expected: dict[str, int] = {}
        for row in rows:
            self.expected[row.qid] = self.expected.get(row.qid, 0) + len(row.reads)
        self.pending: dict[str, dict[int, float]] = {}

    def add(self, row: Row, logprobs) -> ChoiceScores | None:
        """Read `row`'s targets from `logprobs` (last positions last); the question's scores
        when this row completes it."""
        got = self.pending.setdefault(row.qid, {})
        for choice, targets in row.reads:
            n = len(targets)
            got[choice] = float(sum(logprobs[-n + j][t] for j, t in enumerate(targets)))
        if len(got) < self.expected[row.qid]:
            return None
        del self.pending[row.qid], self.expected[row.qid]
        return ChoiceScores(row.qid, tuple(got[i] for i in range(len(got))), row.n_tokens)


@dataclass(frozen=True)
class Plan:
    """One subject's work: its shared prefix, the batches to run, how to read them."""

    prefix: tuple[int, ...]
    todo: list[list[Row]]
    skip: frozenset[str]
    collector: Collector


def plan_subject(requests: Sequence[ScoreRequest], skip: frozenset[str], encode: Encode,
                 max_length: int, *, sharing: bool, batch_size: int | None, token_budget: int,
                 overhead: int) -> Plan:
    """Rows, shared prefix and batches for one subject; only batches with a question not in
    `skip` are left to do, so a resumed run computes each question in the same batch."""
    rows = [row for r in requests for row in plan_rows(r, encode, max_length)]
    shared = common_prefix(rows) if sharing else 0
    if rows:
        # Every position a row reads must be computed in its own batch, past the prefix.
        shared = min(shared, min(len(r.tokens) - max(len(t) for _, t in r.reads) for r in rows))
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    cut = batches(rows, shared, batch_size, token_budget, overhead)
    todo = [batch for batch in cut if not all(row.qid in skip for row in batch)]
    prefix = rows[0].tokens[:shared] if rows else ()
    return Plan(prefix, todo, skip, Collector(rows))


def score_stream(groups: Iterable[tuple[Sequence[ScoreRequest], frozenset[str]]],
                 make_plan: Callable[[Sequence[ScoreRequest], frozenset[str]], Plan],
                 run: Callable[[Iterator[Plan]], Iterator[tuple[Plan, list[Row], Sequence]]]
                 ) -> Iterator[list[ChoiceScores]]:
    """Each subject (requests, skip) planned when its turn comes, its batches run by
    `run(plans)` as (plan, batch, log-softmax rows), and the scores of the questions each batch
    completes, skipped ones left out. At the end every question not skipped must be answered."""
    # Only each subject's collector outlives its batches (rows and caches are freed as
    # subjects finish: memory stays flat over a full run); it forgets finished questions.
    checks: list[tuple[Collector, frozenset[str]]] = []

    def planned() -> Iterator[Plan]:
        for requests, skip in groups:
            plan = make_plan(requests, skip)
            checks.append((plan.collector, skip))
            if plan.todo:
                yield plan

    for plan, batch, logprobs in run(planned()):
        done = []
        for row, out in zip(batch, logprobs, strict=True):
            scores = plan.collector.add(row, out)
            if scores is not None and row.qid not in plan.skip:
                done.append(scores)
        if done:
            yield done
    for collector, skip in checks:
        unfinished = set(collector.pending) - skip
        assert not unfinished, f"unfinished questions: {sorted(unfinished)[:3]}"
