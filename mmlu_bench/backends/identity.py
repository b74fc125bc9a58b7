"""Model identity for the run header: enough to tell two model files apart on resume."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _update(h, path: Path) -> None:
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)


def file_identity(path: Path) -> dict:
    """Size and sha256 of a model file (a GGUF), read in 8 MiB blocks."""
    h = hashlib.sha256()
    _update(h, path)
    return {"model_file": path.name, "model_size": path.stat().st_size, "model_sha256": h.hexdigest()}


def folder_identity(path: Path) -> dict:
    """Total size and one sha256 over a model folder's files (names and contents), so a resume
    notices weights replaced in place. Hidden entries (.cache, .git) are left out."""
    files = sorted(f for f in path.rglob("*") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(path).parts))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0".encode())
        _update(h, f)
    return {"model_size": sum(f.stat().st_size for f in files), "model_sha256": h.hexdigest()}
