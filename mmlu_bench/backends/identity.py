"""Model identity for the run header: enough to tell two model files apart on resume."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_identity(path: Path) -> dict:
    """Size and sha256 of a model file (a GGUF), read in 8 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 << 20):
            h.update(block)
    return {"model_file": path.name, "model_size": path.stat().st_size, "model_sha256": h.hexdigest()}
