"""`mmlu-bench runs [ROOT]`: one line per run folder under ROOT, from each records.jsonl."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .model_spec import model_slug
from .records import RECORDS
from .result import load

log = logging.getLogger(__name__)

SORTS = ("acc", "date", "model")


@dataclass(frozen=True, slots=True)
class RunRow:
    folder: str
    model: str
    backend: str
    shots: int
    n: int
    acc: float
    stderr: float
    date: str  # the header's `started`, ISO 8601 UTC
    state: str  # "done", "partial" (no footer yet) or "sample"


def find(root: Path) -> list[RunRow]:
    """Every run folder directly under `root` (and `root` itself, if it is one). Folders whose
    records cannot be read are skipped with a warning in the log."""
    if not root.is_dir():
        raise UserError(f"{root}: no such folder; pass the folder that holds your run folders.")
    rows = []
    for path in sorted([root / RECORDS, *root.glob(f"*/{RECORDS}")]):
        if not path.is_file():
            continue
        try:
            run = load(path.parent)
        except UserError as e:
            log.warning("skipped: %s", e)
            continue
        h, s = run.header, run.summary
        state = "partial" if not run.finished else ("sample" if h.sample else "done")
        rows.append(RunRow(str(path.parent), model_slug(h.model), h.backend, h.num_fewshot,
                           s.n, s.acc, s.stderr, h.started, state))
    return rows


def sort(rows: list[RunRow], by: str) -> list[RunRow]:
    """acc: best first (runs with no score last); date: newest first; model: by name, then
    newest first."""
    assert by in SORTS, f"sort by one of {SORTS}"
    if by == "acc":
        return sorted(rows, key=lambda r: -r.acc if not math.isnan(r.acc) else math.inf)
    newest = sorted(rows, key=lambda r: r.date, reverse=True)
    return newest if by == "date" else sorted(newest, key=lambda r: r.model)


def table(rows: list[RunRow]) -> str:
    """An aligned plain-text table."""
    head = ("run", "model", "backend", "shots", "n", "accuracy", "date", "state")
    cells = [head] + [(r.folder, r.model, r.backend, str(r.shots), str(r.n), _acc(r),
                       r.date[:16].replace("T", " "), r.state) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    right = {3, 4, 5}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in cells]
    return "\n".join(lines) + "\n"


def _acc(r: RunRow) -> str:
    if math.isnan(r.acc):
        return "n/a"
    return f"{r.acc:.4f}" + ("" if math.isnan(r.stderr) else f" ± {r.stderr:.4f}")
