"""Result: one run as the Python API hands it back (`evaluate`, `load_run`). It holds what the
run's records.jsonl holds, as the schema's types, and the Summary every report renders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .records import RECORDS, read
from .schema import QuestionRecord, RunFooter, RunHeader, Summary


@dataclass(frozen=True, slots=True)
class Result:
    """A run: its header, per-question records and footer, and the Summary of them.

    `summary.acc` and `summary.stderr` are the headline numbers (the stratified estimate for
    a --sample run), `summary.rows` lm-eval's table rows (the task, its groups, each unit).
    `str(result)` is the table `mmlu-bench run` prints; `report(fmt)` any of the reports."""

    header: RunHeader
    records: tuple[QuestionRecord, ...]
    footer: RunFooter | None  # None: the run has not finished (its numbers cover what is done)
    summary: Summary
    folder: Path | None = None  # the run folder; None when evaluate() kept none (output=None)
    scored: int = 0  # questions scored by the evaluate() call that returned it

    @property
    def finished(self) -> bool:
        return self.footer is not None

    def report(self, fmt: str = "table") -> str:
        """The report `mmlu-bench report --format FMT` prints: "table" (lm-eval's tables, as
        results.md), "markdown", "json" (results.json) or "html" (report.html)."""
        from .report_formats import FORMATS, RENDER

        if fmt not in FORMATS:
            raise UserError(f"report format {fmt!r}: use one of {', '.join(FORMATS)}.")
        return RENDER[fmt](self.header, list(self.records), self.footer, self.summary)

    def results(self) -> dict:
        """results.json's object: lm-eval's results-file shape (docs/results-format.md)."""
        from .report_formats import results

        return results(self.header, list(self.records), self.footer, self.summary)

    def to_pandas(self):
        """A pandas DataFrame, one row per question, one column per QuestionRecord field
        (qid, subject, index, gold, loglikelihoods, pred, correct, ...; `gold` and `pred` are
        indices into the options, -1 for no prediction)."""
        try:
            import pandas
        except ImportError:
            raise UserError("Result.to_pandas() needs pandas: pip install pandas") from None
        columns = [f.name for f in dataclasses.fields(QuestionRecord)]
        return pandas.DataFrame([dataclasses.astuple(r) for r in self.records], columns=columns)

    def __str__(self) -> str:
        return self.report("table")

    def __repr__(self) -> str:
        h, s = self.header, self.summary
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        return (f"Result({h.backend}:{h.model}, task={h.task}, {h.num_fewshot}-shot, "
                f"{s.metric}={s.acc:.4f} ± {s.stderr:.4f}, n={s.n}"
                f"{'' if self.finished else ', unfinished'}{where})")


def load(folder: str | Path, scored: int = 0) -> Result:
    """The Result of the run in `folder`, recomputed from its records.jsonl alone."""
    from . import summary

    folder = Path(folder)
    if not (folder / RECORDS).is_file():
        raise UserError(f"{folder}: no {RECORDS} here; pass a run folder written by "
                        "`mmlu-bench run` or mmlu_bench.evaluate().")
    header, records, footer = read(folder / RECORDS)
    return Result(header, tuple(records), footer,
                  summary.build(header, records, footer is not None), folder, scored)
