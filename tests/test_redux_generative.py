"""`--task mmlu_redux --format generative` as lm-eval 0.4.13's `mmlu_redux_generative`: the prompt
byte for byte against lm-eval's own render (made-up documents), the first-capital filter, its
names in the table and results.json, a chat run, and `--format generative` unchanged on every
other task."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import formats, prompts, tasks
from mmlu_bench.backends import fake
from mmlu_bench.cli import main
from mmlu_bench.errors import ConfigError, UserError
from mmlu_bench.formats.generative import Generative
from mmlu_bench.formats.mmlu_redux_generative import ReduxGenerative
from mmlu_bench.records import RECORDS, read
from mmlu_bench.schema import Generation, Question, TaskData

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "lmeval_prompts.json").read_text())


def redux():
    return tasks.get("mmlu_redux", recipe="generative"), formats.get("generative",
                                                                      task="mmlu_redux")


def test_prompts_and_stop_strings_match_lm_eval_byte_for_byte():
    name = "mmlu_redux_anatomy_generative-0shot-plain"
    c = next(c for c in FIXTURES["cases"] if c["case"] == name)
    asked = tuple(Question(d["subject"], i, d["question"], tuple(d["choices"]), d["answer"])
                  for i, d in enumerate(c["test_docs"]))
    task, fmt = redux()
    made = fmt.requests(task, asked, TaskData({"anatomy": asked}, {}, "fixture"), 0)
    assert len(made) == len(c["requests"]) == 3
    for want in c["requests"]:
        got = made[want["doc_index"]]
        assert got.context == want["context"]
        assert prompts.sha256(got.context) == want["sha256"]
        assert list(got.until) == want["gen_kwargs"]["until"] == ["</s>"]
        assert got.max_tokens == 256 and got.messages is None  # lm-eval's default max_gen_toks


@pytest.mark.parametrize("task", ["mmlu", "mmmlu", "global_mmlu_lite", "mmlu_pro", None])
def test_generative_is_mmlu_generative_on_every_other_task(task):
    assert type(formats.get("generative", task=task)) is Generative
    assert formats.naming("generative", task).tasks["mmlu"].top == "mmlu_generative"


def test_the_redux_recipe_is_its_own_and_cot_still_refuses_redux():
    assert type(redux()[1]) is ReduxGenerative
    with pytest.raises(ConfigError, match="--task mmlu_redux has none .*--format plain, chat, "
                                          "generative, simple-evals"):
        formats.get("cot", task="mmlu_redux")
    # every format but Meta's MMLU chain of thought, which is mmlu's alone
    assert formats.usable("mmlu_pro") == [f for f in formats.FORMATS if f != "llama-cot"]


def test_few_shot_is_refused_in_one_line():
    task, fmt = redux()
    q = Question("anatomy", 0, "Which made-up bone is first?", ("w", "x", "y", "z"), 1)
    with pytest.raises(UserError, match="0-shot in lm-eval's mmlu_redux_generative .*leave out "
                                        "--num-fewshot"):
        fmt.requests(task, [q], TaskData({"anatomy": (q,)}, {"anatomy": (q,)}, ""), 2)


@pytest.mark.parametrize("text,answer,failure", [
    ("B", "B", None),
    ("**Answer: B**", "A", None),  # the first capital A-D is the "A" of "Answer"
    ("the option b", None, "no match"),  # case-sensitive: ignore_case cannot rescue "b"
    ("Option (B).", "B", None),
    ("", None, "empty response"),
])
def test_the_first_capital_letter_is_the_answer(text, answer, failure):
    task, fmt = redux()
    q = Question("anatomy", 0, "Which made-up bone is second?", ("w", "x", "y", "z"), 1)
    rec = fmt.record(task, q, Generation(q.qid, text, 3, "stop"), "sha")
    assert (rec.answer, rec.failure, rec.filters) == (answer, failure, {})
    assert rec.correct == (answer == "B")


def run_argv(out: Path, data: Path, *extra: str) -> list[str]:
    return ["run", "--model", "fake:x", "--task", "mmlu_redux", "--format", "generative",
            "--data-dir", str(data), "--limit", "2", "--subjects", "anatomy,virology",
            "--output", str(out), "--no-progress", *extra]


def test_cli_run_names_results_as_lm_eval(tmp_path, mmlu_dir, capsys):
    assert main(run_argv(tmp_path / "run", mmlu_dir)) == 0
    printed = capsys.readouterr().out
    assert "|mmlu_redux (generative)        |      4|default|      |exact_match|   |" in printed
    assert "| - mmlu_redux_generative::stem |N/A    |default|     0|exact_match|↑  |" in printed
    assert "|  - anatomy                    |      4|default|     0|exact_match|↑  |" in printed
    assert "get_response" not in printed and "|acc " not in printed
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert list(results["results"]) == [
        "mmlu_redux_generative", "mmlu_redux_generative::other",
        "mmlu_redux_virology_generative", "mmlu_redux_generative::stem",
        "mmlu_redux_anatomy_generative"]
    assert results["versions"]["mmlu_redux_generative"] == 4
    assert results["versions"]["mmlu_redux_anatomy_generative"] == 4
    unit = results["results"]["mmlu_redux_anatomy_generative"]
    assert set(unit) == {"alias", "exact_match,default", "exact_match_stderr,default",
                         "sample_len"} and unit["alias"] == "  - anatomy"
    header, recs, _ = read(tmp_path / "run" / RECORDS)
    assert "/generative[mmlu_redux_generative]:" in header.prompt_format
    assert "until=['</s>']" in header.prompt_format and len(recs) == 4
    for r in recs:
        assert r.response is not None and r.n_options == 4 and r.meta["redux"] == "ok"
        first = next((ch for ch in r.response if ch in "ABCD"), None)
        assert r.answer == first and r.correct == (first == "ABCD"[r.gold])
    assert main(run_argv(tmp_path / "shots", mmlu_dir, "--num-fewshot", "1")) != 0
    assert "leave out --num-fewshot" in capsys.readouterr().err


def test_a_run_asked_before_redux_had_its_recipe_keeps_mmlu_generative_names():
    old = "lm-eval-0.4.13-mmlu-default/generative:greedy,max_tokens=256,until=['</s>', '\\n']"
    assert formats.naming("generative", "mmlu_redux", old).filters == ("get_response",)
    new = old.replace("/generative:", "/generative[mmlu_redux_generative]:")
    assert formats.naming("generative", "mmlu_redux", new).filters == ("default",)


def test_chat_run_renders_lm_evals_messages(tmp_path, mmlu_dir):
    from mmlu_bench.config import RunConfig
    from mmlu_bench.runner import plan, with_requests

    assert main(run_argv(tmp_path / "run", mmlu_dir, "--apply-chat-template")) == 0
    header, recs, _ = read(tmp_path / "run" / RECORDS)
    assert f"+chat:{prompts.sha256(fake.TEMPLATE)[:16]}+multiturn" in header.prompt_format
    config = RunConfig.from_spec("fake:x", task="mmlu_redux", format="generative",
                                 data_dir=str(mmlu_dir), subjects="anatomy,virology", limit=2,
                                 apply_chat_template=True, output=str(tmp_path / "again"))
    p = with_requests(plan(config), fake.FakeBackend(config))
    want = {r.qid: r for reqs in p.requests.values() for r in reqs}
    for r in recs:
        context = want[r.qid].context
        assert r.prompt_sha256 == prompts.sha256(context)
        assert context.startswith(f"<|system|>\nThe following are multiple choice questions "
                                  f"(with answers) about {r.subject}.\n\n<|end|>\n<|user|>\n")
        assert context.endswith("only the correct letter:<|end|>\n<|assistant|>\n")
        assert want[r.qid].until == ("</s>",)
