"""MMLU-Redux 2.0 labels laid over a run's records: a slice, flagged questions, a results block.

An MMLU run's records are looked up in the shipped join table by subject and MMLU test index
(the original release and cais/mmlu keep the same row order), so any MMLU run shows how it did
on the Redux-ok questions it covered and which covered questions have an answer key Redux marks
wrong. Nothing here changes a record or a table row: the overlay only adds lines beside them.
--task mmlu_redux carries the same labels in each question's meta and uses the same functions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from . import redux, stats
from .redux import Annotation
from .schema import LETTERS, Flag, QuestionRecord, Slice

Pair = tuple[QuestionRecord, Annotation]

OK_NAME = "MMLU-Redux ok questions"
ALL_NAME = "all Redux-annotated questions"
CORRECTED_NAME = "corrected answers (unofficial)"
WRONG = "wrong_groundtruth"
SOURCE = "MMLU-Redux 2.0 (Gema et al. 2024, CC BY 4.0)"


def from_table(records: Sequence[QuestionRecord]) -> list[Pair]:
    """The records of MMLU test rows Redux annotates, with their annotation."""
    table = redux.load_table()
    found = ((r, table.get(r.subject, r.index)) for r in records)
    return [(r, a) for r, a in found if a is not None]


def from_meta(records: Sequence[QuestionRecord]) -> list[Pair]:
    """The same pairs from labels a question carried into its record (--task mmlu_redux)."""
    return [(r, Annotation(r.meta["redux"], r.meta.get("redux_correct"), -1))
            for r in records if "redux" in r.meta]


def unjoined_note() -> str:
    n = len(redux.load_table().unjoined())
    total = len(redux.load_table().rows)
    return f"{n} of {total:,} Redux rows could not be joined to an MMLU test row; never scored"


def proportion(name: str, right: int, n: int, note: str = "") -> Slice:
    low, high = stats.wilson(right, n)
    return Slice(name, right / n if n else float("nan"), n, low, high, note)


def ok_slice(pairs: Sequence[Pair], note: str = "") -> Slice:
    """Accuracy on the questions Redux labels ok (its and lm-eval's headline subset)."""
    ok = [r for r, a in pairs if a.error_type == "ok"]
    return proportion(OK_NAME, sum(r.correct for r in ok), len(ok), note)


def all_slice(pairs: Sequence[Pair], note: str = "") -> Slice:
    """Accuracy against MMLU's answers on every annotated question, whatever its label."""
    return proportion(ALL_NAME, sum(r.correct for r, _ in pairs), len(pairs), note)


def corrected_target(record: QuestionRecord, a: Annotation) -> int | None:
    """The answer to score against: MMLU's on ok rows, Redux's correction on wrong_groundtruth
    rows that give one letter; None (left out) where Redux settles no single answer (unclear
    question or options, no or several right answers, expert knowledge needed)."""
    if a.error_type == "ok":
        return record.gold
    if a.error_type == WRONG:
        return a.correct_answer
    return None


def corrected_slice(pairs: Sequence[Pair]) -> Slice:
    scored = [(r.pred, t) for r, a in pairs if (t := corrected_target(r, a)) is not None]
    return proportion(CORRECTED_NAME, sum(p == t for p, t in scored), len(scored),
                      "ok rows with MMLU's answer and wrong_groundtruth rows with Redux's "
                      "correction; other labels left out")


def _letter(i: int | None) -> str:
    return LETTERS[i] if i is not None and i >= 0 else "none"


def picked(record: QuestionRecord, a: Annotation) -> str:
    """Whose answer the model chose on a wrong_groundtruth row: mmlu, redux or other."""
    if record.pred == record.gold:
        return "mmlu"
    if a.correct_answer is not None and record.pred == a.correct_answer:
        return "redux"
    return "other"


def flags(pairs: Sequence[Pair]) -> list[Flag]:
    """The covered questions whose MMLU answer Redux marks wrong, in record order."""
    out = []
    for r, a in pairs:
        if a.error_type != WRONG:
            continue
        fix = (f"Redux answer {_letter(a.correct_answer)}" if a.correct_answer is not None
               else "Redux gives no single answer")
        whose = {"mmlu": "the MMLU answer", "redux": "the Redux answer",
                 "other": "neither"}[picked(r, a)]
        out.append(Flag(r.qid, WRONG, f"MMLU answer {_letter(r.gold)}; {fix}; the model "
                                      f"picked {_letter(r.pred)} ({whose})"))
    return out


def flagged_note(pairs: Sequence[Pair]) -> str:
    n = sum(a.error_type == WRONG for _, a in pairs)
    if not n:
        return ""
    verb = "questions have" if n != 1 else "question has"
    return (f"{n} covered {verb} a wrong MMLU answer (flagged in report.html and "
            "results.json)")


def block(pairs: Sequence[Pair]) -> dict:
    """results.json's "redux" block: coverage, the ok slice and the flagged questions."""
    ok = ok_slice(pairs)
    wrong = [(r, a) for r, a in pairs if a.error_type == WRONG]
    return {
        "source": SOURCE,
        "covered": len(pairs),
        "error_types": dict(sorted(Counter(a.error_type for _, a in pairs).items())),
        "ok": {"acc": ok.acc, "n": ok.n, "ci95": [ok.low, ok.high]},
        "wrong_groundtruth": [
            {"qid": r.qid, "mmlu_answer": _letter(r.gold),
             "redux_answer": _letter(a.correct_answer) if a.correct_answer is not None
             else None, "pred": _letter(r.pred), "picked": picked(r, a)}
            for r, a in wrong],
        "unjoined_redux_rows": len(redux.load_table().unjoined()),
    }


def overlay_slices(pairs: Sequence[Pair]) -> list[Slice]:
    """An MMLU run's one Redux line: the ok slice, with the flagged count as its note."""
    ok = ok_slice(pairs, flagged_note(pairs))
    return [ok] if ok.n else []
