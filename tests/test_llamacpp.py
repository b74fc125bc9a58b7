"""The gguf: backend on the real SmolLM2-135M-Instruct Q4_1 GGUF and the real MMLU data."""

from __future__ import annotations

import json
import re
import sys

import pytest

from mmlu_bench import cli, dataset, prompts
from mmlu_bench.backends import tokens as tk
from mmlu_bench.backends.llamacpp import LlamaCppBackend
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import BackendError, ModelError
from mmlu_bench.records import RECORDS, read
from mmlu_bench.tasks.mmlu import MMLU, SUBJECTS

from .conftest import REFERENCE_0SHOT

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("llama_cpp")]
# One thread: llama.cpp's OpenMP threads spin-wait for each other, and on two cores shared with
# other work two threads ran 2-4x slower than one.
THREADS = 1
FEWSHOT_SUBJECTS = "management,world_religions"  # the shortest 5-shot prompts (~270 tokens)
# One to two subjects per category with short prompts: 50 questions at --limit 10 (all 570 take
# ~8 minutes on two cores).
E2E_SUBJECTS = ("abstract_algebra,conceptual_physics,high_school_macroeconomics,"
                "logical_fallacies,management")


def make_backend(path, **settings) -> LlamaCppBackend:
    return LlamaCppBackend(RunConfig.from_spec(f"gguf:{path}", threads=THREADS, **settings))


@pytest.fixture(scope="module")
def backend(gguf_path):
    b = make_backend(gguf_path)
    yield b
    b.close()


@pytest.fixture(scope="module")
def fewshot_requests(mmlu_dir):
    subjects = MMLU().resolve(FEWSHOT_SUBJECTS)
    data = dataset.load(str(mmlu_dir), subjects)
    return [r for s in subjects for r in prompts.build_requests(MMLU(), data.test[s][:3], data, 5)]


def test_missing_garbage_and_truncated_files_are_model_errors(tmp_path, gguf_path):
    with pytest.raises(ModelError, match="no such GGUF file"):
        make_backend(tmp_path / "absent.gguf")
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ModelError, match="not a GGUF file"):
        make_backend(garbage)
    # A real header with the tensors cut off gets past the magic check to llama.cpp itself.
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(gguf_path.read_bytes()[: 2 << 20])
    with pytest.raises(ModelError, match="truncated or corrupt") as e:
        make_backend(truncated)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def hf_side(gguf_path):
    """The hf: backend's encode and max_length for the GGUF, without its weights: the
    tokenizer and config as hf_load.load reads them, lm-eval's BOS rule as HFBackend.encode."""
    transformers = pytest.importorskip("transformers", reason="the hf: extra is not installed")
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = transformers.AutoConfig.from_pretrained(folder, gguf_file=name)
    return tk.lm_eval_encoder(tokenizer), tk.max_length(lambda name: getattr(config, name, None),
                                                        tokenizer)


def test_planned_tokens_equal_the_hf_backend_on_all_570_five_shot_prompts(backend, hf_side,
                                                                          mmlu_dir):
    hf_encode, hf_max = hf_side
    data = dataset.load(str(mmlu_dir), SUBJECTS)
    requests = [r for s in SUBJECTS
                for r in prompts.build_requests(MMLU(), data.test[s][:10], data, 5)]
    assert len(requests) == 570 and backend.tokenizer == "transformers"
    llama_differs = []
    for r in requests:
        ours = tk.plan_rows(r, backend.encode, backend.max_length)
        assert ours == tk.plan_rows(r, hf_encode, hf_max), r.qid
        if tk.plan_rows(r, backend._llama_encode, backend.max_length) != ours:
            llama_differs.append(r.qid)
    # What the test guards against: llama.cpp's own tokenizer makes "\n\n" before a digit one
    # token where transformers makes two ("Answer: A\n\n3 Cl", college_chemistry).
    assert any(q.startswith("college_chemistry/") for q in llama_differs), llama_differs
    print(f"llama.cpp's tokenizer would plan {len(llama_differs)} of 570 prompts differently")


def test_encode_follows_lm_eval_bos_rule_and_special_tokens(backend, hf_side):
    hf_encode, _ = hf_side
    texts = [" A", "A", "Answer: A\n\n3 Cl", "naïve café — 3×4 ≥ 10², 日本語",
             "<|im_start|>user\n", "  two  spaces\n\n\ttab", "x" * 300]
    for text in texts:
        assert backend.encode(text) == hf_encode(text), text[:60]
    # No BOS: SmolLM2's GGUF says tokenizer.ggml.add_bos_token = false. The special-token
    # string is one token, as lm-eval's tokenizer makes it.
    assert backend.encode("A") == [49] and len(backend.encode("<|im_start|>")) == 1


def test_without_transformers_llama_cpp_tokenizes_and_info_says_so(gguf_path, monkeypatch,
                                                                   caplog):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers: ImportError
    b = make_backend(gguf_path)
    try:
        assert b.tokenizer.startswith("llama.cpp (transformers cannot read GGUF files here")
        assert b.info()["tokenizer"] == b.tokenizer
        assert b.encode("Answer: A\n\n3 Cl") == b._llama_encode("Answer: A\n\n3 Cl")
        assert "splits some prompts differently" in caplog.text
    finally:
        b.close()


def test_prefix_cache_reuse_equals_fresh_evaluation(backend, fewshot_requests):
    evaluated = []
    real_eval = backend.llm.eval
    backend.llm.eval = lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))
    try:
        reused = {s.qid: s for batch in backend.score(fewshot_requests) for s in batch}
    finally:
        del backend.llm.eval
    total = sum(len(backend.encode(r.context)) for r in fewshot_requests)
    assert sum(evaluated) < total / 2, "the few-shot prefix was not reused"
    for request in fewshot_requests:
        backend.llm.reset()
        [[fresh]] = backend.score([request])
        assert fresh.qid == request.qid
        for a, b in zip(reused[request.qid].loglikelihoods, fresh.loglikelihoods, strict=True):
            assert a == pytest.approx(b, abs=1e-4)


def test_multi_token_continuations_fall_back_to_one_row_per_choice(backend, fewshot_requests):
    request = fewshot_requests[-1]
    odd = type(request)(request.qid, request.context, (" A", " Bravo charlie", " C", " D"))
    (scores,) = next(iter(backend.score([odd])))
    (plain,) = next(iter(backend.score([request])))
    assert scores.loglikelihoods[0] == pytest.approx(plain.loglikelihoods[0], abs=1e-4)
    assert scores.loglikelihoods[1] < plain.loglikelihoods[1]


def test_prompt_longer_than_ctx_size_asks_for_a_larger_one(gguf_path, fewshot_requests):
    small = make_backend(gguf_path, ctx_size=128)
    try:
        with pytest.raises(BackendError, match="raise --ctx-size"):
            next(iter(small.score(fewshot_requests[:1])))
    finally:
        small.close()


def test_info_names_device_dtype_and_file(backend, gguf_path):
    info = backend.info()
    assert (info["device"], info["dtype"]) == ("cpu", "gguf")
    assert info["model_file"] == gguf_path.name and len(info["model_sha256"]) == 64


def test_cli_run_agrees_with_lm_eval_reference(gguf_path, mmlu_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["run", "--model", f"gguf:{gguf_path}", "--data-dir", str(mmlu_dir),
                     "--subjects", E2E_SUBJECTS, "--limit", "10", "--output", str(out),
                     "--threads", str(THREADS), "--no-progress"])
    assert code == 0
    table = capsys.readouterr().out
    assert re.search(r"^\| +Tasks +\|Version\|Filter\|n-shot\|Metric\|", table, re.M)
    assert re.search(r"\|  - abstract_algebra +\| +1\|none +\| +0\|acc +\|", table)
    _, records, footer = read(out / RECORDS)
    ours = {r.qid: r for r in records}
    ref = [r for r in map(json.loads, REFERENCE_0SHOT.read_text().splitlines())
           if r["subject"] in E2E_SUBJECTS.split(",")]
    assert len(ours) == len(ref) == 50 and footer is not None
    agree = diff = 0.0
    for r in ref:
        mine = ours[f"{r['subject']}/{r['doc_id']}"]
        agree += mine.pred == r["pred"]
        diff = max(diff, *(abs(a - b) for a, b in zip(mine.loglikelihoods,
                                                      r["loglikelihoods"], strict=True)))
    print(f"agreement {agree / len(ref):.1%}, max |ll diff| {diff:.3f}")
    assert agree / len(ref) >= 0.95


def test_a_resume_with_another_tokenizer_is_refused(tmp_path, mmlu_dir):
    from mmlu_bench import backends, runner
    from mmlu_bench.errors import UserError
    from mmlu_bench.records import RecordWriter

    keys = backends.spec("gguf").resume_keys  # the tokenizer is one of them
    config = RunConfig.from_spec("gguf:model.gguf", data_dir=str(mmlu_dir), subjects="anatomy",
                                 limit=1, output=str(tmp_path))
    plan = runner.plan(config)
    info = {"device": "cpu", "dtype": "gguf", "tokenizer": "transformers"}
    RecordWriter(tmp_path / RECORDS, runner.make_header(config, plan, info)).close()
    fallback = {**info, "tokenizer": "llama.cpp (transformers cannot read GGUF files here: ...)"}
    with pytest.raises(UserError, match="backend_info.tokenizer: recorded \"transformers\""):
        runner.resume_check(tmp_path / RECORDS, runner.make_header(config, plan, fallback), keys)
    assert runner.resume_check(tmp_path / RECORDS, runner.make_header(config, plan, info), keys)
