"""--apply-chat-template (and --system-instruction) on the generative formats: lm-eval 0.4.13's
generate_until contexts byte for byte (fixtures rendered by lm-eval itself on made-up
documents), the messages a server is sent, token ids for llama.cpp, the run header and results
fields through a fake run of each combination, and a real SmolLM2 run (hf:, gguf:)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import formats, prompts, tasks
from mmlu_bench.backends import chat_template as ct
from mmlu_bench.backends import fake
from mmlu_bench.cli import main
from mmlu_bench.records import RECORDS, read
from mmlu_bench.schema import Question, TaskData
from mmlu_bench.tasks.mmlu import MMLU
from mmlu_bench.tasks.mmlu_pro import UNITS

from .test_chat import FIXTURES, FIXTURES_SHA, SMOLLM2_TOKENS
from .test_mmlu_pro import write_jsonl

GENERATE_TASKS = {"mmlu_anatomy_generative": "generative",
                  "mmlu_flan_cot_zeroshot_anatomy": "cot", "mmlu_pro_biology": "cot"}
CASES = [c for c in FIXTURES["cases"] if c["lmeval_task"] in GENERATE_TASKS
         and (c["options"]["apply_chat_template"] or c["options"]["system_instruction"])]
SYSTEM = "You are a careful expert."


def settings(options: dict) -> dict:
    """What config.format_spec passes a format for lm-eval's options."""
    out = {"system_instruction": options["system_instruction"]}
    if options["apply_chat_template"]:
        out.update(apply_chat_template=True, fewshot_as_multiturn=options["fewshot_as_multiturn"])
    return out


def fixture_requests(case: dict, renderer, tmp_path: Path):
    """Our requests for the case's documents: (questions, requests)."""
    fmt_name, opts = GENERATE_TASKS[case["lmeval_task"]], settings(case["options"])
    if case["lmeval_task"] == "mmlu_pro_biology":
        write_jsonl(tmp_path / "test.jsonl", case["test_docs"])
        write_jsonl(tmp_path / "validation.jsonl", case["fewshot_docs"])
        task = tasks.get("mmlu_pro", recipe="cot")
        data = task.load(str(tmp_path), UNITS)
        asked = data.test["biology"]
        fmt = formats.get(fmt_name, task="mmlu_pro", **opts)
    else:
        def rows(docs):
            return tuple(Question(d["subject"], i, d["question"], tuple(d["choices"]),
                                  d["answer"]) for i, d in enumerate(docs))
        task, asked = MMLU(), rows(case["test_docs"])
        data = TaskData({"anatomy": asked}, {"anatomy": rows(case["fewshot_docs"])}, "fixture")
        fmt = formats.get(fmt_name, task="mmlu", **opts)
    return fmt, fmt.requests(task, asked, data, case["num_fewshot"], renderer)


def test_the_fixtures_hold_the_generative_chat_cases():
    assert {c["case"] for c in CASES} == {
        "mmlu_anatomy_generative-2shot-chat-multiturn", "mmlu_anatomy_generative-2shot-chat",
        "mmlu_anatomy_generative-2shot-chat-multiturn-system",
        "mmlu_anatomy_generative-2shot-plain-system",
        "mmlu_flan_cot_zeroshot_anatomy-0shot-chat-multiturn-system",
        "mmlu_pro_biology-2shot-chat-multiturn", "mmlu_pro_biology-2shot-chat-system"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["case"])
def test_contexts_equal_lm_evals_byte_for_byte(case, tmp_path):
    renderer = ct.template_renderer(FIXTURES["chat_template"], SMOLLM2_TOKENS, "SmolLM2")
    fmt, made = fixture_requests(case, renderer, tmp_path)
    assert fmt.needs_renderer == case["options"]["apply_chat_template"]
    assert len(made) == len(case["requests"]) == 3
    for got, want in zip(made, case["requests"], strict=True):
        assert got.context == want["context"]
        assert prompts.sha256(got.context) == want["sha256"]
        # the task's stop strings and max_gen_toks, as in plain mode: no gen_prefix here
        assert list(got.until) == want["gen_kwargs"]["until"]
        assert got.max_tokens == want["gen_kwargs"].get("max_gen_toks", 256)
        assert got.messages is None  # the rendered text is the prompt


def test_a_server_is_sent_lm_evals_messages(tmp_path):
    case = next(c for c in CASES if c["case"] == "mmlu_pro_biology-2shot-chat-multiturn")
    _, made = fixture_requests(case, ct.server_renderer(), tmp_path)
    r = made[0]
    assert [m["role"] for m in r.messages] == ["system", "user", "assistant", "user",
                                               "assistant", "user"]
    # the assistant turns hold the worked answers, without the "A: Let's think..." prefix
    assert r.messages[2]["content"] == "Fact 1 about biology settles it. The answer is (D)."
    assert r.messages[-1]["content"].endswith("Answer: Let's think step by step.")
    assert r.context == json.dumps(list(r.messages), ensure_ascii=False)


def test_simple_evals_is_a_chat_either_way():
    q = Question("astronomy", 0, "Which planet is red?", ("Venus", "Mars", "Jupiter", "Saturn"), 1)
    no_data = TaskData({}, {}, "")
    (plain,) = formats.get("simple-evals").requests(MMLU(), [q], no_data, 0)
    assert [m["role"] for m in plain.messages] == ["user"]
    chat = formats.get("simple-evals", apply_chat_template=True, system_instruction="Be brief.")
    (r,) = chat.requests(MMLU(), [q], no_data, 0, ct.server_renderer())
    assert r.messages == ({"role": "system", "content": "Be brief."}, plain.messages[0])
    renderer = ct.template_renderer(fake.TEMPLATE, {}, "fake")
    (rendered,) = chat.requests(MMLU(), [q], no_data, 0, renderer)
    assert rendered.messages is None and rendered.context.endswith("<|assistant|>\n")


def test_gguf_generates_from_lm_evals_token_ids():
    """A text prompt goes to llama.cpp as the backend's (lm-eval's) token ids: a text would
    get llama.cpp's own BOS in front of a template's."""
    from types import SimpleNamespace

    from mmlu_bench.backends import llamacpp_generate
    from mmlu_bench.schema import GenerateRequest

    seen = []

    def create_completion(prompt, **kwargs):
        seen.append((prompt, kwargs))
        return {"choices": [{"text": "B\nmore", "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    backend = SimpleNamespace(llm=SimpleNamespace(create_completion=create_completion),
                              encode=lambda text: [1, 2, 3], n_ctx=512,
                              use_threads=lambda: None)
    r = GenerateRequest("a/0", "<s>chat", ("\n",), 8)
    (g,) = next(llamacpp_generate.generate(backend, [r], 1))
    assert seen[0][0] == [1, 2, 3] and seen[0][1]["stop"] == ["\n"]
    assert (g.text, g.n_tokens, g.finish) == ("B", 5, "stop")


# ------------------------------------------------------------ runs through the fake backend

COMBINATIONS = {  # name -> (task, format, flags, shots)
    "generative": ("mmlu", "generative", [], 2),
    "generative-singleturn-system": ("mmlu", "generative", ["--no-fewshot-as-multiturn",
                                                            "--system-instruction", SYSTEM], 2),
    "flan-cot": ("mmlu", "cot", [], 0),
    "pro-cot": ("mmlu_pro", "cot", ["--system-instruction", SYSTEM], 2),
    "simple-evals": ("mmlu", "simple-evals", [], 0),
}


@pytest.fixture
def pro_dir(tmp_path) -> Path:
    from .test_mmlu_pro_cot import row, worked

    write_jsonl(tmp_path / "pro" / "test.jsonl", [row(i, "biology", gold=i % 4) for i in range(3)])
    write_jsonl(tmp_path / "pro" / "validation.jsonl", [worked(100 + i, "biology")
                                                        for i in range(2)])
    return tmp_path / "pro"


@pytest.mark.parametrize("name", COMBINATIONS)
def test_fake_runs_render_record_and_resume_as_chat_runs(name, tmp_path, mmlu_dir, pro_dir,
                                                        capsys):
    from mmlu_bench.config import RunConfig
    from mmlu_bench.runner import plan, with_requests

    task, fmt, flags, shots = COMBINATIONS[name]
    data = pro_dir if task == "mmlu_pro" else mmlu_dir
    argv = ["run", "--model", "fake:x", "--task", task, "--format", fmt, "--data-dir", str(data),
            "--subjects", "biology" if task == "mmlu_pro" else "anatomy", "--limit", "2",
            "--num-fewshot", str(shots), "--output", str(tmp_path / "run"), "--no-progress"]
    assert main(argv + ["--apply-chat-template"] + flags) == 0
    header, recs, footer = read(tmp_path / "run" / RECORDS)
    sha = prompts.sha256(fake.TEMPLATE)
    multiturn = "--no-fewshot-as-multiturn" not in flags
    system = SYSTEM if SYSTEM in flags else None
    assert header.chat == {"chat_template": fake.TEMPLATE, "chat_template_sha": sha,
                              "system_instruction": system,
                              "system_instruction_sha": system and prompts.sha256(system),
                              "fewshot_as_multiturn": multiturn}
    assert f"+chat:{sha[:16]}+{'multi' if multiturn else 'single'}turn" in header.prompt_format
    assert header.prompt_format.startswith(header.prompt_format.split("/")[0] + f"/{fmt}:")
    # each record's hash is the fake template's rendering of lm-eval's messages
    config = RunConfig.from_spec("fake:x", task=task, format=fmt, data_dir=str(data),
                                 subjects="biology" if task == "mmlu_pro" else "anatomy",
                                 limit=2, num_fewshot=shots, apply_chat_template=True,
                                 fewshot_as_multiturn=multiturn, system_instruction=system,
                                 output=str(tmp_path / "again"))
    p = with_requests(plan(config), fake.FakeBackend(config))
    want = {r.qid: r.context for reqs in p.requests.values() for r in reqs}
    assert len(recs) == 2 and footer is not None
    for r in recs:
        assert r.prompt_sha256 == prompts.sha256(want[r.qid]) and r.response is not None
        assert want[r.qid].endswith("<|assistant|>\n")
        assert ("<|system|>" in want[r.qid]) == (fmt != "simple-evals" or system is not None)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert {k: results[k] for k in header.chat} == header.chat
    capsys.readouterr()
    assert main(argv + flags) != 0  # the same folder without the template: another run
    assert "holds a different run (prompt_format" in capsys.readouterr().err


def test_a_system_instruction_without_a_template_is_prepended_and_recorded(tmp_path, mmlu_dir):
    argv = ["run", "--model", "fake:x", "--format", "generative", "--data-dir", str(mmlu_dir),
            "--subjects", "anatomy", "--limit", "1", "--output", str(tmp_path / "run"),
            "--no-progress", "--system-instruction", SYSTEM]
    assert main(argv) == 0
    header, _, _ = read(tmp_path / "run" / RECORDS)
    assert header.prompt_format.endswith(f"seed=1234+system:{prompts.sha256(SYSTEM)[:16]}")
    assert header.chat["chat_template"] is None and header.chat["system_instruction"] == SYSTEM


def test_openai_run_sends_the_messages_to_chat_completions(tmp_path, pro_dir):
    """openai: with --apply-chat-template: /chat/completions with lm-eval's messages and the
    task's stop strings and max tokens; the prompt identity says the server renders."""
    from .servers import _Handler, _Threaded

    seen: list[dict] = []

    class Server(_Threaded):
        def __init__(self) -> None:
            class Handler(_Handler):
                def do_GET(self) -> None:
                    self.send(200, {"data": [{"id": "m"}]})

                def do_POST(self) -> None:
                    seen.append({"path": self.path, **json.loads(self.body())})
                    self.send(200, {"choices": [{"message": {"content": "So the answer is (B)."
                                                             "\nQuestion: next"},
                                                 "finish_reason": "stop"}]})

            self.start(Handler)

    with Server() as server:
        assert main(["run", "--model", f"openai:{server.url}/v1", "--model-name", "m",
                     "--task", "mmlu_pro", "--format", "cot", "--apply-chat-template",
                     "--num-fewshot", "2", "--data-dir", str(pro_dir), "--concurrency", "1",
                     "--output", str(tmp_path / "run"), "--no-progress"]) == 0
    assert [s["path"] for s in seen] == ["/v1/chat/completions"] * 3
    body = seen[0]
    assert body["stop"] == ["Question:"] and body["max_tokens"] == 2048
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user",
                                                     "assistant", "user"]
    header, recs, _ = read(tmp_path / "run" / RECORDS)
    assert header.prompt_format.endswith("+chat:server+multiturn")
    assert header.chat["chat_template"] == "" and header.chat["chat_template_sha"] is None
    assert {r.response for r in recs} == {"So the answer is (B).\n"}  # cut at "Question:"
    assert {r.prompt_sha256 for r in recs} == {
        prompts.sha256(json.dumps(s["messages"], ensure_ascii=False)) for s in seen}


# ---------------------------------------------------------------- the real model (slow)

@pytest.mark.slow
def test_real_smollm2_generates_from_the_rendered_chat(gguf_path, llama_cpp, mmlu_dir, tmp_path):
    """mmlu_generative under SmolLM2's template, 2-shot multi-turn, one anatomy question, on
    hf: and gguf: (the first line is the answer: "\\n" stops it early). Both render the same
    bytes, lm-eval's (the template equals the fixtures'), and generate from them."""
    def run(model: str, out: str, *extra: str) -> tuple[dict, list]:
        assert main(["run", "--model", model, "--format", "generative", "--apply-chat-template",
                     "--num-fewshot", "2", "--limit", "1", "--subjects", "anatomy",
                     "--data-dir", str(mmlu_dir), "--output", str(tmp_path / out),
                     "--no-progress", *extra]) == 0
        header, recs, _ = read(tmp_path / out / RECORDS)
        return header, recs

    header, (hf,) = run(f"hf:{gguf_path}", "hf", "--device", "cpu")
    _, (gg,) = run(f"gguf:{gguf_path}", "gguf", "--threads", "1", "--ctx-size", "1024")
    assert header.chat["chat_template_sha"] == FIXTURES_SHA
    renderer = ct.template_renderer(FIXTURES["chat_template"], SMOLLM2_TOKENS, "SmolLM2")
    data = MMLU().load(str(mmlu_dir), ("anatomy",))
    fmt = formats.get("generative", apply_chat_template=True, fewshot_as_multiturn=True)
    (want,) = fmt.requests(MMLU(), data.test["anatomy"][:1], data, 2, renderer)
    assert hf.prompt_sha256 == gg.prompt_sha256 == prompts.sha256(want.context)
    for r in (hf, gg):
        assert "\n" not in r.response and r.finish == "stop"
        assert r.answer in (None, "A", "B", "C", "D") and r.n_options == 4
