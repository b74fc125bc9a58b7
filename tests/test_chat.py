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
    assert base.format_spec().multiturn is True  # lm-eval's CLI: on with a template
    off = RunConfig.from_spec("fake:x", apply_chat_template=True, fewshot_as_multiturn=False)
    assert off.format_spec().multiturn is False
    assert base.output_dir() != off.output_dir() != RunConfig.from_spec("fake:x").output_dir()
    with pytest.raises(ConfigError, match="--fewshot-as-multiturn needs --apply-chat-template"):
        RunConfig.from_spec("fake:x", fewshot_as_multiturn=True)
    plain = RunConfig.from_spec("fake:x", system_instruction="Be brief.").format_spec()
    assert plain.name == "plain" and "+system:" in plain.prompt_format(MMLU())
