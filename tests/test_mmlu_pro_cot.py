"""`--task mmlu_pro --format cot` as lm-eval 0.4.13's `mmlu_pro`: prompts byte for byte against
lm-eval's own renders, the worked shots of the category, custom-extract, the results tree and
runs end to end. Every question written here is made up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import cli, formats, prompts, tasks
from mmlu_bench.errors import ConfigError, DataError, UserError
from mmlu_bench.records import read
from mmlu_bench.schema import LETTERS, Generation, Question
from mmlu_bench.tasks.mmlu_pro import UNITS

from .test_mmlu_pro import write_jsonl

FIXTURES = Path(__file__).parent / "fixtures"
COT = "A: Let's think step by step. "


def pro_cot():
    return tasks.get("mmlu_pro", recipe="cot"), formats.get("cot", task="mmlu_pro")


def row(i: int, category: str, n: int = 4, gold: int = 1, cot: str = "") -> dict:
    return {"question_id": i, "question": f"Which option is number {gold} ({category} {i})?",
            "options": [f" option {j} " for j in range(n)], "answer": LETTERS[gold],
            "answer_index": gold, "cot_content": cot, "category": category, "src": "made-up"}


def worked(i: int, category: str) -> dict:
    return row(i, category, cot=f"{COT}Option {i % 4} is asked for. The answer is "
                                f"({LETTERS[i % 4]}).", gold=i % 4)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """Three categories, 3 test rows each; validation: 2 worked rows of each, interleaved."""
    cats = ("biology", "law", "computer science")
    write_jsonl(tmp_path / "test.jsonl", [row(i, cats[i % 3], n=4 + i % 7, gold=i % 4)
                                          for i in range(9)])
    write_jsonl(tmp_path / "validation.jsonl", [worked(100 + i, cats[i % 3]) for i in range(6)])
    return tmp_path


def fixture_cases() -> list[dict]:
    cases = json.loads((FIXTURES / "lmeval_prompts.json").read_text(encoding="utf-8"))["cases"]
    return [c for c in cases if c["lmeval_task"] == "mmlu_pro_biology"
            and not c["options"]["apply_chat_template"]]


@pytest.mark.parametrize("case", fixture_cases(), ids=lambda c: c["case"])
def test_prompts_match_what_lm_eval_rendered(case, tmp_path):
    """lm-eval 0.4.13 rendered these made-up docs itself (fixtures/README.md): the question's
    index is lm-eval's doc_id within the category, the context and gen_kwargs its own."""
    write_jsonl(tmp_path / "test.jsonl", case["test_docs"])
    write_jsonl(tmp_path / "validation.jsonl", case["fewshot_docs"])
    task, fmt = pro_cot()
    data = task.load(str(tmp_path), UNITS)
    questions = data.test["biology"]
    made = fmt.requests(task, questions, data, case["num_fewshot"])
    assert len(made) == len(case["requests"]) == len(questions)
    for q, got, want in zip(questions, made, case["requests"], strict=True):
        assert q.index == want["lmeval_doc_id"]
        assert case["test_docs"][want["doc_index"]]["question_id"] == q.meta["question_id"]
        assert got.context == want["context"]
        assert prompts.sha256(got.context) == want["sha256"]
        assert list(got.until) == want["gen_kwargs"]["until"] == ["Question:"]
        assert got.max_tokens == want["gen_kwargs"]["max_gen_toks"] == 2048
        assert got.messages is None


def test_odd_worked_answers_render_as_lm_eval_renders_them(tmp_path):
    """Checked against lm-eval 0.4.13's own render of these rows: an empty target (cot_content
    that is only the prefix) leaves no answer and no delimiters, so the next shot follows the
    text directly; the prefix is removed only with its space, wherever it occurs."""
    shots = [row(0, "biology", cot=COT), row(1, "biology", cot="A: Let's think step by step.\nX."),
             row(2, "biology", cot=f"Y. {COT}Z. {COT}end")]
    write_jsonl(tmp_path / "validation.jsonl", shots)
    write_jsonl(tmp_path / "test.jsonl", [row(3, "biology", n=3)])
    task, fmt = pro_cot()
    data = task.load(str(tmp_path), UNITS)
    (r,) = fmt.requests(task, data.test["biology"], data, 3)
    options = "Options:\nA. option 0\nB. option 1\nC. option 2\nD. option 3\n"
    step = "Answer: Let's think step by step."
    assert r.context == (
        task.description("biology") + "Question:\nWhich option is number 1 (biology 0)?\n"
        + options + step + "Question:\nWhich option is number 1 (biology 1)?\n" + options + step
        + " A: Let's think step by step.\nX.\n\nQuestion:\nWhich option is number 1 (biology 2)?\n"
        + options + step + " Y. Z. end\n\nQuestion:\nWhich option is number 1 (biology 3)?\n"
        + options[:-len("D. option 3\n")] + step)


def test_shots_are_the_first_worked_rows_of_the_same_category(data_dir):
    task, fmt = pro_cot()
    data = task.load(str(data_dir), UNITS)
    law = data.test["law"][0]
    assert [s.meta["question_id"] for s in task.shots(data, law, 2)] == [101, 104]
    (r,) = fmt.requests(task, [law], data, 2)
    assert r.context.startswith(task.description("law") + "Question:\nWhich option is number 1 "
                                "(law 101)?\n")
    assert r.context.count("Answer: Let's think step by step.") == 3
    assert " Option 1 is asked for. The answer is (B).\n\n" in r.context
    with pytest.raises(UserError, match="more than the 2 few-shot examples .* for law"):
        task.shots(data, law, 3)


def test_description_names_the_category_with_spaces():
    task, _ = pro_cot()
    assert task.description("computer_science") == (
        "The following are multiple choice questions (with answers) about computer science. "
        'Think step by step and then finish your answer with "the answer is (X)" where X is the '
        "correct letter choice.\n")


# What lm-eval 0.4.13's own mmlu_pro_biology filter (custom-extract) and exact_match gave for
# these responses on a 10-option question whose gold letter is B (run in its venv).
CASES = [
    ("the answer is (B)", "B"), ("The answer is B.", "B"), ("So the answer is (C).", "C"),
    ("the answer is (b)", None), ("The answer is **B**", None), ("Answer: B", None),
    ("The answer is (K).", None), ("answer is (B", "B"), ("The answer is: B", None),
    ("The answer is (A). No wait, the answer is (B).", "A"), ("", None),
    ("The correct answer is (J)", "J"), ("the answer is  (B)", None), ("answer is B\n", "B"),
    ("ANSWER IS (B)", None), ("I think (B).", None), ("answer is BC", "B"),
]


@pytest.mark.parametrize("text,answer", CASES)
def test_custom_extract_takes_the_first_answer_is(text, answer):
    task, fmt = pro_cot()
    q = Question("biology", 0, "Which?", tuple(f"o{j}" for j in range(10)), 1)
    rec = fmt.record(task, q, Generation(q.qid, text, 9, "stop"), "sha")
    assert (rec.answer, rec.correct, rec.response, rec.filters) == (answer, answer == "B", text, {})
    assert rec.failure == (None if answer else "empty response" if not text else "no match")
    assert rec.pred == (LETTERS.index(answer) if answer else -1)


def test_custom_extract_agrees_with_lm_evals_fixture_outcomes():
    """Every response of tests/fixtures/lmeval_filters.json, scored by this format's filter,
    as lm-eval scored it (exact_match of custom-extract)."""
    fixture = json.loads((FIXTURES / "lmeval_filters.json").read_text(encoding="utf-8"))
    (pro,) = [t for t in fixture["tasks"] if t["lmeval_task"] == "mmlu_pro_biology"]
    task, fmt = pro_cot()
    q = Question("biology", 0, pro["doc"]["question"], tuple(pro["doc"]["options"]), 1)
    assert fmt.filters[0][0] == "custom-extract" and pro["gold"] == "B"
    for outcome in pro["outcomes"]:
        rec = fmt.record(task, q, Generation(q.qid, outcome["response"], 1, "stop"), "")
        assert rec.correct == bool(outcome["filters"]["custom-extract"]["exact_match"]), outcome


def score(entry: dict) -> float:
    """The task's score in a results.json entry, whatever its metric and filter are named."""
    (value,) = [v for k, v in entry.items() if "," in k and "_stderr," not in k]
    return value


def run(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return ["run", "--model", "fake:x", "--task", "mmlu_pro", "--format", "cot", "--data-dir",
            str(data), "--output", str(tmp_path / "out"), "--no-progress", *extra]


def test_a_fake_run_writes_lm_evals_group_and_subtasks(tmp_path, data_dir, capsys):
    assert cli.main(run(tmp_path, data_dir, "--num-fewshot", "2", "--limit", "2")) == 0
    printed = capsys.readouterr().out
    header, records, _ = read(tmp_path / "out" / "records.jsonl")
    assert header.task == "mmlu_pro" and header.task_options == {"recipe": "cot"}
    assert header.prompt_format == ("lm-eval-0.4.13-mmlu_pro-3.1/cot:greedy,max_tokens=2048,"
                                       "until=['Question:'],seed=1234")
    # --limit 2: the first two of each category (14 lm-eval tasks), numbered within it
    assert [r.qid for r in records] == ["biology/0", "biology/1", "computer_science/0",
                                        "computer_science/1", "law/0", "law/1"]
    assert all(r.response is not None and r.loglikelihoods == () for r in records)
    assert all((r.answer is None) == (r.failure is not None) for r in records)
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    subtasks = ["mmlu_pro_biology", "mmlu_pro_computer_science", "mmlu_pro_law"]
    assert results["group_subtasks"] == {"mmlu_pro": subtasks}
    assert set(results["results"]) == {"mmlu_pro", *subtasks}
    assert results["versions"] == {"mmlu_pro": 2.0, **dict.fromkeys(subtasks, 3.1)}
    # the group too: lm-eval lists every row it prints with shots (as for mmlu_pro_llama)
    assert results["n-shot"] == dict.fromkeys(["mmlu_pro", *subtasks], 2)
    assert results["results"]["mmlu_pro_law"]["alias"] == " - law"
    assert results["results"]["mmlu_pro"]["sample_len"] == 6
    assert score(results["results"]["mmlu_pro"]) == sum(r.correct for r in records) / 6
    assert "extraction_failures" in results and "Open LLM Leaderboard" not in printed
    assert "| - computer_science|    3.1|" in printed
    # lm-eval's names for the number: exact_match under the custom-extract filter
    # (the Groups table: a column holding only 2.0, which pytablewriter prints as "2")
    assert "|mmlu_pro|      2|custom-extract|     2|exact_match|" in printed
    assert "|mmlu_pro           |    2.0|" in printed  # beside the tasks' 3.1
    assert "exact_match,custom-extract" in results["results"]["mmlu_pro"]
    capsys.readouterr()
    assert cli.main(["report", str(tmp_path / "out")]) == 0  # rebuilt from the header alone
    assert "| - computer_science|    3.1|" in capsys.readouterr().out


def test_resuming_as_the_leaderboard_task_is_refused(tmp_path, data_dir, capsys):
    assert cli.main(run(tmp_path, data_dir, "--limit", "1")) == 0
    leaderboard = [a for a in run(tmp_path, data_dir, "--limit", "1") if a not in ("--format",
                                                                                  "cot")]
    assert cli.main(leaderboard) != 0
    assert "holds a different run (task_options" in capsys.readouterr().err


def test_five_shots_without_validation_rows_is_one_clear_line(tmp_path, capsys):
    write_jsonl(tmp_path / "data" / "test.jsonl", [row(i, "math") for i in range(3)])
    assert cli.main(run(tmp_path, tmp_path / "data", "--num-fewshot", "5")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "worked answers of its validation split" in err and "--num-fewshot 0" in err
    assert "add validation.jsonl" in err


def test_a_validation_row_without_cot_content_is_named(tmp_path):
    shot = row(0, "math")
    del shot["cot_content"]
    write_jsonl(tmp_path / "validation.jsonl", [shot])
    write_jsonl(tmp_path / "test.jsonl", [row(1, "math")])
    task, fmt = pro_cot()
    data = task.load(str(tmp_path), UNITS)
    with pytest.raises(DataError, match="validation row 0 has no cot_content"):
        fmt.requests(task, data.test["math"], data, 1)


def test_a_task_without_a_cot_recipe_names_the_formats_it_takes(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"--task mmmlu takes --format plain, chat, "
                                          r"generative, simple-evals\.$"):
        formats.get("cot", task="mmmlu")
    assert cli.main(["run", "--model", "fake:x", "--task", "global_mmlu", "--format", "cot",
                     "--output", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--task global_mmlu has none" in err
    assert type(formats.get("cot", task="mmlu")).__name__ == "FlanCoT"
    assert type(tasks.get("mmlu_pro")).__name__ == "MMLUPro", "the default stays the leaderboard"


def test_chat_and_system_instruction_are_lm_evals_not_ignored():
    """--apply-chat-template renders lm-eval's chat of the worked shots (test_generative_chat
    checks the bytes); a system instruction alone is prepended to the plain prompt."""
    from mmlu_bench.config import RunConfig

    chat = RunConfig.from_spec("fake:x", task="mmlu_pro", format="cot",
                               apply_chat_template=True).format_spec()
    assert chat.needs_renderer and chat.chat.multiturn
    plain = RunConfig.from_spec("fake:x", task="mmlu_pro", format="cot",
                                system_instruction="Be brief.").format_spec()
    task = tasks.get("mmlu_pro", recipe="cot")
    assert not plain.needs_renderer
    assert plain.prompt_format(task).endswith("+system:" + prompts.sha256("Be brief.")[:16])


@pytest.mark.slow
def test_real_smollm2_writes_worked_answers(gguf_path, tmp_path, data_dir):
    """The real model through hf: at lm-eval's settings (2048 new tokens at most, but the worked
    shots make it stop at the next "Question:"), one question of two categories."""
    out = tmp_path / "run"
    assert cli.main(["run", "--model", f"hf:{gguf_path}", "--task", "mmlu_pro", "--format",
                     "cot", "--data-dir", str(data_dir), "--num-fewshot", "2", "--limit", "1",
                     "--subjects", "biology,law", "--device", "cpu", "--output", str(out),
                     "--no-progress"]) == 0
    _, records, footer = read(out / "records.jsonl")
    task, fmt = pro_cot()
    data = task.load(str(data_dir), UNITS)
    assert [r.qid for r in records] == ["biology/0", "law/0"] and footer is not None
    for r in records:
        q = data.test[r.subject][0]
        (want,) = fmt.requests(task, [q], data, 2)
        assert r.prompt_sha256 == prompts.sha256(want.context)
        assert r.response and "Question:" not in r.response and r.finish in ("stop", "length")
        assert r.answer == fmt.filters[0][1](r.response).letter
        assert r.correct == (r.answer == LETTERS[r.gold])
        assert r.n_options == len(q.choices) and r.meta["question_id"] == q.meta["question_id"]
    results = json.loads((out / "results.json").read_text())
    right = sum(r.correct for r in records)
    assert score(results["results"]["mmlu_pro"]) == right / 2
    assert results["results"]["mmlu_pro_law"]["sample_len"] == 1
    assert results["extraction_failures"]["overall"]["n"] == 2
