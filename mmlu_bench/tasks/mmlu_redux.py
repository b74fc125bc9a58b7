"""MMLU-Redux 2.0 (Gema et al. 2024, "Are We Done With MMLU?"): the MMLU test questions that
experts re-checked, scored with the MMLU recipe.

The number is lm-eval's `mmlu` recipe (log-likelihood of " A".." D", the MMLU description, the
first k MMLU dev examples) on the Redux questions. It is not the number of lm-eval 0.4.13's one
Redux task, `mmlu_redux_generative` (a generated letter, exact match), which differs: that is
`--format generative` on this task (formats/mmlu_redux_generative.py). Rows and
results.json keys follow lm-eval's mmlu names: mmlu_redux, mmlu_redux_<category>,
mmlu_redux_<subject>.

By default only rows Redux labels ok are scored (the authors' and lm-eval's headline: its data
set is fxmarty/mmlu-redux-2.0-ok); `--redux-subset all` scores every joined row against MMLU's
answers, and the report adds accuracy against Redux's corrected answers (unofficial).
Data: MMLU (bundled with mmlu-bench by default; --data-dir in the original layout or data.tar;
--data-source hub for cais/mmlu) filtered through the shipped join table (redux.py), or --data-dir at a folder of the authors' mmlu_<subject>.csv
files, 0-shot only (they hold no dev split).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .. import redux, redux_overlay
from ..errors import DataError, UserError
from ..schema import Flag, Question, QuestionRecord, Slice, TaskData
from .base import Node
from .mmlu import CATEGORY_OF, MMLU, category_tree

SUBSETS = ("ok", "all")


class MMLURedux(MMLU):
    name = "mmlu_redux"
    title = "MMLU-Redux 2.0"
    # The prompts are MMLU's, byte for byte; which rows are scored is a task option.
    prompt_format = MMLU.prompt_format

    def __init__(self, redux_subset: str | None = None, **options) -> None:
        super().__init__(**options)
        subset = redux_subset or "ok"
        if subset not in SUBSETS:
            raise UserError(f"--redux-subset {subset!r}: use ok (the rows Redux labels ok, the "
                            "headline) or all (every annotated row).")
        self.subset = subset
        self.options = {"redux_subset": subset}

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        if data_dir and is_redux_folder(Path(data_dir).expanduser()):
            data = load_redux_csvs(Path(data_dir).expanduser(), units)
        else:
            data = annotate(super().load(data_dir, units, source))
        test = {u: tuple(q for q in qs if self.subset == "all" or q.meta["redux"] == "ok")
                for u, qs in data.test.items()}
        return replace(data, test=test)

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        if k and q.subject not in data.dev:
            raise UserError(f"--num-fewshot {k}: the MMLU-Redux CSVs hold test questions only; "
                            "leave --data-dir out to use the bundled MMLU (or pass MMLU's own "
                            "dev/ and test/ folders or data.tar) for few-shot.")
        return super().shots(data, q, k)

    def tree(self, units: Sequence[str]) -> list[Node]:
        return category_tree("mmlu_redux", "mmlu_redux", units, CATEGORY_OF, "mmlu_redux")

    def slices(self, records: Sequence[QuestionRecord]) -> list[Slice]:
        """The ok rows; with other rows scored, all of them and the corrected answers too."""
        pairs = redux_overlay.from_meta(records)
        out = [redux_overlay.ok_slice(pairs, redux_overlay.unjoined_note())]
        if any(a.error_type != "ok" for _, a in pairs):
            out += [redux_overlay.all_slice(pairs), redux_overlay.corrected_slice(pairs)]
        return out

    def flags(self, records: Sequence[QuestionRecord]) -> list[Flag]:
        return redux_overlay.flags(redux_overlay.from_meta(records))

    def blocks(self, records: Sequence[QuestionRecord]) -> dict:
        return {"redux": redux_overlay.block(redux_overlay.from_meta(records))}


def labels(a: redux.Annotation) -> dict:
    return {"redux": a.error_type, "redux_correct": a.correct_answer}


def annotate(data: TaskData) -> TaskData:
    """MMLU test rows Redux annotates, with its labels in meta; the dev pool unchanged."""
    table = redux.load_table()
    test = {}
    for unit, questions in data.test.items():
        found = ((q, table.get(unit, q.index)) for q in questions)
        test[unit] = tuple(replace(q, meta=labels(a)) for q, a in found if a is not None)
    return replace(data, test=test)


def is_redux_folder(path: Path) -> bool:
    """The authors' layout: mmlu_<subject>.csv files, not MMLU's test/ and dev/ folders."""
    return path.is_dir() and not (path / "test").is_dir() and any(path.glob("mmlu_*.csv"))


def load_redux_csvs(folder: Path, units: tuple[str, ...]) -> TaskData:
    """Test questions straight from the authors' files, at the MMLU indices the shipped table
    ties each row to (a row that labels several identical MMLU copies stands for each). The
    text is the authors' copy, which differs from MMLU's on a few rows (see the table's notes)."""
    rows = {(r.subject, r.redux_row): r for r in redux.load_table().rows}
    test = {}
    for unit in units:
        path = folder / f"mmlu_{unit}.csv"
        if not path.is_file():
            raise DataError(f"{path}: missing; the MMLU-Redux folder needs mmlu_<subject>.csv "
                            "for every chosen subject.")
        questions = []
        for row in redux.parse_file(path):
            joined = rows.get((unit, row.row))
            if joined is None or joined.error_type != row.error_type:
                raise DataError(f"{path}: row {row.row} does not match the shipped MMLU-Redux "
                                "2.0 table; pass the authors' 2.0 files unchanged.")
            a = redux.Annotation(joined.error_type, joined.correct_answer, row.row)
            questions += [Question(unit, i, row.question, row.choices, row.answer, labels(a))
                          for i in joined.mmlu_indices]
        test[unit] = tuple(sorted(questions, key=lambda q: q.index))
    return TaskData(test, {}, f"redux-csv:{folder.resolve()}")
