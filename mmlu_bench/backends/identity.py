"""Model identity for the run header: enough to tell two model files apart on resume.

Hashing a model reads every byte (16 GB for an 8B model in bf16: tens of seconds at each start
and each resume), so a file's sha256 is remembered in the user's cache, keyed by its path, size,
modification time and inode; a file changed since gets read again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

# A file modified this recently may change again within the same timestamp tick without its
# key changing (git's "racy" files): hash it, but do not remember it.
RACY_SECONDS = 2.0


def cache_file() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "mmlu-bench" / "sha256.json"


def sha256(path: Path) -> str:
    """The file's sha256, from the cache when the file is unchanged since it was hashed."""
    st = path.stat()
    key = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    known = _read_cache()
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    digest = h.hexdigest()
    if time.time() - st.st_mtime > RACY_SECONDS:
        _remember(key, digest)
    return digest


def _read_cache() -> dict:
    try:
        return json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _remember(key: str, digest: str) -> None:
    """Best effort: a cache that cannot be written only costs a re-read next time."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        known = _read_cache()
        known[key] = digest
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, path)  # atomic: concurrent runs never read half a file
    except OSError:
        pass


def file_identity(path: Path) -> dict:
    """Size and sha256 of a model file (a GGUF)."""
    return {"model_file": path.name, "model_size": path.stat().st_size,
            "model_sha256": sha256(path)}


def folder_identity(path: Path) -> dict:
    """Total size and one sha256 over a model folder's files (names, sizes, contents' sha256),
    so a resume notices weights replaced in place. Hidden entries (.cache, .git) are left out."""
    files = sorted(f for f in path.rglob("*") if f.is_file()
                   and not any(part.startswith(".") for part in f.relative_to(path).parts))
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(path).as_posix()}\0{f.stat().st_size}\0{sha256(f)}\0".encode())
    return {"model_size": sum(f.stat().st_size for f in files), "model_sha256": h.hexdigest()}
