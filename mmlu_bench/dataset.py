"""Reading MMLU-layout data -> Question (the subjects and categories live in tasks/mmlu.py).

Sources: the archive bundled with mmlu-bench (bundled.py; the default, offline), a folder in
the original release layout (dev/<subject>_dev.csv, test/<subject>_test.csv, headerless, answer
letter last), the original data.tar archive, or the Hugging Face dataset `cais/mmlu` (parquet,
read through the hub cache so it works offline once downloaded).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from . import bundled
from .errors import DataError, UserError
from .schema import LETTERS, Question, TaskData

HUB_REPO = "cais/mmlu"
BUNDLED, HUB = "bundled", "hub"  # --data-source: where the data comes from without --data-dir
# Parsed questions of the bundled archive by (its sha256, member): every MMLU run in a process
# (a run, its report page, a test session) parses each file once.
_PARSED: dict[tuple[str, str], tuple[Question, ...]] = {}


def parse_csv(data: bytes, where: str, subject: str) -> tuple[Question, ...]:
    """One headerless MMLU CSV (question, A, B, C, D, answer letter) -> questions."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{where}:{line}: not valid UTF-8; re-download the MMLU data.") from None
    if not text.strip():
        raise DataError(f"{where}: file is empty; re-download the MMLU data.")
    questions = []
    reader = csv.reader(io.StringIO(text, newline=""))
    for row in reader:
        line = reader.line_num
        if len(row) != 6:
            raise DataError(f"{where}:{line}: expected 6 columns (question, A, B, C, D, answer), "
                            f"got {len(row)}; fix or re-download the file.")
        answer = row[5].strip()
        if answer not in LETTERS[:4]:
            raise DataError(f"{where}:{line}: answer must be one of A, B, C, D, got {answer!r}.")
        questions.append(Question(subject, len(questions), row[0], tuple(row[1:5]),
                                  LETTERS.index(answer)))
    return tuple(questions)


def load(data_dir: str | None, subjects: tuple[str, ...], source: str | None = None) -> TaskData:
    """Load dev and test questions for `subjects` from a folder or data.tar (`data_dir`), the
    hub dataset (`source` "hub"), or else the archive bundled with mmlu-bench."""
    if data_dir is None:
        return _load_hub(subjects) if source == HUB else _load_bundled(subjects)
    path = Path(data_dir).expanduser()
    if path.is_file() and tarfile.is_tarfile(path):
        return _load_tar(path, subjects)
    if path.is_dir():
        for root in (path, path / "data"):
            if (root / "test").is_dir():
                return _load_folder(root, subjects)
        if (path / "data.tar").is_file():
            return _load_tar(path / "data.tar", subjects)
        raise DataError(f"{path}: no MMLU files here; expected test/<subject>_test.csv and "
                        "dev/<subject>_dev.csv (the original layout) or data.tar.")
    raise DataError(f"{path}: no such folder or tar archive; pass --data-dir pointing at the "
                    "MMLU data, or leave it out to use the MMLU bundled with mmlu-bench.")


def _splits(subjects: tuple[str, ...], parse: Callable[[str, str], tuple[Question, ...]],
            source: str) -> TaskData:
    """TaskData from parse(split, subject) for the test and dev splits of every subject."""
    test = {s: parse("test", s) for s in subjects}
    return TaskData(test, {s: parse("dev", s) for s in subjects}, source)


def _load_bundled(subjects: tuple[str, ...]) -> TaskData:
    files = bundled.members()  # checks the archive's sha256 on every load

    def parse(split: str, s: str) -> tuple[Question, ...]:
        name = f"{split}/{s}_{split}.csv"
        if name not in files:
            raise DataError(f"{bundled.ARCHIVE}: has no {name}; reinstall mmlu-bench.")
        key = (bundled.SHA256, name)
        if key not in _PARSED:
            _PARSED[key] = parse_csv(files[name], f"{bundled.ARCHIVE}:{name}", s)
        return _PARSED[key]

    return _splits(subjects, parse, bundled.source())


def _load_folder(root: Path, subjects: tuple[str, ...]) -> TaskData:
    def parse(split: str, s: str) -> tuple[Question, ...]:
        f = root / split / f"{s}_{split}.csv"
        if not f.is_file():
            raise DataError(f"{f}: missing; the MMLU {split} split needs one file per subject.")
        return parse_csv(f.read_bytes(), str(f), s)

    return _splits(subjects, parse, f"folder:{root.resolve()}")


def _load_tar(path: Path, subjects: tuple[str, ...]) -> TaskData:
    with tarfile.open(path) as tar:
        names = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def parse(split: str, s: str) -> tuple[Question, ...]:
            member = names.get(f"{s}_{split}.csv")
            if member is None:
                raise DataError(f"{path}: has no {s}_{split}.csv; is this MMLU's data.tar?")
            return parse_csv(tar.extractfile(member).read(), f"{path}:{member.name}", s)

        return _splits(subjects, parse, f"tar:{path.resolve()}")


def _load_hub(subjects: tuple[str, ...]) -> TaskData:
    from .hub import download_dataset

    root = download_dataset(HUB_REPO, [f"{s}/*" for s in subjects])

    def parse(split: str, s: str) -> tuple[Question, ...]:
        files = sorted((root / s).glob(f"{split}-*.parquet"))
        if not files:
            raise DataError(f"{root / s}: no {split} parquet file in the {HUB_REPO} "
                            "snapshot; delete it from the hub cache and run again.")
        found: list[Question] = []
        for f in files:
            found += _read_parquet(f, s, len(found))
        return tuple(found)

    # The snapshot folder is named after the dataset's commit: the revision that was read.
    return _splits(subjects, parse, f"hub:{HUB_REPO}@{root.name}")


def _read_parquet(path: Path, subject: str, start: int) -> list[Question]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading cais/mmlu needs pyarrow: pip install pyarrow "
                        "(or pass --data-dir with the original CSV files).") from None
    rows = pq.read_table(path, columns=["question", "choices", "answer"]).to_pylist()
    questions = []
    for i, row in enumerate(rows):
        if len(row["choices"]) != 4 or row["answer"] not in range(4):
            raise DataError(f"{path}: row {i} is not a four-choice question with answer 0..3.")
        questions.append(Question(subject, start + i, row["question"], tuple(row["choices"]),
                                  int(row["answer"])))
    return questions


def fingerprint(questions) -> str:
    """sha256 over the questions a run uses (test questions and few-shot examples), in order."""
    h = hashlib.sha256()
    for q in questions:
        h.update(json.dumps([q.qid, q.question, q.choices, q.gold]).encode())
    return h.hexdigest()
