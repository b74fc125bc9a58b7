"""Hugging Face hub downloads that fail with a message a person can act on.

Gated models, private repos and missing networks otherwise surface as long tracebacks.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError, ModelError


def _explain(repo_id: str, kind: str, error: Exception) -> str:
    from huggingface_hub import errors as e

    if isinstance(error, e.GatedRepoError):
        return (f"{repo_id} is gated: request access on its Hugging Face page, then log in with "
                "`hf auth login` (or set HF_TOKEN) and run again.")
    if isinstance(error, e.RepositoryNotFoundError):
        return (f"{repo_id}: no such {kind} on the Hugging Face hub, or it is private: check the "
                "name, or log in with `hf auth login` if you have access.")
    if isinstance(error, e.RevisionNotFoundError):
        return f"{repo_id}: that revision does not exist on the hub."
    if isinstance(error, (e.LocalEntryNotFoundError, e.OfflineModeIsEnabled, OSError)):
        hint = ("pass --data-dir with the task's data in a local layout" if kind == "dataset"
                else "pass a local model folder or .gguf file")
        return (f"{repo_id}: cannot reach the Hugging Face hub and it is not in the local cache; "
                f"download it once with network access (then HF_HUB_OFFLINE=1 works), or {hint}.")
    return f"{repo_id}: hub download failed ({type(error).__name__}); check the name and network."


def download_dataset(repo_id: str, patterns: list[str], revision: str | None = None) -> Path:
    """Snapshot of a dataset repo from the hub cache (downloading what is missing), at a
    pinned revision where the task gives one (datasets are revised under the same name)."""
    return _snapshot(repo_id, "dataset", patterns, DataError, revision)


def download_model(repo_id: str, patterns: list[str] | None = None) -> Path:
    return _snapshot(repo_id, "model", patterns, ModelError)


def _snapshot(repo_id: str, kind: str, patterns, error_type, revision: str | None = None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type=kind, allow_patterns=patterns,
                                      revision=revision))
    except Exception as first:  # noqa: BLE001 - every hub failure gets one explained line
        # No network but a complete cached snapshot: use it, as HF_HUB_OFFLINE=1 would.
        try:
            return Path(snapshot_download(repo_id, repo_type=kind, allow_patterns=patterns,
                                          revision=revision, local_files_only=True))
        except Exception:  # noqa: BLE001
            raise error_type(_explain(repo_id, kind, first)) from None
