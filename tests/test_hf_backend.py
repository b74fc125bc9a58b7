"""The transformers backend's speed paths give the same numbers as the plain computation."""

from __future__ import annotations

import pytest

from mmlu_bench import dataset, prompts
from mmlu_bench.backends import tokens as tk
from mmlu_bench.config import RunConfig
from mmlu_bench.schema import ScoreRequest


@pytest.fixture(scope="module")
def backend(gguf_path):
    from mmlu_bench.backends.hf import HFBackend

    return HFBackend(RunConfig.from_spec(f"hf:{gguf_path}", dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def five_shot(mmlu_dir):
    data = dataset.load(str(mmlu_dir), ("college_physics", "marketing"))
    return {s: prompts.build_requests(data.test[s][:4], data.dev[s], 5) for s in data.test}


def scores(backend, requests):
    return {c.qid: c.loglikelihoods for batch in backend.score(requests) for c in batch}


def plain_loglikelihoods(backend, request: ScoreRequest) -> tuple[float, ...]:
    """The unshared, unbatched computation: full logits of context+continuation, one choice at
    a time, as lm-eval computes them."""
    torch = backend.torch
    out = []
    for continuation in request.continuations:
        ctx, cont = tk.encode_pair(backend.encode, request.context, continuation)
        ids = torch.tensor([ctx + cont[:-1]])
        with torch.inference_mode():
            logprobs = torch.log_softmax(backend.model(input_ids=ids).logits[0].float(), -1)
        out.append(sum(float(logprobs[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)))
    return tuple(out)


def test_prefix_sharing_equals_unshared_computation(backend, five_shot):
    for subject, requests in five_shot.items():
        rows = [r for q in requests for r in tk.plan_rows(q, backend.encode, backend.max_length)]
        assert len(rows) == len(requests), "one row per question: one-token letters"
        assert tk.common_prefix(rows) > 300, "5-shot prompts share the header's tokens"
        shared = scores(backend, requests)
        for request in requests[:2]:
            expected = plain_loglikelihoods(backend, request)
            got = shared[request.qid]
            assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4, subject


def test_batch_size_and_sharing_do_not_change_numbers(backend, five_shot):
    requests = five_shot["marketing"]
    fast = scores(backend, requests)
    backend.prefix_sharing, backend.batch_size = False, 1
    try:
        slow = scores(backend, requests)
    finally:
        backend.prefix_sharing, backend.batch_size = True, None
    assert fast.keys() == slow.keys()
    for qid in fast:
        assert max(abs(a - b) for a, b in zip(fast[qid], slow[qid], strict=True)) < 1e-4, qid


def test_multi_token_continuations_take_the_per_choice_path(backend):
    request = ScoreRequest("anatomy/0", "The capital of France is", (" Paris", " a big city"))
    got = scores(backend, [request])["anatomy/0"]
    expected = plain_loglikelihoods(backend, request)
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-4
