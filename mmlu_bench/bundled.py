"""The MMLU data that ships inside the package: one pinned, compressed archive.

mmlu_bench/data/mmlu.tar.xz holds the 57 subjects' dev and test CSVs of the original release
(Hendrycks et al., MIT licence: data/mmlu.tar.xz.LICENSE) byte for byte, as
dev/<subject>_dev.csv and test/<subject>_test.csv. The questions live in the repository only inside this archive, never
as plain text. scripts/build_mmlu_archive.py rebuilds it deterministically and prints its
sha256, which is pinned here and checked every time the archive is read: a damaged or swapped
archive is an error, never other questions scored under the same name.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import tarfile
from pathlib import Path

from .errors import DataError

NAME = "mmlu.tar.xz"
ARCHIVE = Path(__file__).resolve().parent / "data" / NAME
# The sha256 scripts/build_mmlu_archive.py printed for the shipped archive.
SHA256 = "ff2dd4e9b89c2419a34d9a9cf8b280ac49bef3a4f0f2dc281d5abe23939e091d"
# Read once per process per archive content (keyed by its sha256): every MMLU run, its report
# and the Redux overlay read the same bytes.
_MEMBERS: dict[str, dict[str, bytes]] = {}


def source(sha256: str = SHA256) -> str:
    """The run header's data_source for the bundled archive (kind:where@revision)."""
    return f"bundled:mmlu_bench/data/{NAME}@sha256:{sha256}"


def members() -> dict[str, bytes]:
    """'test/anatomy_test.csv' -> its bytes, after checking the archive's sha256."""
    path = ARCHIVE
    data = _read(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != SHA256:
        raise DataError(f"{path}: sha256 is {actual}, expected {SHA256}: the bundled MMLU "
                        "archive is damaged or was replaced; reinstall mmlu-bench (in a clone: "
                        f"git checkout -- mmlu_bench/data/{NAME}), or pass --data-dir with "
                        "your own copy of MMLU.")
    if actual not in _MEMBERS:
        _MEMBERS[actual] = _unpack(path, data)
    return _MEMBERS[actual]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the bundled MMLU archive ({e.strerror}); "
                        "reinstall mmlu-bench, or pass --data-dir with your own copy of MMLU, "
                        "or --data-source hub.") from None


def _unpack(path: Path, data: bytes) -> dict[str, bytes]:
    # The sha256 matched, so a failure here means the pinned hash itself names a bad file.
    try:
        with tarfile.open(fileobj=io.BytesIO(lzma.decompress(data)), mode="r:") as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    except (lzma.LZMAError, tarfile.TarError, EOFError) as e:
        raise DataError(f"{path}: the bundled MMLU archive cannot be unpacked ({e}); "
                        "reinstall mmlu-bench, or pass --data-dir with your own copy of "
                        "MMLU.") from None
