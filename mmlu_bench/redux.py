"""MMLU-Redux 2.0 expert annotations, joined to MMLU test rows.

The authors' CSVs (aryopg/mmlu-redux, CC BY 4.0, Gema et al. 2024) carry no MMLU row index, so a
Redux row is tied to its MMLU test row by subject and text. scripts/build_redux_table.py builds
the join offline into data/mmlu_redux_2.0.tsv (indices and labels, never question text), which
load_table() reads at run time.
"""

from __future__ import annotations

import ast
import csv
import difflib
import functools
import io
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .errors import DataError
from .schema import Question

ERROR_TYPES = ("ok", "bad_question_clarity", "bad_options_clarity", "no_correct_answer",
               "multiple_correct_answers", "wrong_groundtruth", "expert")
REQUIRED = ("question", "choices", "answer", "error_type", "correct_answer")
FUZZY_MIN = 0.95  # difflib ratio over question + choices; the answer must agree too
INDEX = {**{str(i): i for i in range(4)}, **{letter: i for i, letter in enumerate("ABCD")}}
TABLE = "mmlu_redux_2.0.tsv"
COLUMNS = ("subject", "redux_row", "mmlu_index", "match", "error_type", "correct_answer", "note")


@dataclass(frozen=True, slots=True)
class ReduxRow:
    """One row of an authors' CSV: an MMLU test question re-checked by an expert."""
    subject: str
    row: int  # 0-based position in the file, header excluded
    question: str
    choices: tuple[str, str, str, str]
    answer: int  # the original MMLU answer, 0..3
    error_type: str  # one of ERROR_TYPES
    correct_answer: int | None  # the suggested answer when it is a plain index or letter
    correct_answer_raw: str


@dataclass(frozen=True, slots=True)
class Link:
    """Where one Redux row landed in MMLU test; no indices when it did not join."""
    row: ReduxRow
    mmlu_indices: tuple[int, ...]
    match: str  # exact | duplicate | fuzzy | none
    note: str = ""  # why a row is fuzzy, paired or unjoined


@dataclass(frozen=True, slots=True)
class JoinResult:
    links: tuple[Link, ...]  # one per Redux row, in input order

    def counts(self) -> Counter:
        return Counter(link.match for link in self.links)


@dataclass(frozen=True, slots=True)
class Annotation:
    error_type: str
    correct_answer: int | None
    redux_row: int


@dataclass(frozen=True, slots=True)
class TableRow:  # one line of the shipped table
    subject: str
    redux_row: int
    mmlu_indices: tuple[int, ...]
    match: str
    error_type: str
    correct_answer: int | None
    note: str


def _label(text: str) -> str:
    """'Wrong Groundtruth ' / 'Correct Answer' -> 'wrong_groundtruth' / 'correct_answer'."""
    return re.sub(r"[\s-]+", "_", text.strip().lower())


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # One authors' file (moral_scenarios) is a legacy 8-bit encoding; cp1252 decodes every
        # byte, and a character it guesses wrong costs that row only its exact match.
        return data.decode("cp1252")


def parse_file(path: str | Path) -> list[ReduxRow]:
    """One authors' CSV `mmlu_<subject>.csv` -> its rows, whatever delimiter and encoding."""
    path = Path(path)
    text = _decode(path.read_bytes())
    header_line = text.split("\n", 1)[0]
    # Nine files use ';'. No column name holds either character, so the header's count decides.
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [_label(h) for h in next(reader, [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} in the header; is this an "
                        "MMLU-Redux annotation file?")
    rows: list[ReduxRow] = []
    for record in reader:
        if any(cell.strip() for cell in record):
            where = f"{path}:{reader.line_num}"
            if len(record) > len(header):
                raise DataError(f"{where}: {len(record)} fields for {len(header)} columns; "
                                "fix the row's quoting.")
            rows.append(_row(dict(zip(header, record)), path.stem.removeprefix("mmlu_"),
                             len(rows), where))
    return rows


def _row(cells: dict[str, str], subject: str, n: int, where: str) -> ReduxRow:
    try:  # the choices cell is a Python list literal: "['a', 'b', 'c', 'd']"
        choices = ast.literal_eval(cells["choices"])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        choices = None
    if not (isinstance(choices, list) and len(choices) == 4
            and all(isinstance(c, str) for c in choices)):
        raise DataError(f"{where}: choices must be a list of four strings.")
    answer = cells["answer"].strip()
    if not re.fullmatch("[0-3]", answer):
        raise DataError(f"{where}: answer must be 0..3, got {answer!r}.")
    error_type = _label(cells["error_type"])
    if error_type not in ERROR_TYPES:
        raise DataError(f"{where}: unknown error_type {cells['error_type']!r}; "
                        f"expected one of {', '.join(ERROR_TYPES)}.")
    raw = cells["correct_answer"]
    # '2' or 'C' -> 2; 'B,C', '27.7 million' or '' name no single usable choice.
    return ReduxRow(subject, n, cells["question"], tuple(choices), int(answer), error_type,
                    INDEX.get(raw.strip()), raw)


def parse_dir(redux_dir: str | Path) -> list[ReduxRow]:
    """Every `mmlu_*.csv` in a folder, in subject order."""
    files = sorted(Path(redux_dir).glob("mmlu_*.csv"))
    if not files:
        raise DataError(f"{redux_dir}: no mmlu_<subject>.csv files; pass the folder holding "
                        "the MMLU-Redux annotation CSVs.")
    return [row for f in files for row in parse_file(f)]


def norm(text: str) -> str:
    """NFC, every run of whitespace collapsed to one space: the text the join compares."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _text(item: ReduxRow | Question) -> str:
    """Question and choices, one per line (norm leaves no newline inside a field)."""
    return "\n".join((norm(item.question), *(norm(c) for c in item.choices)))


def join(rows: list[ReduxRow], mmlu_test: dict[str, tuple[Question, ...]]) -> JoinResult:
    """Tie each Redux row to the MMLU test rows of its subject with the same text.

    Exact key first. MMLU duplicates (same question, choices and answer): one Redux row labels
    every copy; n Redux rows with that text are the n copies, paired in file order (the authors
    sampled distinct rows). Leftovers may match one row by difflib ratio >= FUZZY_MIN with the
    same answer ('fuzzy'). Anything else is 'none', with the reason in the note."""
    copies: dict[tuple, list[Question]] = {}
    for q in (q for questions in mmlu_test.values() for q in questions):
        copies.setdefault((q.subject, _text(q)), []).append(q)
    twins: dict[tuple, list[ReduxRow]] = {}
    for row in rows:
        twins.setdefault((row.subject, _text(row)), []).append(row)
    links = []
    for row in rows:
        k = (row.subject, _text(row))
        if row.subject not in mmlu_test:
            links.append(Link(row, (), "none", "subject not in the MMLU test data"))
        elif k in copies:
            links.append(_exact(row, copies[k], twins[k]))
        else:
            links.append(_fuzzy(row, mmlu_test[row.subject]))
    return JoinResult(tuple(links))


def _exact(row: ReduxRow, copies: list[Question], twins: list[ReduxRow]) -> Link:
    first, n = copies[0].index, len(copies)
    if any(q.gold != row.answer for q in copies):
        return Link(row, (), "none", f"text equals MMLU row {first} but the answer differs")
    if len(twins) == 1:
        return Link(row, tuple(q.index for q in copies), "exact" if n == 1 else "duplicate")
    if len(twins) != n:
        return Link(row, (), "none", f"{len(twins)} Redux rows share the text of {n} MMLU "
                                     f"row(s) from {first}")
    if len({(t.error_type, t.correct_answer) for t in twins}) > 1:
        return Link(row, (), "none", f"identical MMLU copies from row {first} carry different "
                                     "labels, so pairing them is a guess")
    return Link(row, (copies[twins.index(row)].index,), "duplicate",
                f"one of {n} identical copies, paired in file order")


def _fuzzy(row: ReduxRow, questions: tuple[Question, ...]) -> Link:
    matcher = difflib.SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(_text(row))  # difflib caches what it knows about seq2
    bounds = []
    for q in questions:
        matcher.set_seq1(_text(q))
        bounds.append((matcher.quick_ratio(), q.index, q))
    # ratio() <= quick_ratio(): every row that can reach FUZZY_MIN gets the full (slow) ratio;
    # the five best bounds besides, so an unjoined row can name its closest MMLU row.
    scored = []
    for n, (bound, _, q) in enumerate(sorted(bounds, key=lambda b: (-b[0], b[1]))):
        if bound < FUZZY_MIN and n >= 5:
            break
        matcher.set_seq1(_text(q))
        scored.append((matcher.ratio(), q))
    scored.sort(key=lambda pair: -pair[0])
    ratio, best = scored[0]
    if ratio < FUZZY_MIN:
        same = _text(row).split("\n")[1:] == _text(best).split("\n")[1:] and row.answer == best.gold
        also = "; choices and answer are equal" if same else ""
        return Link(row, (), "none", f"closest MMLU row {best.index} only {ratio:.4f} alike "
                                     f"({_difference(row, best)}{also})")
    if best.gold != row.answer:
        return Link(row, (), "none", f"closest MMLU row {best.index} ({ratio:.4f} alike) has "
                                     "another answer")
    found = tuple(sorted(q.index for r, q in scored if _text(q) == _text(best)))
    if any(r >= FUZZY_MIN and q.index not in found for r, q in scored):
        return Link(row, (), "none", f"ambiguous: another MMLU row is as alike as row {best.index}")
    return Link(row, found, "fuzzy", f"ratio {ratio:.4f}: {_difference(row, best)}")


def _difference(row: ReduxRow, q: Question) -> str:
    """What differs, with a hint at the damage: 'question; U+FFFD in Redux; MMLU has U+2019'."""
    if re.match(r"https?://", row.question.strip()):
        return "question cell holds a URL: shifted columns"
    parts = ["question"] if norm(row.question) != norm(q.question) else []
    parts += [f"choice {'ABCD'[i]}" for i in range(4) if norm(row.choices[i]) != norm(q.choices[i])]
    redux, mmlu = _text(row), _text(q)
    for name, text, other in (("Redux", redux, mmlu), ("MMLU", mmlu, redux)):
        odd = sorted({ch for ch in text if ch not in other and ord(ch) > 127})
        if odd:
            parts.append(f"{name} has " + " ".join(f"U+{ord(ch):04X}" for ch in odd))
    return "; ".join(parts) or "whitespace"


@dataclass(frozen=True)
class ReduxTable:
    """The shipped join: look an MMLU test row up, count, list what did not join."""
    rows: tuple[TableRow, ...]
    sha256: str

    @functools.cached_property
    def _by_mmlu(self) -> dict[tuple[str, int], Annotation]:
        found: dict[tuple[str, int], Annotation] = {}
        for r in self.rows:
            for index in r.mmlu_indices:
                assert (r.subject, index) not in found, f"two Redux rows for {r.subject}/{index}"
                found[r.subject, index] = Annotation(r.error_type, r.correct_answer, r.redux_row)
        return found

    def get(self, subject: str, mmlu_index: int) -> Annotation | None:
        """The annotation of MMLU test row `mmlu_index` of `subject`; None if not in Redux."""
        return self._by_mmlu.get((subject, mmlu_index))

    def counts(self) -> Counter:
        """Redux rows per match kind (exact, duplicate, fuzzy, none)."""
        return Counter(r.match for r in self.rows)

    def error_types(self) -> Counter:
        """Redux rows per error_type, joined or not."""
        return Counter(r.error_type for r in self.rows)

    def unjoined(self) -> tuple[TableRow, ...]:
        """Redux rows tied to no MMLU row; each note says why."""
        return tuple(r for r in self.rows if r.match == "none")


def parse_table(text: str) -> ReduxTable:
    lines = text.splitlines()
    sha = next((ln.split(": ", 1)[1] for ln in lines if ln.startswith("# inputs sha256: ")), "")
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    assert body and tuple(body[0].split("\t")) == COLUMNS, f"{TABLE}: unexpected header"
    rows = []
    for line in body[1:]:
        subject, redux_row, indices, match, error_type, correct, note = line.split("\t")
        found = tuple(int(i) for i in indices.split(",") if i)
        rows.append(TableRow(subject, int(redux_row), found, match, error_type,
                             int(correct) if correct else None, note))
    return ReduxTable(tuple(rows), sha)


@functools.cache
def load_table() -> ReduxTable:
    """The table shipped in the package, read once."""
    return parse_table(resources.files("mmlu_bench").joinpath("data", TABLE).read_text("utf-8"))
