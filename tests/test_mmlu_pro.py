"""MMLU-Pro as lm-eval 0.4.13's `leaderboard_mmlu_pro`: loading (jsonl, parquet, a hub cache),
prompts byte for byte against lm-eval's own renders, the results tree and metrics, --limit, and
runs on the real test split. Every question written here is made up."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest

from mmlu_bench import cli, metrics, prompts, report, runner, summary
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import DataError, UserError
from mmlu_bench.records import read
from mmlu_bench.schema import LETTERS, QuestionRecord
from mmlu_bench.tasks import get
from mmlu_bench.tasks.mmlu_pro import CATEGORIES, HUB_REPO, HUB_REVISION, UNITS, read_folder

from .conftest import SHARED, require, run_header

FIXTURES = Path(__file__).parent / "fixtures"
PRO_DATA = SHARED / "data" / "mmlu-pro"


def row(i: int, category: str, n_options: int = 10, answer: int | None = None) -> dict:
    """A made-up MMLU-Pro row in the hub's columns; the gold letter cycles through the options."""
    gold = i % n_options if answer is None else answer
    return {"question_id": 1000 + i, "question": f" Q{i} about {category}? ",
            "options": [f" opt{j} " if j == 0 else f"opt{j}" for j in range(n_options)],
            "answer": LETTERS[gold], "answer_index": gold, "cot_content": "",
            "category": category, "src": f"synthetic-{category}"}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


# Interleaved categories and 3..10 options, as in the real split.
TEST_ROWS = [row(i, CATEGORIES[i % 4], n_options=3 + i % 8) for i in range(12)]
VALIDATION_ROWS = [row(100 + i, CATEGORIES[5 - i % 2]) for i in range(4)]


@pytest.fixture
def jsonl_dir(tmp_path) -> Path:
    write_jsonl(tmp_path / "test.jsonl", TEST_ROWS)
    write_jsonl(tmp_path / "validation.jsonl", VALIDATION_ROWS)
    return tmp_path


def test_jsonl_rows_become_questions_by_category_with_global_indices(jsonl_dir):
    data = get("mmlu_pro").load(str(jsonl_dir), UNITS)
    assert data.source == f"folder:{jsonl_dir.resolve()}"
    biology = data.test["biology"]
    assert [q.index for q in biology] == [0, 4, 8], "index = row in the whole test split"
    assert [q.qid for q in data.test["computer_science"]][:2] == ["computer_science/3",
                                                                  "computer_science/7"]
    q = data.test["business"][1]  # row 5: 8 options, gold F
    assert q.question == TEST_ROWS[5]["question"], "the question is kept as stored"
    assert q.choices[0] == " opt0 " and len(q.choices) == 8 and q.gold == 5
    assert q.meta == {"question_id": 1005, "src": "synthetic-business"}
    assert data.test["law"] == () and len(data.dev["validation"]) == 4


def test_gold_is_the_answer_letter_not_answer_index(tmp_path):
    odd = row(0, "math", answer=2) | {"answer_index": 1}  # as question_id 3983 on the hub
    write_jsonl(tmp_path / "test.jsonl", [odd])
    assert read_folder(tmp_path, ("math",), "x").test["math"][0].gold == 2


def test_parquet_in_a_data_folder_reads_the_same_as_jsonl(tmp_path, jsonl_dir):
    write_parquet(tmp_path / "pq" / "data" / "test-00000-of-00002.parquet", TEST_ROWS[:5])
    write_parquet(tmp_path / "pq" / "data" / "test-00001-of-00002.parquet", TEST_ROWS[5:])
    write_parquet(tmp_path / "pq" / "data" / "validation-00000-of-00001.parquet",
                  VALIDATION_ROWS)
    task = get("mmlu_pro")
    from_parquet = task.load(str(tmp_path / "pq"), UNITS)
    from_jsonl = task.load(str(jsonl_dir), UNITS)
    assert from_parquet.test == from_jsonl.test and from_parquet.dev == from_jsonl.dev
    assert [q.meta for q in from_parquet.test["biology"]] == \
        [q.meta for q in from_jsonl.test["biology"]]


def test_hub_dataset_at_the_pinned_revision_from_a_local_cache_offline(tmp_path, monkeypatch):
    """A fake hub cache in huggingface_hub's layout, read with the network off: never the hub."""
    repo = tmp_path / ("datasets--" + HUB_REPO.replace("/", "--"))
    snapshot = repo / "snapshots" / HUB_REVISION / "data"
    write_parquet(snapshot / "test-00000-of-00001.parquet", TEST_ROWS)
    write_parquet(snapshot / "validation-00000-of-00001.parquet", VALIDATION_ROWS)
    import huggingface_hub.constants as c
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    data = get("mmlu_pro").load(None, ("biology", "chemistry"))
    assert data.source == f"hub:TIGER-Lab/MMLU-Pro@{HUB_REVISION}"
    assert [q.index for q in data.test["chemistry"]] == [2, 6, 10]
    assert data.dev["validation"][0].meta["question_id"] == 1100


def test_hub_dataset_not_cached_offline_says_how(tmp_path, monkeypatch):
    import huggingface_hub.constants as c
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="TIGER-Lab/MMLU-Pro: cannot reach the Hugging Face hub"):
        get("mmlu_pro").load(None, UNITS)


@pytest.mark.parametrize("bad, message", [
    ({"answer": "J"}, "answer 'J' is not one of the question's 4 letters"),
    ({"category": "astrology"}, "unknown category 'astrology'"),
    ({"options": []}, "options must be a list of 1 to 10"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path, bad, message):
    rows = [row(0, "math"), row(1, "math", n_options=4) | bad]
    write_jsonl(tmp_path / "test.jsonl", rows)
    with pytest.raises(DataError, match=r"test.jsonl:2: "):
        read_folder(tmp_path, UNITS, "x")
    with pytest.raises(DataError, match=message):
        read_folder(tmp_path, UNITS, "x")


def test_a_folder_without_a_test_split_says_what_it_needs(tmp_path):
    with pytest.raises(DataError, match="no MMLU-Pro test split here; expected test.jsonl"):
        get("mmlu_pro").load(str(tmp_path), UNITS)


def lmeval_cases() -> list[dict]:
    cases = json.loads((FIXTURES / "lmeval_prompts.json").read_text(encoding="utf-8"))["cases"]
    return [c for c in cases if c["lmeval_task"] == "leaderboard_mmlu_pro"]


@pytest.mark.parametrize("case", lmeval_cases(), ids=lambda c: c["case"])
def test_prompts_match_what_lm_eval_rendered(case, tmp_path):
    """lm-eval 0.4.13 rendered these synthetic docs itself (fixtures/README.md)."""
    assert case["num_fewshot"] in (0, 2) and not case["options"]["apply_chat_template"]
    write_jsonl(tmp_path / "test.jsonl", case["test_docs"])
    write_jsonl(tmp_path / "validation.jsonl", case["fewshot_docs"])
    task = get("mmlu_pro")
    data = task.load(str(tmp_path), UNITS)
    by_index = {q.index: q for qs in data.test.values() for q in qs}
    assert len(case["requests"]) == len(by_index)
    for want in case["requests"]:
        q = by_index[want["doc_index"]]
        assert q.index == want["lmeval_doc_id"], "index is lm-eval's doc_id"
        (got,) = prompts.build_requests(task, [q], data, case["num_fewshot"])
        assert got.context == want["context"]
        assert prompts.sha256(got.context) == want["sha256"]
        assert list(got.continuations) == want["continuations"]


def records_of(scores: dict[str, list[bool]]) -> list[QuestionRecord]:
    out, index = [], 0
    for unit, correct in scores.items():
        for ok in correct:
            out.append(QuestionRecord(f"{unit}/{index}", unit, index, 0, (-1.0, -2.0, -3.0),
                                      0 if ok else 1, ok, "0" * 64, 10))
            index += 1
    return out


def test_one_flat_lm_eval_task_row_then_the_categories():
    task = get("mmlu_pro")
    records = records_of({"biology": [True, False, False, True], "law": [True, False],
                          "computer_science": [False, False, False]})
    rows = metrics.summarize(records, task, 5)
    assert [(r.name, r.key, r.level, r.unit, r.group) for r in rows] == [
        ("leaderboard_mmlu_pro", "leaderboard_mmlu_pro", 0, False, False),
        ("biology", "mmlu_pro_biology", 1, True, False),
        ("computer_science", "mmlu_pro_computer_science", 1, True, False),
        ("law", "mmlu_pro_law", 1, True, False)]
    top = rows[0]
    xs = [1, 0, 0, 1, 1, 0, 0, 0, 0]
    # Micro mean and the sample stderr over all questions, as one lm-eval task has them.
    assert top.acc == pytest.approx(3 / 9) and top.n == 9 and top.num_fewshot == 5
    assert top.stderr == pytest.approx(metrics.mean_stderr(xs)) and top.version == "0.1"
    assert rows[1].num_fewshot is None, "lm-eval prints no such row; no shots column there"


def test_results_json_has_lm_evals_key_and_the_normalized_score():
    records = records_of({"math": [True] * 3 + [False] * 7, "law": [True, False]})
    header = run_header(task="mmlu_pro")
    s = summary.build(header, records)
    out = report.results_json(s, header)
    top = out["results"]["leaderboard_mmlu_pro"]
    assert top["acc,none"] == pytest.approx(4 / 12)
    assert top["acc_stderr,none"] == pytest.approx(metrics.mean_stderr([1] * 4 + [0] * 8))
    assert out["versions"]["leaderboard_mmlu_pro"] == 0.1
    assert out["n-shot"]["leaderboard_mmlu_pro"] == 0 and out["groups"] == {}
    macro, norm = s.slices  # the macro average over categories, then the leaderboard's score
    assert macro.name.startswith("macro average over ") and "categories" in macro.name
    assert norm.name == "normalized (acc - 0.1) / 0.9 (Open LLM Leaderboard)"
    assert norm.acc == pytest.approx((4 / 12 - 0.1) / 0.9) and not norm.proportion
    from mmlu_bench import stats
    low, high = stats.wilson(4, 12)
    assert (norm.low, norm.high) == pytest.approx(((low - 0.1) / 0.9, (high - 0.1) / 0.9))
    assert s.chance == pytest.approx(1 / 3)  # every made-up record has 3 options


def test_limit_is_the_first_n_test_rows_whatever_their_category(jsonl_dir, tmp_path):
    config = RunConfig.from_spec("fake:x", task="mmlu_pro", data_dir=str(jsonl_dir), limit=5,
                                 output=str(tmp_path / "out"))
    p = runner.plan(config)
    assert sorted(q.index for q in p.questions.values()) == [0, 1, 2, 3, 4]
    assert {q.subject for q in p.questions.values()} == set(UNITS[:4])
    biology = runner.plan(config.with_(subjects="biology", limit=2))
    assert [q.index for q in biology.questions.values()] == [0, 4]


def test_shots_are_the_first_validation_rows_for_every_category(jsonl_dir, tmp_path):
    config = RunConfig.from_spec("fake:x", task="mmlu_pro", data_dir=str(jsonl_dir),
                                 num_fewshot=2, output=str(tmp_path / "out"))
    p = runner.plan(config)
    first = " Q100 about engineering? \nA.  opt0 \nB. opt1\n"
    for requests in p.requests.values():
        for r in requests:
            assert r.context.startswith(first)
            assert "J. opt9\nAnswer: A\n\n Q101 about economics? \nA.  opt0 \n" in r.context
            assert r.context.count("\nAnswer:") == 3, "two shots, then the question"


def test_k_shot_without_validation_rows_is_one_clear_line(tmp_path, capsys):
    write_jsonl(tmp_path / "data" / "test.jsonl", TEST_ROWS)
    code = cli.main(["run", "--model", "fake:x", "--task", "mmlu_pro", "--data-dir",
                     str(tmp_path / "data"), "--num-fewshot", "2", "--output",
                     str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "validation split" in err and "--num-fewshot 0" in err


def test_subjects_takes_categories_and_lists_them(tmp_path, capsys):
    task = get("mmlu_pro")
    assert task.resolve("law, computer_science") == ("computer_science", "law")
    with pytest.raises(UserError, match="unknown subject 'laws'.*Did you mean law"):
        task.resolve("laws")
    assert cli.main(["subjects", "--task", "mmlu_pro"]) == 0
    assert capsys.readouterr().out.strip() == ", ".join(UNITS)


def test_fake_run_on_the_real_test_split(tmp_path, capsys):
    require((PRO_DATA / "test.jsonl").is_file(), f"the MMLU-Pro test split at {PRO_DATA}")
    out = tmp_path / "run"
    assert cli.main(["run", "--model", "fake:x", "--task", "mmlu_pro", "--data-dir",
                     str(PRO_DATA), "--limit", "30", "--output", str(out),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "|leaderboard_mmlu_pro|    0.1|none  |     0|acc   |↑  |" in printed
    assert "normalized (acc - 0.1) / 0.9 (Open LLM Leaderboard):" in printed
    header, records, footer = read(out / "records.jsonl")
    assert [r.index for r in records] == list(range(30)) and footer is not None
    assert header.backend_info["data_source"] == f"folder:{PRO_DATA.resolve()}"
    assert header.task == "mmlu_pro" and header.limit == 30
    assert all(set(r.meta) == {"question_id", "src"} for r in records)
    results = json.loads((out / "results.json").read_text())
    assert results["results"]["leaderboard_mmlu_pro"]["sample_len"] == 30
    assert "30: the first 30 of the test split (--limit)" in (out / "report.html").read_text()


def test_fourteen_categories_render_in_the_html_report(tmp_path):
    """Every category, 3..10 options: the letters chart runs A..J and chance is the mean
    of 1 / options."""
    rows = [row(i, CATEGORIES[i % 14], n_options=3 + i % 8) for i in range(56)]
    write_jsonl(tmp_path / "data" / "test.jsonl", rows)
    out = tmp_path / "run"
    assert cli.main(["run", "--model", "fake:x", "--task", "mmlu_pro", "--data-dir",
                     str(tmp_path / "data"), "--output", str(out), "--no-progress"]) == 0
    page = (out / "report.html").read_text()
    subjects = re.search(r'<svg id="chart-subjects".*?</svg>', page, flags=re.S).group(0)
    for unit in UNITS:
        assert f">{unit.replace('_', ' ')}<" in subjects, unit
    letters = re.search(r'<svg id="chart-letters".*?</svg>', page, flags=re.S).group(0)
    assert all(f">{x}<" in letters for x in LETTERS)
    chance = sum(1 / (3 + i % 8) for i in range(56)) / 56
    header, records, _ = read(out / "records.jsonl")
    assert summary.build(header, records).chance == pytest.approx(chance)
    assert "NaN" not in page and "Open LLM Leaderboard" in page


@pytest.mark.slow
def test_real_smollm2_on_the_first_20_rows(gguf_path, tmp_path):
    """The real model through hf: (no lm-eval reference for MMLU-Pro is committed; the bench
    compares the two) every prompt is lm-eval's recipe, written out independently here, every
    prediction the argmax, one log-likelihood per option."""
    require((PRO_DATA / "test.jsonl").is_file(), f"the MMLU-Pro test split at {PRO_DATA}")
    out = tmp_path / "run"
    assert cli.main(["run", "--model", f"hf:{gguf_path}", "--task", "mmlu_pro", "--data-dir",
                     str(PRO_DATA), "--limit", "20", "--device", "cpu", "--output", str(out),
                     "--no-progress"]) == 0
    _, records, _ = read(out / "records.jsonl")
    with (PRO_DATA / "test.jsonl").open(encoding="utf-8") as f:
        docs = [json.loads(next(f)) for _ in range(20)]
    assert [r.index for r in records] == list(range(20))
    for r, doc in zip(records, docs, strict=True):
        recipe = doc["question"] + "\n" + "".join(
            f"{'ABCDEFGHIJ'[i]}. {o}\n" for i, o in enumerate(doc["options"])) + "Answer:"
        assert r.prompt_sha256 == hashlib.sha256(recipe.encode()).hexdigest()
        assert len(r.loglikelihoods) == len(doc["options"]) and r.gold == \
            "ABCDEFGHIJ".index(doc["answer"])
        assert all(ll < 0 and math.isfinite(ll) for ll in r.loglikelihoods)
        assert r.pred == max(range(len(r.loglikelihoods)), key=r.loglikelihoods.__getitem__)
        assert r.meta["question_id"] == doc["question_id"]
