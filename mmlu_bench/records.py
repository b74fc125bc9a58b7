"""records.jsonl: the run header, then one line per question, appended as they are computed.

The file is the source of truth: every summary and report is recomputed from it. Lines are
flushed and fsynced after every batch; a torn last line (the process died mid-write) is
detected and dropped on the next read, never misread. Resume = skip what is already recorded.
When the run completes, the file is rewritten in canonical order (subject, index), so an
interrupted-and-resumed run ends byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from .errors import UserError
from .schema import QuestionRecord, RunHeader

RECORDS = "records.jsonl"


def header_json(header: RunHeader) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(header)))


def _record_line(r: QuestionRecord) -> str:
    return json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n"


def _parse_record(d: dict) -> QuestionRecord:
    d = dict(d)
    d["loglikelihoods"] = tuple(d["loglikelihoods"])
    return QuestionRecord(**d)


def read(path: Path) -> tuple[dict, list[QuestionRecord], dict | None]:
    """(header, records, footer-or-None) from a records file. A torn last line is dropped."""
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1] != b"":
        lines = lines[:-1]  # no newline at the end: the write was cut short
    header, records, footer = None, [], None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if "header" in obj:
                header = obj["header"]
            elif "footer" in obj:
                footer = obj["footer"]
            else:
                records.append(_parse_record(obj))
        except (ValueError, TypeError, KeyError):
            raise UserError(f"{path}:{number}: not a valid record line; restore the file, delete "
                            "that line to rescore the question, or use a new --output folder."
                            ) from None
    if header is None:
        raise UserError(f"{path}: no run header; use a new --output folder.")
    return header, records, footer


class RecordWriter:
    """Appends records; every `append` reaches the disk before it returns."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        if not path.exists() or path.stat().st_size == 0:
            self._write_atomic(json.dumps({"header": header_json(header)}) + "\n")
        else:
            _drop_torn_tail(path)
        self._file = open(path, "a", encoding="utf-8")

    def append(self, records: list[QuestionRecord]) -> None:
        self._file.write("".join(_record_line(r) for r in records))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def finalize(self, order: list[str], footer: dict) -> None:
        """Rewrite in canonical order (by qid position in `order`) with a footer line."""
        self.close()
        header, records, _ = read(self.path)
        rank = {qid: i for i, qid in enumerate(order)}
        records.sort(key=lambda r: rank[r.qid])
        text = json.dumps({"header": header}) + "\n" + "".join(_record_line(r) for r in records)
        self._write_atomic(text + json.dumps({"footer": footer}) + "\n")

    def _write_atomic(self, text: str) -> None:
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _drop_torn_tail(path: Path) -> None:
    """Cut a last line that has no newline (a write the process did not finish)."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
