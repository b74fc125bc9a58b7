"""--apply-chat-template: lm-eval 0.4.13's chat prompts byte for byte (fixtures rendered by
lm-eval itself on made-up documents), its continuations, one BOS, the system-role fallback, the
run header and results fields, and real runs on SmolLM2 (hf:, gguf:)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import prompts
from mmlu_bench.backends import chat_template as ct
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError
from mmlu_bench.formats.chat import Chat
from mmlu_bench.schema import Question, TaskData
from mmlu_bench.tasks.mmlu import MMLU

from .conftest import run_header

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "lmeval_prompts.json").read_text())
CHAT_CASES = [c for c in FIXTURES["cases"]
              if c["lmeval_task"] == "mmlu_anatomy" and c["options"]["apply_chat_template"]]
# What transformers passes SmolLM2's template (its tokenizer's special_tokens_map).
SMOLLM2_TOKENS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                  "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"}


def _question(doc: dict, index: int) -> Question:
    return Question(doc["subject"], index, doc["question"], tuple(doc["choices"]), doc["answer"])


def _fixture_requests(case: dict, renderer):
    test = tuple(_question(d, i) for i, d in enumerate(case["test_docs"]))
    dev = tuple(_question(d, i) for i, d in enumerate(case["fewshot_docs"]))
    data = TaskData({"anatomy": test}, {"anatomy": dev}, "fixture")
    fmt = Chat(fewshot_as_multiturn=case["options"]["fewshot_as_multiturn"],
               system_instruction=case["options"]["system_instruction"])
    asked = [test[r["doc_index"]] for r in case["requests"]]
    return fmt.requests(MMLU(), asked, data, case["num_fewshot"], renderer)


def test_the_fixtures_hold_every_chat_case():
    names = {c["case"] for c in CHAT_CASES}
    assert names == {"mmlu_anatomy-0shot-chat-multiturn", "mmlu_anatomy-2shot-chat-multiturn",
                     "mmlu_anatomy-2shot-chat", "mmlu_anatomy-2shot-chat-multiturn-system",
                     "mmlu_anatomy-2shot-chat-system"}


@pytest.mark.parametrize("case", CHAT_CASES, ids=lambda c: c["case"])
def test_contexts_equal_lm_evals_byte_for_byte(case):
    renderer = ct.template_renderer(FIXTURES["chat_template"], SMOLLM2_TOKENS, "SmolLM2")
    requests = _fixture_requests(case, renderer)
    assert len(requests) == len(case["requests"]) == 3
    for req, ref in zip(requests, case["requests"], strict=True):
        assert req.context == ref["context"]
        assert prompts.sha256(req.context) == ref["sha256"]
        # lm-eval drops the target delimiter in chat mode: "A", not " A".
        assert list(req.continuations) == ref["continuations"] == ["A", "B", "C", "D"]
        assert req.messages is None


def test_plain_jinja_fallback_renders_the_same_bytes(monkeypatch):
    case = next(c for c in CHAT_CASES if c["case"] == "mmlu_anatomy-2shot-chat-multiturn-system")
    render = ct._jinja_renderer(FIXTURES["chat_template"], SMOLLM2_TOKENS)
    renderer = ct.ChatRenderer(FIXTURES["chat_template"], render)
    assert [r.context for r in _fixture_requests(case, renderer)] == \
        [r["context"] for r in case["requests"]]


def test_server_requests_carry_the_messages_and_hash_their_json():
    case = next(c for c in CHAT_CASES if c["case"] == "mmlu_anatomy-2shot-chat-multiturn")
    req = _fixture_requests(case, ct.server_renderer())[0]
    roles = [m["role"] for m in req.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert req.messages[2]["content"] in "ABCD" and req.messages[-1]["content"].endswith(
        "Answer:")
    assert req.context == json.dumps(list(req.messages), ensure_ascii=False)


def test_single_turn_joins_the_shots_as_the_plain_prompt_does():
    q = Question("anatomy", 0, "Q?", ("a", "b", "c", "d"), 1)
    shot = Question("anatomy", 1, "S?", ("w", "x", "y", "z"), 2)
    turns = prompts.single_turn(prompts.messages(MMLU(), q, (shot,), "Be brief."))
    assert [t.role for t in turns] == ["system", "user"]
    assert turns[0].content == ("Be brief.\n\nThe following are multiple choice questions (with "
                                "answers) about anatomy.\n\n")
    assert turns[1].content == ("S?\nA. w\nB. x\nC. y\nD. z\nAnswer: C\n\n"
                                "Q?\nA. a\nB. b\nC. c\nD. d\nAnswer:")


def test_maybe_delimit_is_lm_evals():
    assert prompts.maybe_delimit("a", "b", "\n\n") == "a\n\nb"
    assert prompts.maybe_delimit("a ", "b", "\n\n") == "a b"
    assert prompts.maybe_delimit("a", "\nb", "\n\n") == "a\nb"
    assert prompts.maybe_delimit(None, "b", "\n\n") == "b"
    assert prompts.maybe_delimit("a", "", "\n\n") == "a"


REFUSES_SYSTEM = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                  "{{ raise_exception('System role not supported') }}{% endif %}"
                  "<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                  "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.mark.parametrize("jinja_only", [False, True])
def test_a_template_that_refuses_the_system_role_loses_it_as_in_lm_eval(jinja_only):
    if jinja_only:
        renderer = ct.ChatRenderer(REFUSES_SYSTEM, ct.with_system_fallback(
            ct._jinja_renderer(REFUSES_SYSTEM, {})))
    else:
        renderer = ct.template_renderer(REFUSES_SYSTEM, {}, "gemma-like")
    chat = [{"role": "system", "content": "desc"}, {"role": "user", "content": "Q"}]
    assert renderer.render(chat) == "<user>Q<assistant>"


def test_no_template_is_a_clear_error():
    with pytest.raises(ConfigError, match="has no chat template.*--apply-chat-template"):
        ct.template_renderer(None, {}, "model.gguf")

    class NoTemplate:
        chat_template = None

    with pytest.raises(ConfigError, match="no chat template"):
        ct.tokenizer_renderer(NoTemplate(), "some/model")


def test_flags_defaults_and_refusals():
    base = RunConfig.from_spec("fake:x", apply_chat_template=True)
    assert base.format_spec().chat.multiturn is True  # lm-eval's CLI: on with a template
    off = RunConfig.from_spec("fake:x", apply_chat_template=True, fewshot_as_multiturn=False)
    assert off.format_spec().chat.multiturn is False
    assert base.output_dir() != off.output_dir() != RunConfig.from_spec("fake:x").output_dir()
    with pytest.raises(ConfigError, match="--fewshot-as-multiturn needs --apply-chat-template"):
        RunConfig.from_spec("fake:x", fewshot_as_multiturn=True)
    plain = RunConfig.from_spec("fake:x", system_instruction="Be brief.").format_spec()
    assert plain.name == "plain" and "+system:" in plain.prompt_format(MMLU())


def test_one_bos_when_the_rendered_text_starts_with_it():
    """A BOS-adding tokenizer (Llama-style) gives the chat context one BOS, not two, as
    lm-eval's HFLM.tok_encode; a plain context gets the tokenizer's BOS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from mmlu_bench.backends.tokens import lm_eval_encoder

    vocab = {"<s>": 0, "<unk>": 1, "Q": 2, "?": 3, "Answer": 4, ":": 5}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[
        ("<s>", 0)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", unk_token="<unk>")

    encode = lm_eval_encoder(tok)  # what the hf:, gguf: and mlx: backends encode with
    assert encode("Q ? Answer :") == [0, 2, 3, 4, 5]
    assert encode("<s>Q ? Answer :") == [0, 2, 3, 4, 5]


def test_continuations_share_the_newline_and_run_as_one_row():
    """"\\nA".."\\nD" after a generation prompt: the newline is fed once, the four letters are
    read from one pass (tokens.plan_rows), each continuation two tokens as lm-eval splits it."""
    from mmlu_bench.backends import tokens as tk
    from mmlu_bench.schema import ScoreRequest

    words = {"<ctx>": 7, "\n": 9, "A": 1, "B": 2, "C": 3, "D": 4}

    def encode(text: str) -> list[int]:
        out, i = [], 0
        while i < len(text):
            word = next(w for w in words if text.startswith(w, i))
            out.append(words[word])
            i += len(word)
        return out

    request = ScoreRequest("x/0", "<ctx><ctx>\n", ("A", "B", "C", "D"))
    rows = tk.plan_rows(request, encode, 100)
    assert len(rows) == 1 and rows[0].tokens == (7, 7, 9)
    assert rows[0].reads == ((0, (9, 1)), (1, (9, 2)), (2, (9, 3)), (3, (9, 4)))


def test_results_json_carries_lm_evals_chat_fields(tmp_path):
    from mmlu_bench import report_formats

    header = run_header(backend="hf", limit=1, subjects=("anatomy",),
                        chat={"chat_template": "T", "chat_template_sha": "s",
                              "system_instruction": None, "system_instruction_sha": None,
                              "fewshot_as_multiturn": True})
    from mmlu_bench import summary
    from mmlu_bench.schema import QuestionRecord

    records = [QuestionRecord("anatomy/0", "anatomy", 0, 1, (-2.0, -1.0, -3.0, -4.0), 1, True,
                              "h", 10)]
    s = summary.build(header, records, True)
    out = report_formats.results(header, records, None, s)
    assert {k: out[k] for k in header.chat} == header.chat


# ---------------------------------------------------------------- the real model (slow)

@pytest.fixture(scope="module")
def hf_smollm2(gguf_path):
    from mmlu_bench import backends

    backend = backends.create(RunConfig.from_spec(f"hf:{gguf_path}", progress=False))
    yield backend
    backend.close()


@pytest.mark.slow
def test_gguf_renders_the_same_bytes_as_transformers(hf_smollm2, gguf_path, llama_cpp,
                                                     mmlu_dir):
    from mmlu_bench import backends, dataset

    gguf = backends.create(RunConfig.from_spec(f"gguf:{gguf_path}", threads=1, ctx_size=512))
    try:
        ours, theirs = gguf.chat_renderer(), hf_smollm2.chat_renderer()
        assert ours.template == theirs.template and ours.sha256 == FIXTURES_SHA
        data = dataset.load(str(mmlu_dir), ("anatomy", "marketing"))
        for subject in ("anatomy", "marketing"):
            for multiturn in (True, False):
                fmt = Chat(fewshot_as_multiturn=multiturn, system_instruction="Be exact.")
                test = data.test[subject][:3]
                a = fmt.requests(MMLU(), test, data, 5, ours)
                b = fmt.requests(MMLU(), test, data, 5, theirs)
                assert [r.context for r in a] == [r.context for r in b]
                # one token sequence on both: the template's markers are special tokens
                assert gguf.encode(a[0].context) == hf_smollm2.encode(a[0].context)
    finally:
        gguf.close()


FIXTURES_SHA = "872be49dbb638044ad01b60388f48d469ff2980e5f0dccdc22ec907db54d0788"


@pytest.mark.slow
def test_five_shot_multiturn_keeps_a_long_shared_prefix(hf_smollm2, mmlu_dir):
    from mmlu_bench import dataset

    data = dataset.load(str(mmlu_dir), ("anatomy",))
    requests = Chat().requests(MMLU(), data.test["anatomy"][:4], data, 5,
                               hf_smollm2.chat_renderer())
    plan = hf_smollm2._plan(requests, frozenset())
    assert len(plan.prefix) > 300  # the system turn and the five answered shots
    assert sum(len(b) for b in plan.todo) == 4  # one row per question


@pytest.mark.slow
def test_a_chat_run_records_its_template_and_resumes_to_the_same_records(
        hf_smollm2, gguf_path, mmlu_dir, tmp_path):
    from unittest import mock

    from mmlu_bench import backends, records, runner

    from .conftest import _KeepOpen
    from .test_resume import assert_same_run, keep_lines

    def run(out: Path) -> None:
        config = RunConfig.from_spec(f"hf:{gguf_path}", data_dir=str(mmlu_dir),
                                     subjects="anatomy", limit=4, num_fewshot=2,
                                     apply_chat_template=True, system_instruction="Be exact.",
                                     output=str(out), progress=False)
        with mock.patch.object(backends, "create", return_value=_KeepOpen(hf_smollm2)):
            runner.run(config)

    run(tmp_path / "whole")
    header, recs, _ = records.read(tmp_path / "whole" / records.RECORDS)
    assert header.chat["chat_template_sha"] == FIXTURES_SHA
    assert header.chat["system_instruction"] == "Be exact."
    assert header.chat["fewshot_as_multiturn"] is True
    assert header.prompt_format.endswith(f"+chat:{FIXTURES_SHA[:16]}+multiturn+system:"
                                            f"{prompts.sha256('Be exact.')[:16]}")
    assert len(recs) == 4 and all(None not in r.loglikelihoods for r in recs)
    results = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert results["chat_template_sha"] == FIXTURES_SHA
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / records.RECORDS).write_bytes(
        (tmp_path / "whole" / records.RECORDS).read_bytes())
    keep_lines(tmp_path / "cut" / records.RECORDS, 1 + 2)
    run(tmp_path / "cut")
    assert_same_run(tmp_path / "whole", tmp_path / "cut")


@pytest.mark.slow
def test_openai_chat_endpoint_agrees_with_gguf(gguf_path, llama_cpp, mmlu_dir, tmp_path):
    """openai: sends the messages to llama-cpp-python's /chat/completions (the server renders
    the GGUF's template) and reads "A".."D" from the first assistant token; gguf: renders the
    same template itself and scores "\\nA".."\\nD". The newline's term is the same for every
    letter, so the letters' differences and the predictions agree."""
    from mmlu_bench import records, runner

    from .servers import LlamaCppServer

    def run(model: str, out: str, **extra) -> list:
        config = RunConfig.from_spec(model, data_dir=str(mmlu_dir), subjects="anatomy",
                                     limit=3, apply_chat_template=True, output=str(tmp_path / out),
                                     progress=False, **extra)
        runner.run(config)
        return records.read(tmp_path / out / records.RECORDS)

    server = LlamaCppServer(gguf_path, tmp_path / "server.log")
    try:
        header, served, _ = run(f"openai:{server.base}", "openai",
                                model_name=LlamaCppServer.MODEL_ID, concurrency=1)
    finally:
        server.stop()
    _, local, _ = run(f"gguf:{gguf_path}", "gguf", threads=1, ctx_size=512)
    assert header.prompt_format.endswith("+chat:server+multiturn")
    assert header.chat["chat_template"] == "" and header.chat["chat_template_sha"] is None
    assert [r.pred for r in served] == [r.pred for r in local]
    for a, b in zip(served, local, strict=True):
        assert a.prompt_sha256 != b.prompt_sha256  # the messages' JSON vs the rendered text
        assert None not in a.loglikelihoods
        rel_a = [x - a.loglikelihoods[0] for x in a.loglikelihoods]
        rel_b = [x - b.loglikelihoods[0] for x in b.loglikelihoods]
        assert rel_a == pytest.approx(rel_b, abs=2e-3)


def test_ollama_sends_the_messages_to_api_chat_and_reads_the_bare_letters(tmp_path,
                                                                         monkeypatch):
    """ollama: with --apply-chat-template: /api/chat with the messages, one token, top 20
    logprobs; the letters are read without a leading space. (The server's numbers here are
    made up: this pins the request and the reading; test_openai_chat_endpoint_agrees_with_gguf
    checks real numbers through the same mixin.)"""
    from mmlu_bench import records, runner

    from .servers import _entry, _Handler, _Threaded

    seen: list[dict] = []

    class Server(_Threaded):
        def __init__(self) -> None:
            class Handler(_Handler):
                def do_GET(self) -> None:
                    if self.path == "/api/version":
                        return self.send(200, {"version": "0.13.0"})
                    self.send(200, {"models": [{"name": "m:latest", "model": "m:latest",
                                                "digest": "d" * 64}]})

                def do_POST(self) -> None:
                    body = json.loads(self.body())
                    seen.append({"path": self.path, **body})
                    alts = [_entry(t, -i - 1.0) for i, t in enumerate(["B", " B", "A", "C"])]
                    self.send(200, {"message": {"role": "assistant", "content": "B"},
                                    "prompt_eval_count": 50, "done": True,
                                    "logprobs": [{**alts[0], "top_logprobs": alts}]})

            self.start(Handler)

    with Server() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        data = tmp_path / "data"
        for split in ("dev", "test"):
            (data / split).mkdir(parents=True)
            rows = "".join(f'"Made-up question {i}?",a,b,c,d,B\n' for i in range(2))
            (data / split / f"anatomy_{split}.csv").write_text(rows)
        config = RunConfig.from_spec("ollama:m", data_dir=str(data), subjects="anatomy",
                                     num_fewshot=1, apply_chat_template=True,
                                     output=str(tmp_path / "run"), progress=False)
        runner.run(config)
    chats = [s for s in seen if s["path"] == "/api/chat"]
    assert len(chats) == 1 + 2  # the start-up probe, then one per question
    asked = chats[1]
    assert asked["options"]["num_predict"] == 1 and asked["logprobs"] is True
    assert asked["top_logprobs"] == 20 and asked["stream"] is False
    assert [m["role"] for m in asked["messages"]] == ["system", "user", "assistant", "user"]
    assert asked["messages"][2]["content"] == "B"
    _, recs, _ = records.read(tmp_path / "run" / records.RECORDS)
    assert [r.loglikelihoods for r in recs] == [(-3.0, -1.0, -4.0, None)] * 2
    assert {r.prompt_sha256 for r in recs} == {
        prompts.sha256(json.dumps(c["messages"], ensure_ascii=False)) for c in chats[1:]}


@pytest.mark.slow
def test_gguf_chat_scores_equal_hf_on_an_f32_copy(hf_smollm2, gguf_path, llama_cpp, mmlu_dir,
                                                  tmp_path):
    """On the Q4_1 file llama.cpp multiplies quantized weights with 8-bit activations while hf:
    dequantizes to fp32, ~0.1-0.2 nats apart per letter (bench/gguf_f32.py); on an F32 copy both
    compute with the same weights, so gguf:'s chat log-likelihoods must equal hf:'s closely."""
    import sys

    from mmlu_bench import backends, runner

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from gguf_f32 import convert

    convert(gguf_path, tmp_path / "f32.gguf")
    config = RunConfig.from_spec(f"gguf:{tmp_path / 'f32.gguf'}", data_dir=str(mmlu_dir),
                                 subjects="anatomy,college_chemistry", limit=3,
                                 apply_chat_template=True, threads=1, ctx_size=1024)
    gguf = backends.create(config)
    try:
        plan = runner.with_requests(runner.plan(config), gguf)
        groups = [(plan.requests[u], frozenset()) for u in plan.subjects]
        ours = {s.qid: s for batch in gguf.score_groups(groups) for s in batch}
        theirs = {s.qid: s for batch in hf_smollm2.score_groups(groups) for s in batch}
    finally:
        gguf.close()
    assert len(ours) == 6 and set(ours) == set(theirs)
    for qid, s in ours.items():
        assert s.loglikelihoods == pytest.approx(theirs[qid].loglikelihoods, abs=0.02), qid
