"""MMMLU, Global-MMLU and Global-MMLU-Lite: prompts byte for byte as lm-eval 0.4.13 rendered them
(tests/fixtures/lmeval_prompts.json, synthetic rows), data in each hub dataset's file layout
(a local folder and a fake hub cache read offline), and a fake-model run through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mmlu_bench import prompts, tasks
from mmlu_bench.errors import UserError
from mmlu_bench.tasks import global_mmlu, mmmlu

FIXTURES = Path(__file__).parent / "fixtures" / "lmeval_prompts.json"
CASES = {c["case"]: c for c in json.loads(FIXTURES.read_text())["cases"]}
# fixture case -> (our task, its unit)
UNITS = {"mmmlu_de_de_anatomy": ("mmmlu", "de_de.anatomy"),
         "global_mmlu_en_stem": ("global_mmlu_lite", "en.stem"),
         "global_mmlu_full_en_anatomy": ("global_mmlu", "en.anatomy")}


def write_mmmlu(root: Path, locale: str, docs: list[dict], as_csv: bool = True) -> Path:
    """test/mmlu_<LL-CC>.csv as openai/MMMLU has it: a header, an unnamed index column."""
    (root / "test").mkdir(parents=True, exist_ok=True)
    path = root / "test" / f"mmlu_{locale.replace('_', '-')}.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["", *mmmlu.COLUMNS])
        writer.writerows([d["Unnamed: 0"], *(d[c] for c in mmmlu.COLUMNS)] for d in docs)
    return root


def write_global(root: Path, language: str, test: list[dict], dev: list[dict]) -> Path:
    """<language>/{test,dev}-00000-of-00001.parquet, as Global-MMLU(-Lite) has them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (root / language).mkdir(parents=True, exist_ok=True)
    for split, docs in (("test", test), ("dev", dev)):
        pq.write_table(pa.Table.from_pylist(docs),
                       root / language / f"{split}-00000-of-00001.parquet")
    return root


def global_doc(i: int, split: str, subject: str, category: str, label: str, answer: str) -> dict:
    """A made-up row with every column of Global-MMLU."""
    return {"sample_id": f"{subject}/{split}/{i}", "subject": subject,
            "subject_category": category, "question": f"{split} made-up question {i}?",
            "option_a": "one", "option_b": "two", "option_c": "three", "option_d": "four",
            "answer": answer, "required_knowledge": "[]", "time_sensitive": "No",
            "reference": "-", "culture": "-", "region": "-", "country": "-",
            "cultural_sensitivity_label": label, "is_annotated": label != "-"}


def fixture_data(case: dict, root: Path) -> Path:
    """The case's synthetic rows written in its dataset's layout."""
    if case["dataset"]["path"] == "openai/MMMLU":
        return write_mmmlu(root, case["dataset"]["name"], case["test_docs"])
    return write_global(root, case["dataset"]["name"], case["test_docs"], case["fewshot_docs"])


@pytest.mark.parametrize("name", sorted(
    n for n, c in CASES.items()
    if c["lmeval_task"] in UNITS and not c["options"]["apply_chat_template"]))
def test_prompts_equal_lmeval_byte_for_byte(name, tmp_path):
    case = CASES[name]
    task_name, unit = UNITS[case["lmeval_task"]]
    task = tasks.get(task_name)
    data = task.load(str(fixture_data(case, tmp_path)), (unit,))
    questions = data.test[unit]
    # Every doc of the task, in order: Lite's random shots depend on the docs before.
    assert len(questions) == len(case["requests"])
    requests = prompts.build_requests(task, questions, data, case["num_fewshot"])
    for ours, theirs in zip(requests, case["requests"], strict=True):
        assert ours.context == theirs["context"]
        assert prompts.sha256(ours.context) == theirs["sha256"]
        assert list(ours.continuations) == theirs["continuations"]
    assert [q.index for q in questions] == [r["lmeval_doc_id"] for r in case["requests"]]


def test_lite_shots_do_not_depend_on_which_questions_are_asked(tmp_path):
    """lm-eval draws shots question after question; a --limit, --sample or resumed run asks
    for some questions only, or twice, and must still get the shots lm-eval gives them."""
    case = CASES["global_mmlu_en_stem-2shot-plain"]
    task = tasks.get("global_mmlu_lite")
    data = task.load(str(fixture_data(case, tmp_path)), ("en.stem",))
    last = data.test["en.stem"][-1]
    once = prompts.build_requests(task, [last], data, 2)
    assert once[0].context == case["requests"][-1]["context"]
    assert prompts.build_requests(task, [last], data, 2) == once


def test_mmmlu_subject_column_with_a_file_name_and_csv_missing_values(tmp_path):
    """lm-eval cuts 'college_mathematics_test.csv_sw-KE.csv' to the subject; pandas reads a
    cell 'NA' as missing, which lm-eval's template prints as 'None'."""
    docs = [{"Unnamed: 0": i, "Question": f"Swali {i}?", "A": "NA" if i == 1 else "a",
             "B": "b", "C": "c", "D": "d", "Answer": "ABCD"[i],
             "Subject": "college_mathematics_test.csv_sw-KE.csv" if i % 2 else
             "college_mathematics"} for i in range(4)]
    task = tasks.get("mmmlu", languages="sw_ke")
    data = task.load(str(write_mmmlu(tmp_path, "SW_KE", docs)), ("sw_ke.college_mathematics",))
    questions = data.test["sw_ke.college_mathematics"]
    assert [q.question for q in questions] == [f"Swali {i}?" for i in range(4)]
    assert questions[1].choices[0] == "None" and questions[1].qid == "sw_ke.college_mathematics/1"
    context = prompts.context(task, questions[0], task.shots(data, questions[0], 1))
    assert context.startswith("The following are multiple choice questions (with answers) "
                              "about college mathematics (Swahili).\n\nSwali 1?\nA. None\n")


def test_languages_option_chooses_locales_and_refuses_unknown_ones():
    task = tasks.get("mmmlu", languages="FR-FR, de_de")
    assert task.languages == ("de_de", "fr_fr") and task.options == {"languages": "de_de,fr_fr"}
    assert len(task.units()) == 2 * 57 and "fr_fr.virology" in task.units()
    stem = task.groups()["stem"]
    assert len(stem) == 2 * 19 and "fr_fr.anatomy" in stem
    assert task.resolve("stem,de_de.virology") == tuple(sorted({*stem, "de_de.virology"}))
    assert len(tasks.get("mmmlu").units()) == 14 * 57 and tasks.get("mmmlu").options == {}
    assert len(tasks.get("global_mmlu").units()) == 42 * 57
    assert len(tasks.get("global_mmlu_lite").units()) == 15 * 6
    with pytest.raises(UserError, match="no such language.*Did you mean de_de"):
        tasks.get("mmmlu", languages="de_dd")
    with pytest.raises(UserError, match="no such language"):
        tasks.get("global_mmlu_lite", languages="fil")  # only in the full set


def test_trees_have_lmeval_keys_aliases_and_versions():
    units = ["de_de.anatomy", "de_de.virology", "fr_fr.anatomy"]
    rows = [(n.level, n.name, n.key, n.version, n.nshot) for n in tasks.get("mmmlu").tree(units)]
    assert rows == [
        (0, "MMMLU", "mmmlu", "1", False),
        (1, "German", "mmmlu_de_de", "1", False),
        (2, "German other", "mmmlu_de_de_other", "1", True),
        (3, "virology (German)", "mmmlu_de_de_virology", "1", True),
        (2, "German stem", "mmmlu_de_de_stem", "1", True),
        (3, "anatomy (German)", "mmmlu_de_de_anatomy", "1", True),
        (1, "French", "mmmlu_fr_fr", "1", False),
        (2, "French stem", "mmmlu_fr_fr_stem", "1", True),
        (3, "anatomy (French)", "mmmlu_fr_fr_anatomy", "1", True)]
    full = [(n.level, n.key, n.unit) for n in tasks.get("global_mmlu").tree(["en.anatomy"])]
    assert full == [(0, "global_mmlu_full_en", False), (1, "global_mmlu_full_en_stem", False),
                    (2, "global_mmlu_full_en_anatomy", True)]
    lite = tasks.get("global_mmlu_lite").tree(["en.stem", "de.other"])
    assert [(n.level, n.key, n.unit, n.nshot) for n in lite] == [
        (0, "global_mmlu", False, False), (1, "global_mmlu_de", False, True),
        (2, "global_mmlu_de_other", True, True), (1, "global_mmlu_en", False, True),
        (2, "global_mmlu_en_stem", True, True)]


def fake_hub(cache: Path, monkeypatch, repo: str, revision: str) -> Path:
    """An empty snapshot of `repo` at `revision` in huggingface_hub's cache layout, read with
    the network off."""
    import huggingface_hub.constants as c

    snapshot = cache / f"datasets--{repo.replace('/', '--')}" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    return snapshot


def test_hub_datasets_from_a_local_cache_offline(tmp_path, monkeypatch):
    case = CASES["mmmlu_de_de_anatomy-0shot-plain"]
    write_mmmlu(fake_hub(tmp_path, monkeypatch, mmmlu.HUB_REPO, mmmlu.REVISION), "DE_DE",
                case["test_docs"])
    data = tasks.get("mmmlu").load(None, ("de_de.anatomy",))
    assert data.source == f"hub:openai/MMMLU@{mmmlu.REVISION}"
    assert len(data.test["de_de.anatomy"]) == 4
    for cls in (global_mmlu.GlobalMMLU, global_mmlu.GlobalMMLULite):
        test = [global_doc(i, "test", "anatomy", "STEM", "CS", "B") for i in range(3)]
        dev = [global_doc(i, "dev", "anatomy", "STEM", "-", "C") for i in range(5)]
        write_global(fake_hub(tmp_path, monkeypatch, cls.repo, cls.revision), "yo", test, dev)
        unit = "yo.anatomy" if cls is global_mmlu.GlobalMMLU else "yo.stem"
        data = cls().load(None, (unit,))
        assert data.source == f"hub:{cls.repo}@{cls.revision}"
        assert [q.gold for q in data.test[unit]] == [1, 1, 1] and len(data.dev[unit]) == 5
        assert data.test[unit][0].meta["cultural_sensitivity_label"] == "CS"


def test_a_missing_language_file_says_what_is_missing(tmp_path):
    (tmp_path / "de").mkdir()
    with pytest.raises(UserError, match="no test.*parquet.*test.*csv"):
        tasks.get("global_mmlu").load(str(tmp_path), ("de.anatomy",))
    with pytest.raises(UserError, match="no such folder"):
        tasks.get("mmmlu").load(str(tmp_path / "nowhere"), ("de_de.anatomy",))


def run_cli(out: Path, *argv: str) -> dict:
    """A fake-model run through the CLI; its results.json."""
    from mmlu_bench import cli

    assert cli.main(["run", "--model", "fake:m", "--output", str(out), "--no-progress",
                     *argv]) == 0
    return json.loads((out / "results.json").read_text())


def records(out: Path) -> list[dict]:
    lines = (out / "records.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "qid" in r]


def test_mmmlu_run_end_to_end(tmp_path):
    for loc in ("DE_DE", "FR_FR"):
        write_mmmlu(tmp_path / "data", loc, [
            {"Unnamed: 0": i, "Question": f"{loc} made-up question {i}?", "A": "w", "B": "x",
             "C": "y", "D": "z", "Answer": "ABCD"[i % 4],
             "Subject": ("anatomy", "virology", "philosophy")[i % 3]} for i in range(12)])
    out = tmp_path / "run"
    results = run_cli(out, "--task", "mmmlu", "--languages", "de_de,fr_fr", "--subjects",
                      "anatomy,virology,philosophy", "--num-fewshot", "2",
                      "--data-dir", str(tmp_path / "data"))
    assert list(results["results"]) == [
        "mmmlu", "mmmlu_de_de", "mmmlu_de_de_humanities", "mmmlu_de_de_philosophy",
        "mmmlu_de_de_other", "mmmlu_de_de_virology", "mmmlu_de_de_stem", "mmmlu_de_de_anatomy",
        "mmmlu_fr_fr", "mmmlu_fr_fr_humanities", "mmmlu_fr_fr_philosophy", "mmmlu_fr_fr_other",
        "mmmlu_fr_fr_virology", "mmmlu_fr_fr_stem", "mmmlu_fr_fr_anatomy"]
    assert results["group_subtasks"]["mmmlu"] == ["mmmlu_de_de", "mmmlu_fr_fr"]
    assert results["results"]["mmmlu"]["sample_len"] == 24
    assert results["results"]["mmmlu_de_de_stem"]["alias"].strip() == "- German stem"
    assert results["versions"]["mmmlu_fr_fr_anatomy"] == 1
    recs = records(out)
    assert len(recs) == 24 and recs[0]["qid"] == "de_de.anatomy/0" and "meta" not in recs[0]
    assert "German" in (out / "report.html").read_text()


def test_global_mmlu_lite_run_end_to_end_with_cs_ca_slices(tmp_path):
    labels = ("CS", "CA", "-")
    for lang in ("en", "de"):
        test = [global_doc(i, "test", ("anatomy", "marketing")[i % 2], ("STEM", "Business")[i % 2],
                           labels[i % 3], "ABCD"[i % 4]) for i in range(12)]
        dev = [global_doc(i, "dev", ("anatomy", "marketing")[i % 2], ("STEM", "Business")[i % 2],
                          "-", "ABCD"[i % 4]) for i in range(8)]
        write_global(tmp_path / "data", lang, test, dev)
    out = tmp_path / "run"
    results = run_cli(out, "--task", "global_mmlu_lite", "--languages", "en,de", "--subjects",
                      "stem,business", "--num-fewshot", "2", "--data-dir", str(tmp_path / "data"))
    assert list(results["results"]) == [
        "global_mmlu", "global_mmlu_de", "global_mmlu_de_business", "global_mmlu_de_stem",
        "global_mmlu_en", "global_mmlu_en_business", "global_mmlu_en_stem"]
    assert results["n-shot"]["global_mmlu_en_stem"] == 2
    recs = records(out)
    assert len(recs) == 24 and recs[0]["qid"] == "de.business/0"
    assert recs[0]["meta"] == {"cultural_sensitivity_label": "CA", "subject": "marketing"}
    slices = results["slices"]
    assert [slices[k]["n"] for k in ("CS (culturally sensitive)", "CA (culturally agnostic)",
                                      "unannotated", "de CS", "en CA")] == [8, 8, 8, 4, 4]
    right = sum(r["correct"] for r in recs if r["meta"]["cultural_sensitivity_label"] == "CS")
    assert slices["CS (culturally sensitive)"]["acc"] == right / 8
    assert "CS (culturally sensitive)" in (out / "results.md").read_text()
    assert "CA (culturally agnostic)" in (out / "report.html").read_text()
    # The same command again finds the finished run and scores nothing.
    assert run_cli(out, "--task", "global_mmlu_lite", "--languages", "en,de", "--subjects",
                   "stem,business", "--num-fewshot", "2", "--data-dir",
                   str(tmp_path / "data"))["results"] == results["results"]


def test_global_mmlu_full_run_end_to_end(tmp_path):
    test = [global_doc(i, "test", ("anatomy", "marketing")[i % 2], "STEM", ("CS", "-")[i % 2],
                       "ABCD"[i % 4]) for i in range(10)]
    dev = [global_doc(i, "dev", ("anatomy", "marketing")[i % 2], "STEM", "-", "A")
           for i in range(10)]
    write_global(tmp_path / "data", "yo", test, dev)
    out = tmp_path / "run"
    results = run_cli(out, "--task", "global_mmlu", "--languages", "yo", "--subjects",
                      "anatomy,marketing", "--num-fewshot", "5", "--limit", "3",
                      "--data-dir", str(tmp_path / "data"))
    assert list(results["results"]) == [
        "global_mmlu_full_yo", "global_mmlu_full_yo_other", "global_mmlu_full_yo_marketing",
        "global_mmlu_full_yo_stem", "global_mmlu_full_yo_anatomy"]
    assert results["results"]["global_mmlu_full_yo"]["sample_len"] == 6  # --limit 3 per task
    assert set(results["slices"]) == {"macro average over 2 subjects (each weighs the same)",
                                      "CS (culturally sensitive)", "unannotated"}
    assert "Labelled subsets" in (out / "report.html").read_text()


def test_data_dir_may_hold_csv_or_parquet_in_the_hub_layout(tmp_path):
    """--data-dir: Global-MMLU as CSV files, MMMLU as a parquet file, same folders."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "sw").mkdir()
    for split, n in (("test", 3), ("dev", 2)):
        docs = [global_doc(i, split, "virology", "Medical", "CA", "D") for i in range(n)]
        with open(tmp_path / "sw" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(docs[0]))
            writer.writeheader()
            writer.writerows(docs)
    data = tasks.get("global_mmlu_lite").load(str(tmp_path), ("sw.medical",))
    assert [q.gold for q in data.test["sw.medical"]] == [3, 3, 3]
    assert data.dev["sw.medical"][1].question == "dev made-up question 1?"
    (tmp_path / "test").mkdir()
    rows = [{"Question": "Q?", "A": "a", "B": "b", "C": "c", "D": "d", "Answer": "C",
             "Subject": "virology"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test" / "mmlu_YO-NG.parquet")
    data = tasks.get("mmmlu").load(str(tmp_path), ("yo_ng.virology",))
    assert data.test["yo_ng.virology"][0].gold == 2
