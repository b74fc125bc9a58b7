"""The transformers backend's speed paths give the same numbers as the plain computation."""

from __future__ import annotations

import pytest

from mmlu_bench import dataset, prompts
from mmlu_bench.backends import tokens as tk
from mmlu_bench.config import RunConfig
from mmlu_bench.schema import ScoreRequest
from mmlu_bench.tasks.mmlu import MMLU


@pytest.fixture(scope="module")
def backend(gguf_path):
    from mmlu_bench.backends.hf import HFBackend

    return HFBackend(RunConfig.from_spec(f"hf:{gguf_path}", dtype="float32", device="cpu"))


@pytest.fixture(scope="module")
def five_shot(mmlu_dir):
    data = dataset.load(str(mmlu_dir), ("college_physics", "marketing"))
    return {s: prompts.build_requests(MMLU(), data.test[s][:4], data, 5) for s in data.test}


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


def test_a_gguf_file_is_parsed_once_and_loads_the_same_weights(backend, gguf_path, monkeypatch):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmlu_bench.backends.hf import HFBackend

    parses = []

    class CountingReader(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            parses.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    again = HFBackend(RunConfig.from_spec(f"hf:{gguf_path}", dtype="float32", device="cpu"))
    assert len(parses) == 1, "config, tokenizer and weights share one parse"
    assert gguf.GGUFReader is CountingReader, "the loader puts gguf back as it found it"
    parses.clear()
    plain = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                 dtype=torch.float32)
    assert len(parses) > 1, "transformers alone parses the file several times"
    theirs = plain.state_dict()
    for name, weight in again.model.state_dict().items():
        assert torch.equal(weight, theirs[name]), name
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    text = "The following are questions.\n\nQuestion: 12 + 30?\n\n42\nAnswer: B"
    assert again.tokenizer.encode(text) == tokenizer.encode(text)
    assert again.tokenizer.get_vocab() == tokenizer.get_vocab()


def test_sdpa_attends_grouped_kv_heads_itself_with_the_same_numbers(backend, five_shot,
                                                                    monkeypatch):
    import os

    import torch

    real = torch.nn.functional.scaled_dot_product_attention
    gqa = []

    def spy(*args, **kwargs):
        gqa.append(bool(kwargs.get("enable_gqa")))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    requests = five_shot["college_physics"]
    grouped = scores(backend, requests)
    assert gqa and all(gqa), "SDPA gets the 3 KV heads, not copies up to 9"
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ, "left as it was found"
    gqa.clear()
    monkeypatch.setenv("TRANSFORMERS_SDPA_FORCE_GQA", "0")  # a user's own setting wins
    copied = scores(backend, requests)
    assert False in gqa, "masked passes copy the heads (the unmasked prefix pass need not)"
    for qid in grouped:
        assert max(abs(a - b) for a, b in zip(grouped[qid], copied[qid], strict=True)) < 1e-5


def test_cpu_lanes_give_the_numbers_of_one_pass_after_another(backend, five_shot, monkeypatch):
    import threading

    assert backend.lanes == 2, "this 2-core machine runs two lanes"
    ran_in, real = set(), backend._forward

    def spy(*args):
        ran_in.add(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(backend, "_forward", spy)
    groups = [(five_shot[s], frozenset()) for s in five_shot]
    laned = {c.qid: c.loglikelihoods for batch in backend.score_groups(groups) for c in batch}
    assert len(ran_in) == 2 and threading.get_ident() not in ran_in
    monkeypatch.setattr(backend, "lanes", 1)
    ran_in.clear()
    one = {c.qid: c.loglikelihoods for batch in backend.score_groups(groups) for c in batch}
    assert ran_in == {threading.get_ident()}
    assert laned.keys() == one.keys() == {r.qid for s in five_shot for r in five_shot[s]}
    for qid in one:
        assert max(abs(a - b) for a, b in zip(laned[qid], one[qid], strict=True)) < 1e-5, qid


def test_a_batch_reads_the_prefix_cache_without_copying_it(backend, five_shot):
    from mmlu_bench.backends.kv_cache import _tensors, expand

    rows = [r for q in five_shot["marketing"]
            for r in tk.plan_rows(q, backend.encode, backend.max_length)]
    shared = tk.common_prefix(rows)
    cache = backend._prefix_cache(rows[0].tokens[:shared])
    before = [t.clone() for t in _tensors(cache)]
    mine = expand(cache, 3)
    theirs = list(_tensors(mine))
    assert len(theirs) == len(before) > 0
    assert all(t.shape[0] == 3 and t.stride(0) == 0 for t in theirs if t.dim() >= 2)
    assert {t.data_ptr() for t in theirs} <= {t.data_ptr() for t in _tensors(cache)}
    backend._forward(rows[:3], shared, cache)
    assert all(a.equal(b) for a, b in zip(_tensors(cache), before, strict=True)), \
        "the shared prefix is unchanged after a batch appended to its cache"
