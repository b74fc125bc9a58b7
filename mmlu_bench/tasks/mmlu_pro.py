"""MMLU-Pro (Wang et al., 2024) as lm-eval 0.4.13's `leaderboard_mmlu_pro` (Open LLM Leaderboard 2).

One flat lm-eval task over the 12,032 test questions of `TIGER-Lab/MMLU-Pro`: no description,
the question as stored (not stripped), its 3..10 options lettered A..J (not stripped either:
the leaderboard task predates lm-eval's option-stripping fix in `mmlu_pro`), "Answer:", and the
letters " A".." J" scored by log-likelihood. The k shots are the first k rows of the validation
split overall, the same for every question whatever its category. Accuracy is the plain mean
over questions (micro); the 14 categories are a breakdown lm-eval does not print.

Sources: a folder with test.jsonl or test*.parquet (and validation.jsonl / validation*.parquet
for k-shot), in the hub's columns, or the hub dataset at a pinned revision (cached).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError, UserError
from ..schema import LETTERS, Question, QuestionRecord, Slice, TaskData
from .base import Node, Task, first_n, slice_of

HUB_REPO = "TIGER-Lab/MMLU-Pro"
# The revision lighteval pins (12,032 test rows). The dataset has been revised under the same
# name (answers fixed, options cleaned), so a number is only comparable at a named revision.
HUB_REVISION = "3373e0b32277875b8db2aa555a333b78a08477ea"
TASK_KEY = "leaderboard_mmlu_pro"
TASK_VERSION = "0.1"  # lm-eval 0.4.13's metadata.version of leaderboard_mmlu_pro
# The `category` values, with spaces as stored; a unit is the category with "_" for " ".
CATEGORIES = ("biology", "business", "chemistry", "computer science", "economics",
              "engineering", "health", "history", "law", "math", "other", "philosophy",
              "physics", "psychology")
UNITS = tuple(c.replace(" ", "_") for c in CATEGORIES)
COLUMNS = ("question_id", "question", "options", "answer", "category", "src")
CHANCE_FLOOR = 0.1  # the leaderboard's random baseline: 1 of 10 options


class MMLUPro(Task):
    name = "mmlu_pro"
    title = "MMLU-Pro"
    # Bump when a change alters any prompt byte: resumed runs refuse a different format.
    prompt_format = "lm-eval-0.4.13-leaderboard_mmlu_pro"
    # One lm-eval task: --limit N is its first N test rows (doc ids 0..N-1), not N per category.
    limit_per_unit = False
    unit_noun = "categories"

    def units(self) -> tuple[str, ...]:
        return UNITS

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        if data_dir is None:
            from ..hub import download_dataset

            root = download_dataset(HUB_REPO, ["data/*"], revision=HUB_REVISION)
            return read_folder(root, units, f"hub:{HUB_REPO}@{HUB_REVISION}")
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise DataError(f"{path}: no such folder; pass --data-dir with MMLU-Pro's "
                            "test.jsonl (or test*.parquet), or leave it out to use the hub "
                            f"dataset {HUB_REPO}.")
        return read_folder(path, units, f"folder:{path.resolve()}")

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        """lm-eval's first_n over the whole validation split: no per-category filter (the
        leaderboard task has no process_docs), so every question gets the same k shots."""
        if not k:
            return ()
        pool = validation(data, k, "MMLU-Pro's few-shot examples come from its validation "
                          "split")
        return first_n(pool, k, "MMLU-Pro's validation split")

    def doc_to_text(self, q: Question) -> str:
        """lm-eval's leaderboard/mmlu_pro/utils.py doc_to_text: nothing stripped."""
        lines = [q.question] + [f"{LETTERS[i]}. {opt}" for i, opt in enumerate(q.choices)]
        return "\n".join(lines) + "\nAnswer:"

    def tree(self, units: Sequence[str]) -> list[Node]:
        """The lm-eval task row, then each category as a breakdown row."""
        present = tuple(sorted(set(units)))
        return [Node(TASK_KEY, TASK_KEY, 0, present, flat=True, version=TASK_VERSION)] + \
            [Node(u, f"mmlu_pro_{u}", 1, (u,), unit=True, nshot=False) for u in present]

    def slices(self, records: Sequence[QuestionRecord]) -> list[Slice]:
        return [normalized(records)]


def normalized(records: Sequence[QuestionRecord]) -> Slice:
    """The Open LLM Leaderboard's score: (acc - 0.1) / (1 - 0.1), the Wilson interval mapped the
    same way. It assumes 10 options, though about 17% of questions have fewer; below chance
    it is negative (lm-eval prints raw acc only)."""
    raw = slice_of("all", records)

    def f(x: float) -> float:
        return (x - CHANCE_FLOOR) / (1 - CHANCE_FLOOR)

    return Slice("normalized (acc - 0.1) / 0.9 (Open LLM Leaderboard)", f(raw.acc), raw.n,
                 f(raw.low), f(raw.high), note="raw acc rescaled; not a proportion",
                 proportion=False)


def read_folder(path: Path, units: tuple[str, ...], source: str) -> TaskData:
    """test (and, if present, validation) rows from `path` or its data/ folder. Every test row
    keeps its position in the whole split as `index` (lm-eval's doc_id), whichever categories
    are kept."""
    root = next((p for p in (path, path / "data") if _files(p, "test")), None)
    if root is None:
        raise DataError(f"{path}: no MMLU-Pro test split here; expected test.jsonl or "
                        "test*.parquet with the hub's columns (question_id, question, options, "
                        "answer, category, src).")
    wanted = set(units)
    test = {u: [] for u in units}
    for q in _questions(_files(root, "test")):
        if q.subject in wanted:
            test[q.subject].append(q)
    validation = tuple(_questions(_files(root, "validation"), cot=True))
    return TaskData({u: tuple(qs) for u, qs in test.items()}, {"validation": validation}, source)


def _files(root: Path, split: str) -> list[Path]:
    jsonl = root / f"{split}.jsonl"
    if jsonl.is_file():
        return [jsonl]
    return sorted(root.glob(f"{split}*.parquet")) if root.is_dir() else []


def _questions(files: list[Path], cot: bool = False):
    """Questions in stored order, numbered across the split's files; with `cot`, each keeps its
    worked answer (`cot_content`, None where the column is missing) for chain-of-thought shots."""
    index = 0
    for f in files:
        for line, row in _rows(f):
            yield _question(row, index, f"{f}:{line}", cot)
            index += 1


def _rows(path: Path):
    """(line or row number, row dict) of a jsonl or parquet file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise UserError("reading MMLU-Pro parquet files needs pyarrow: pip install "
                            "pyarrow (or give test.jsonl).") from None
        yield from enumerate(pq.read_table(path).to_pylist(), start=1)
        return
    with path.open(encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if text.strip():
                try:
                    yield line, json.loads(text)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{line}: not valid JSON ({e.msg}).") from None


def _question(row: dict, index: int, where: str, cot: bool = False) -> Question:
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise DataError(f"{where}: missing column(s) {', '.join(missing)}; MMLU-Pro rows need "
                        f"{', '.join(COLUMNS)}.")
    options, answer, category = row["options"], row["answer"], row["category"]
    if not isinstance(options, list) or not 1 <= len(options) <= len(LETTERS):
        raise DataError(f"{where}: options must be a list of 1 to 10 strings.")
    if category not in CATEGORIES:
        raise DataError(f"{where}: unknown category {category!r}; MMLU-Pro's are "
                        f"{', '.join(CATEGORIES)}.")
    # Gold is the `answer` letter, as lm-eval (doc_to_target: answer) and TIGER-Lab score it,
    # not `answer_index`: they disagree on question_id 3983 (answer C, answer_index 1), where
    # lighteval (gold_index=answer_index) can differ from lm-eval.
    if answer not in LETTERS[:len(options)]:
        raise DataError(f"{where}: answer {answer!r} is not one of the question's "
                        f"{len(options)} letters.")
    meta = {"question_id": row["question_id"], "src": row["src"]}
    if cot:
        meta["cot_content"] = row.get("cot_content")
    return Question(category.replace(" ", "_"), index, row["question"], tuple(options),
                    LETTERS.index(answer), meta)


def validation(data: TaskData, k: int, why: str, wanted: str = "") -> Sequence[Question]:
    """The validation rows k shots are drawn from, or one line saying how to get them."""
    pool = data.dev.get("validation", ())
    if not pool:
        raise DataError(f"--num-fewshot {k}: {why}, and {data.source} has none; add "
                        f"validation.jsonl (or validation*.parquet){wanted} there, or use "
                        "--num-fewshot 0.")
    return pool
