"""Rebuild mmlu_bench/data/mmlu_redux_2.0.tsv: MMLU-Redux 2.0 labels joined to MMLU test rows.

    python scripts/build_redux_table.py --redux-dir DIR [--mmlu-dir DIR] [--check]

--redux-dir holds the authors' mmlu_<subject>.csv files (aryopg/mmlu-redux, folder mmlu_redux/);
--mmlu-dir the original MMLU release (test/<subject>_test.csv; default: the MMLU bundled with
mmlu-bench). --check writes nothing and exits 1 when the shipped table differs from a fresh
build. The table holds indices and labels only.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter
from pathlib import Path

from mmlu_bench import redux
from mmlu_bench.dataset import load
from mmlu_bench.errors import UserError
from mmlu_bench.schema import Question

SHIPPED = Path(redux.__file__).parent / "data" / redux.TABLE
ATTRIBUTION = ("# MMLU-Redux 2.0 annotations (Gema et al. 2024, 'Are We Done With MMLU?', "
               "github.com/aryopg/mmlu-redux, CC BY 4.0) joined to MMLU test row indices by "
               "mmlu_bench; labels only, no question text.")


def inputs_sha256(redux_dir: Path, mmlu_test: dict[str, tuple[Question, ...]]) -> str:
    """sha256 over the authors' CSV files (name and bytes) and the MMLU test questions."""
    h = hashlib.sha256()
    for f in sorted(redux_dir.glob("mmlu_*.csv")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    for subject in sorted(mmlu_test):
        for q in mmlu_test[subject]:
            h.update(repr((q.qid, q.question, q.choices, q.gold)).encode())
    return h.hexdigest()


def render(result: redux.JoinResult, sha256: str) -> str:
    """The shipped TSV: comment lines, a header, then one line per Redux row."""
    lines = [ATTRIBUTION, f"# inputs sha256: {sha256}", "\t".join(redux.COLUMNS)]
    for link in result.links:
        r = link.row
        cells = (r.subject, str(r.row), ",".join(map(str, link.mmlu_indices)), link.match,
                 r.error_type, "" if r.correct_answer is None else str(r.correct_answer),
                 link.note)
        assert not any("\t" in c or "\n" in c for c in cells), f"unwritable cell in {cells}"
        lines.append("\t".join(cells))
    return "\n".join(lines) + "\n"


def build(redux_dir: Path, mmlu_dir: Path | None = None) -> tuple[str, redux.JoinResult]:
    """Parse, join and render (MMLU from `mmlu_dir`, else the bundled copy); the table is read
    back once to prove it loads."""
    rows = redux.parse_dir(redux_dir)
    where = None if mmlu_dir is None else str(mmlu_dir)
    mmlu_test = load(where, tuple(sorted({r.subject for r in rows}))).test
    result = redux.join(rows, mmlu_test)
    text = render(result, inputs_sha256(redux_dir, mmlu_test))
    redux.parse_table(text).get("", 0)  # asserts that no MMLU row carries two Redux rows
    return text, result


def summary(result: redux.JoinResult) -> str:
    counts = result.counts()
    joined = len(result.links) - counts["none"]
    lines = [f"rows {len(result.links)}, joined {joined}: exact {counts['exact']}, duplicate "
             f"{counts['duplicate']}, fuzzy {counts['fuzzy']}; unjoined {counts['none']}"]
    types = Counter(link.row.error_type for link in result.links)
    lines.append("error_type: " + ", ".join(f"{t} {types[t]}" for t in redux.ERROR_TYPES))
    for link in result.links:
        if link.match in ("fuzzy", "none"):
            lines.append(f"  {link.match:5} {link.row.subject}/{link.row.row}: {link.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redux-dir", type=Path, required=True)
    parser.add_argument("--mmlu-dir", type=Path, help="default: the bundled MMLU")
    parser.add_argument("--check", action="store_true",
                        help="compare with the shipped table instead of writing it")
    args = parser.parse_args(argv)
    try:
        text, result = build(args.redux_dir, args.mmlu_dir)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(result))
    if not args.check:
        SHIPPED.write_text(text, encoding="utf-8")
        print(f"wrote {SHIPPED}")
        return 0
    if SHIPPED.is_file() and SHIPPED.read_text(encoding="utf-8") == text:
        print(f"{SHIPPED} is up to date")
        return 0
    print(f"{SHIPPED} differs from a fresh build; run without --check to rewrite it",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
