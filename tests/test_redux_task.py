"""--task mmlu_redux through the CLI (fake backend, the bundled MMLU, the authors' files in
../shared), its slices on made-up records, and the Redux overlay every MMLU run shows (slice,
flagged questions, results block)."""

from __future__ import annotations

import json

import pytest

from mmlu_bench import cli, html_report, redux, report, summary
from mmlu_bench.records import RECORDS, read
from mmlu_bench.schema import QuestionRecord
from mmlu_bench.tasks.mmlu import MMLU
from mmlu_bench.tasks.mmlu_redux import MMLURedux

from .conftest import run_header
from .test_redux import REDUX_DIR, needs

SUBJECTS = "virology,anatomy"


def run(tmp_path, name: str, *argv: str, data_dir=None) -> tuple[int, str]:
    """A fake run on the bundled MMLU, or on `data_dir`."""
    data = ["--data-dir", str(data_dir)] if data_dir else []
    code = cli.main(["run", "--model", "fake:a", "--subjects", SUBJECTS, *data,
                     "--no-progress", "--output", str(tmp_path / name), *argv])
    return code, tmp_path / name


@pytest.fixture(scope="module")
def redux_runs(tmp_path_factory):
    """mmlu_redux ok (the default) and all, and plain MMLU, on virology and anatomy."""
    root = tmp_path_factory.mktemp("redux")
    made = {"ok": ["--task", "mmlu_redux"],
            "all": ["--task", "mmlu_redux", "--redux-subset", "all"], "mmlu": []}
    for name, argv in made.items():
        code, _ = run(root, name, *argv)
        assert code == 0
    return root


def test_subset_ok_scores_the_ok_rows_and_all_every_joined_row(redux_runs):
    header, ok, _ = read(redux_runs / "ok" / RECORDS)
    assert (header.task, header.task_options) == ("mmlu_redux", {"redux_subset": "ok"})
    count = {s: sum(r.subject == s for r in ok) for s in ("virology", "anatomy")}
    assert count == {"virology": 43, "anatomy": 99}  # Redux: 57% of virology is flawed
    assert {r.meta["redux"] for r in ok} == {"ok"}
    _, every, _ = read(redux_runs / "all" / RECORDS)
    assert len(every) == 200
    wrong = [r for r in every if r.meta["redux"] == "wrong_groundtruth"]
    assert len(wrong) == 34 and all(r.meta["redux_correct"] != r.gold for r in wrong
                                    if r.meta["redux_correct"] is not None)
    # The same prompts as MMLU's: the ok rows score exactly as in the MMLU run.
    _, mmlu, _ = read(redux_runs / "mmlu" / RECORDS)
    by_qid = {r.qid: r for r in mmlu}
    assert all(by_qid[r.qid].loglikelihoods == r.loglikelihoods for r in every)


def test_results_use_mmlu_redux_names_and_carry_the_slices(redux_runs):
    results = json.loads((redux_runs / "all" / "results.json").read_text())
    assert set(results["groups"]) == {"mmlu_redux", "mmlu_redux_other", "mmlu_redux_stem"}
    assert results["results"]["mmlu_redux_virology"]["sample_len"] == 100
    macro = "macro average over 2 subjects (each weighs the same)"  # first, beside the table
    assert list(results["slices"]) == [macro, "MMLU-Redux ok questions", "all Redux-annotated "
                                       "questions", "corrected answers (unofficial)"]
    assert results["slices"]["MMLU-Redux ok questions"]["n"] == 142
    assert "2 of 5,700 Redux rows could not be joined" in \
        results["slices"]["MMLU-Redux ok questions"]["note"]
    assert results["redux"]["covered"] == 200 and len(results["redux"]["wrong_groundtruth"]) == 34
    assert len(results["flags"]) == 34
    page = (redux_runs / "all" / "report.html").read_text()
    assert '<section id="flags">' in page and "corrected answers (unofficial)" in page
    ok = json.loads((redux_runs / "ok" / "results.json").read_text())
    assert list(ok["slices"]) == [macro, "MMLU-Redux ok questions"] and "flags" not in ok


def test_an_mmlu_run_shows_its_redux_ok_accuracy_and_flagged_questions(redux_runs):
    results = json.loads((redux_runs / "mmlu" / "results.json").read_text())
    ok = json.loads((redux_runs / "ok" / "results.json").read_text())
    block = results["redux"]
    assert block["covered"] == 200 and block["ok"]["n"] == 142
    assert block["ok"]["acc"] == ok["results"]["mmlu_redux"]["acc,none"]
    assert block["unjoined_redux_rows"] == 2
    assert {w["picked"] for w in block["wrong_groundtruth"]} <= {"mmlu", "redux", "other"}
    table = (redux_runs / "mmlu" / "results.md").read_text()
    assert "MMLU-Redux ok questions: " in table and "(n=142, 95% interval" in table
    assert "34 covered questions have a wrong MMLU answer" in table
    page = (redux_runs / "mmlu" / "report.html").read_text()
    assert '<section id="flags">' in page and "virology/0" in page


def test_authors_csvs_run_zero_shot_and_refuse_shots_with_what_to_pass(tmp_path, capsys,
                                                                        redux_runs):
    redux_dir = needs(REDUX_DIR)
    code, out = run(tmp_path, "csv", "--task", "mmlu_redux", "--redux-subset", "all",
                    data_dir=redux_dir)
    assert code == 0
    header, records, _ = read(out / RECORDS)
    assert header.backend_info["data_source"].startswith("redux-csv:")
    _, from_mmlu, _ = read(redux_runs / "all" / RECORDS)
    assert [r.qid for r in records] == [r.qid for r in from_mmlu]
    assert [r.meta for r in records] == [r.meta for r in from_mmlu]
    capsys.readouterr()
    code, _ = run(tmp_path, "csv1", "--task", "mmlu_redux", "--num-fewshot", "1",
                  data_dir=redux_dir)
    err = capsys.readouterr().err
    assert code == 2 and "hold test questions only" in err
    assert "leave --data-dir out to use the bundled MMLU" in err


def test_redux_subset_is_checked():
    with pytest.raises(Exception, match="--task mmlu takes no option --redux-subset"):
        MMLU(redux_subset="all")
    with pytest.raises(Exception, match="use ok .* or all"):
        MMLURedux(redux_subset="most")
    assert cli.main(["run", "--model", "fake:a", "--redux-subset", "all"]) == 2


def rec(qid: str, gold: int, pred: int, meta: dict | None = None) -> QuestionRecord:
    subject, index = qid.split("/")
    return QuestionRecord(qid, subject, int(index), gold, (-1.0, -2.0, -3.0, -4.0), pred,
                          pred == gold, "", 10, meta or {})


def label(error_type: str, correct: int | None = None) -> dict:
    return {"redux": error_type, "redux_correct": correct}


def test_slices_by_hand():
    records = [rec("anatomy/0", 0, 0, label("ok")),                        # right
               rec("anatomy/1", 1, 2, label("ok")),                        # wrong
               rec("anatomy/2", 0, 2, label("wrong_groundtruth", 2)),      # right by Redux
               rec("anatomy/3", 3, 3, label("wrong_groundtruth")),         # no single answer
               rec("anatomy/4", 1, 1, label("bad_question_clarity"))]      # right, left out
    ok, every, fixed = MMLURedux(redux_subset="all").slices(records)
    assert (ok.acc, ok.n) == (0.5, 2)
    # Wilson at 1 of 2: (0.5 + z²/4 -+ z*sqrt(1/8 + z²/16)) / (1 + z²/2), z = 1.959964
    assert (ok.low, ok.high) == pytest.approx((0.0945, 0.9055), abs=1e-4)
    assert (every.acc, every.n) == (0.6, 5)
    assert (fixed.name, fixed.n) == ("corrected answers (unofficial)", 3)
    assert fixed.acc == pytest.approx(2 / 3)  # anatomy/0 and anatomy/2 of 0, 1, 2
    flags = MMLURedux().flags(records)
    assert [f.qid for f in flags] == ["anatomy/2", "anatomy/3"]
    assert flags[0].note == "MMLU answer A; Redux answer C; the model picked C (the Redux answer)"
    assert flags[1].note == ("MMLU answer D; Redux gives no single answer; the model picked D "
                             "(the MMLU answer)")


def mmlu_records() -> list[QuestionRecord]:
    """An ok row, a wrong_groundtruth row with a correction and a row Redux never saw."""
    table = redux.load_table()
    ok = next(r for r in table.rows if r.error_type == "ok" and r.subject == "anatomy")
    wrong = next(r for r in table.rows if r.error_type == "wrong_groundtruth"
                 and r.correct_answer is not None)
    unseen = next(i for i in range(200) if table.get("anatomy", i) is None)
    wrong_gold = (wrong.correct_answer + 1) % 4  # MMLU's answer differs from the correction
    return [rec(f"anatomy/{ok.mmlu_indices[0]}", 2, 2),
            rec(f"{wrong.subject}/{wrong.mmlu_indices[0]}", wrong_gold, wrong.correct_answer),
            rec(f"anatomy/{unseen}", 1, 0)]


def test_overlay_on_mmlu_records_adds_lines_and_leaves_the_rows():
    records = mmlu_records()
    header = run_header()
    s = summary.build(header, records)
    macro, *lines = s.slices  # the macro average comes first, then the overlay's lines
    assert macro.name.startswith("macro average") and macro.n == len(records)
    assert [(x.name, x.acc, x.n) for x in lines] == [("MMLU-Redux ok questions", 1.0, 1)]
    assert "1 covered question has a wrong MMLU answer" in lines[0].note
    assert [f.qid for f in s.flags] == [records[1].qid]
    assert s.flags[0].note.endswith("(the Redux answer)")
    block = s.blocks["redux"]
    assert block["covered"] == 2 and block["ok"]["n"] == 1
    assert block["wrong_groundtruth"][0]["picked"] == "redux"
    # Scored against MMLU as ever: the Redux-corrected pick counts wrong in the rows.
    assert s.rows[0].n == 3 and s.rows[0].acc == pytest.approx(1 / 3)
    assert "MMLU-Redux ok questions: 1.0000 (n=1" in report.full_table(s)
    out = report.results_json(s, header)
    assert out["redux"] == block and out["flags"][0]["label"] == "wrong_groundtruth"
    page = html_report.render(header, records, None, s)
    assert '<section id="flags">' in page and records[1].qid in page


def test_a_task_built_on_mmlu_gets_no_overlay_unless_it_asks():
    class Other(MMLU):
        name = "mmlu_other_copy"

    records = mmlu_records()
    assert Other().slices(records) == [] and Other().blocks(records) == {}
    assert MMLU().blocks(records[2:]) == {}  # nothing covered: no block, no line
