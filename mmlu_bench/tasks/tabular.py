"""A hub dataset's files as rows (dicts), read as lm-eval's `datasets.load_dataset` sees them.

The files come from the hub cache at a pinned revision (downloaded once, then offline) or from a
local folder in the same layout (--data-dir), as parquet or as CSV with a header row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError, UserError

# pandas.read_csv's default missing-value strings. `datasets` reads CSV through pandas, so a
# cell holding exactly one of these reaches lm-eval as None, which its Jinja prompt renders as
# "None": an option "NA" or "null" is shown to the model as "None".
PANDAS_NA = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
})


def source_root(repo: str, revision: str, patterns: list[str],
                data_dir: str | None) -> tuple[Path, str]:
    """(folder holding the dataset's files, its description for the run header)."""
    if data_dir is None:
        from ..hub import download_dataset

        return download_dataset(repo, patterns, revision=revision), f"hub:{repo}@{revision}"
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(f"{path}: no such folder; pass --data-dir with a copy of {repo} in the "
                        "hub's file layout, or leave it out to download it.")
    return path, f"folder:{path.resolve()}"


def files(folder: Path, stem: str, what: str) -> list[Path]:
    """The parquet files `folder`/`stem`*.parquet in name order, else the CSV ones."""
    for suffix in (".parquet", ".csv"):
        found = sorted(folder.glob(f"{stem}*{suffix}"))
        if found:
            return found
    raise DataError(f"{folder}: no {stem}*.parquet or {stem}*.csv file for {what}; check "
                    "--data-dir (the hub's layout), or delete the dataset from the hub cache "
                    "and run again.")


def rows(paths: Sequence[Path], columns: Sequence[str]) -> list[dict]:
    """Every row of the files, in order, with `columns` (text; missing values as None)."""
    out: list[dict] = []
    for path in paths:
        # ".parquet" anywhere in the name: Meta's evals files are "*.parquet.gzip"
        out += _parquet(path, columns) if ".parquet" in path.suffixes else _csv(path, columns)
    return out


def text(value) -> str:
    """A cell as lm-eval's Jinja template prints it: None (a missing value) as 'None'."""
    return "None" if value is None else str(value)


def letter_index(value, where, row: int, column: str) -> int:
    """A four-option answer letter A..D -> 0..3, or a DataError naming the file and row."""
    answer = text(value).strip()
    if answer not in ("A", "B", "C", "D"):
        raise DataError(f"{where}: row {row + 1}: {column} must be one of A, B, C, D, got "
                        f"{answer!r}.")
    return "ABCD".index(answer)


def _parquet(path: Path, columns: Sequence[str]) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("reading the dataset's parquet files needs pyarrow: pip install "
                        "pyarrow.") from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - a damaged or partial download
        raise DataError(f"{path}: not a readable parquet file ({e}); delete it and run "
                        "again.") from None
    _check(path, table.column_names, columns)
    return table.select(list(columns)).to_pylist()


def _csv(path: Path, columns: Sequence[str]) -> list[dict]:
    try:
        data = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8; re-download the file.") from None
    reader = csv.DictReader(io.StringIO(data, newline=""))
    _check(path, reader.fieldnames or [], columns)
    return [{c: None if row.get(c) in PANDAS_NA else row.get(c) for c in columns}
            for row in reader]


def _check(path: Path, present: Sequence[str], needed: Sequence[str]) -> None:
    missing = [c for c in needed if c not in present]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} (it has "
                        f"{', '.join(present) or 'none'}); is this the right dataset?")
