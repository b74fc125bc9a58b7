"""records.jsonl: the run header, then one line per question, appended as they are computed.

The file is the source of truth: every summary and report is recomputed from it. Lines are
written and fsynced after every batch; a torn last line (the process died mid-write) is
detected and dropped on the next read, never misread. Resume = skip what is already recorded.
When the run completes, the file is rewritten in canonical order (subject, index) with a footer,
so an interrupted-and-resumed run ends byte-identical to an uninterrupted one (but for the
header's `started` and the footer's timing).
"""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError
from .schema import (FormatError, QuestionRecord, RunFooter, RunHeader, footer_from_json,
                     header_from_json, record_from_json, to_json)

RECORDS = "records.jsonl"
LOCK = ".lock"


def _line(value: RunHeader | QuestionRecord | RunFooter) -> str:
    if isinstance(value, QuestionRecord):
        return json.dumps(to_json(value), ensure_ascii=False) + "\n"
    kind = "header" if isinstance(value, RunHeader) else "footer"
    return json.dumps({kind: to_json(value)}) + "\n"


def _bad_line(path: Path, number: int, what: str) -> UserError:
    return UserError(f"{path}:{number}: {what}; restore the file, delete that line to rescore "
                     "the question, or use a new --output folder.")


def read(path: Path) -> tuple[RunHeader, list[QuestionRecord], RunFooter | None]:
    """(header, records, footer-or-None) from a records file, as the schema's types (a folder
    written before the records had a version reads the same). A torn last line is dropped."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"{path}: cannot read the records ({e.strerror}).") from None
    # The last piece has no newline after it: empty, or a write that was cut short. It is
    # dropped even when it happens to parse.
    lines = raw.split(b"\n")[:-1]
    header, records, footer, seen = None, [], None, set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        kind, value = _parse_line(path, number, line)
        if kind == "header":
            if number != 1:
                raise _bad_line(path, number, "a second run header")
            header = value
        elif kind == "footer":
            footer = value
        elif value.qid in seen:
            raise _bad_line(path, number, f"{value.qid} is recorded twice")
        else:
            seen.add(value.qid)
            records.append(value)
    if header is None:
        raise UserError(f"{path}: no run header; use a new --output folder.")
    return header, records, footer


def _parse_line(path: Path, number: int, line: bytes):
    """("header" | "footer" | "record", the typed value)."""
    try:
        obj = json.loads(line)
        if "header" in obj:
            try:
                return "header", header_from_json(obj["header"])
            except FormatError as e:  # a newer version, or not a header at all
                raise UserError(f"{path}: the run header cannot be read: {e}.") from None
        if "footer" in obj:
            return "footer", footer_from_json(obj["footer"])
        return "record", record_from_json(obj)
    except FormatError as e:
        raise _bad_line(path, number, f"not a valid record line ({e})") from None
    except (ValueError, TypeError, KeyError, AttributeError):
        raise _bad_line(path, number, "not a valid record line") from None


def disk_error(e: OSError, path: Path) -> UserError:
    """The message for a failed write: a full disk says how to go on."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"disk full while writing {path}; everything recorded before is kept: "
                         "free space and rerun the same command to resume.")
    return UserError(f"cannot write {path} ({e.strerror}); everything recorded before is kept: "
                     "fix that and rerun the same command to resume.")


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a raw write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class RecordWriter:
    """Appends records; every `append` reaches the disk before it returns."""

    def __init__(self, path: Path, header: RunHeader) -> None:
        self.path = path
        try:
            if not path.exists() or path.stat().st_size == 0:
                self._write_atomic(_line(header))
            # Unbuffered: a failed write leaves nothing behind in a buffer to flush at close.
            self._fd = os.open(path, os.O_RDWR | os.O_APPEND)
        except OSError as e:
            raise disk_error(e, path) from None
        _drop_torn_tail(self._fd)

    def append(self, records: list[QuestionRecord]) -> None:
        data = "".join(_line(r) for r in records).encode("utf-8")
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as e:
            raise disk_error(e, self.path) from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def finalize(self, order: list[str], footer: RunFooter) -> None:
        """Rewrite in canonical order (by qid position in `order`) with a footer line."""
        header, records, _ = read(self.path)
        rank = {qid: i for i, qid in enumerate(order)}
        records.sort(key=lambda r: rank[r.qid])
        try:
            self._write_atomic("".join(map(_line, [header, *records, footer])))
        except OSError as e:
            raise disk_error(e, self.path) from None
        finally:
            self.close()

    def _write_atomic(self, text: str) -> None:
        write_atomic(self.path, text)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once: a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def folder_lock(out_dir: Path):
    """Exclusive use of a run folder while a run reads and writes it: two runs appending to
    one records file would score questions twice. The lock file stays; the lock goes with the
    process, however it ends. (records.jsonl itself is replaced on finalize, so it cannot
    carry the lock.)"""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per folder is up to the user
        yield
        return
    path = out_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise disk_error(e, path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UserError(f"{out_dir}: another mmlu-bench run is using this folder; wait for it "
                        "or pass a different --output folder.") from None
    try:
        yield
    finally:
        os.close(fd)


def _drop_torn_tail(fd: int) -> None:
    """Cut a last line that has no newline (a write the process did not finish)."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    if data and not data.endswith(b"\n"):
        os.ftruncate(fd, data.rfind(b"\n") + 1)
