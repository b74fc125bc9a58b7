"""What a generative run adds to its Summary: extraction failures and the answered-only score.

The table's accuracy counts a question whose answer could not be extracted as wrong, as
lm-eval's exact_match does. Beside it: how often extraction failed (per unit and overall),
the accuracy among the questions that were answered, and the task's other filters (lm-eval's
flexible-extract beside strict-match). All from the records alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from .schema import LETTERS, QuestionRecord, Slice, Summary
from .tasks.base import slice_of


def generated(records: Sequence[QuestionRecord]) -> bool:
    return any(r.response is not None for r in records)


def failures(records: Sequence[QuestionRecord]) -> tuple[tuple[str, int, int], ...]:
    """(unit, questions without an extracted letter, questions), by unit in record order."""
    counts: dict[str, list[int]] = {}
    for r in records:
        c = counts.setdefault(r.subject, [0, 0])
        c[0] += r.answer is None
        c[1] += 1
    return tuple((unit, failed, n) for unit, (failed, n) in counts.items())


def slices(records: Sequence[QuestionRecord]) -> list[Slice]:
    """Accuracy among answered questions, then each other filter's accuracy (all questions,
    failures wrong), each with a Wilson interval."""
    answered = [r for r in records if r.answer is not None]
    failed = len(records) - len(answered)
    out = [slice_of("answered only", answered,
                    f"extraction failed on {failed} of {len(records)} "
                    f"({failed / len(records):.1%}); the table counts those wrong, as lm-eval "
                    "does")] if answered else []
    names = dict.fromkeys(name for r in records for name in r.filters)
    for name in names:
        out.append(slice_of(f"filter {name}", by_filter(records, name),
                            "lm-eval's other filter (its rows in the table); failures "
                            "counted wrong"))
    return out


def by_filter(records: Sequence[QuestionRecord], name: str) -> list[QuestionRecord]:
    """Stand-in records whose `correct` is filter `name`'s verdict (a record without that
    filter's letter counts wrong), for slices and the filter's table rows."""
    return [replace(r, correct=r.filters.get(name) is not None
                    and r.filters.get(name) == LETTERS[r.gold]) for r in records]


def failure_note(s: Summary) -> str:
    if not s.failures:
        return ""
    failed = sum(f for _, f, _ in s.failures)
    n = sum(n for _, _, n in s.failures)
    worst = sorted(s.failures, key=lambda u: -u[1] / u[2])[:5]
    parts = ", ".join(f"{u} {f}/{k}" for u, f, k in worst if f)
    return (f"Answer extraction failed on {failed} of {n} questions ({failed / n:.1%}), counted "
            "wrong" + (f"; most in: {parts}" if parts else "") + ".")


def failures_json(s: Summary) -> dict:
    failed = sum(f for _, f, _ in s.failures)
    n = sum(n for _, _, n in s.failures)
    return {"overall": {"failed": failed, "n": n, "rate": failed / n if n else None},
            "units": {u: {"failed": f, "n": k, "rate": f / k} for u, f, k in s.failures}}
