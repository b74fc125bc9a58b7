"""Rows of a config of Meta's evaluation-details datasets (meta-llama/Llama-3.1-*-evals).

Their files are named by upload time (e.g. Llama-3.1-8B-Instruct-evals/Details_
multilingual_mmlu_de_<timestamp>.parquet.gzip, parquet despite the name), so the dataset card's
`configs` front matter (README.md, as `datasets` reads it) says which files a config's split
is: the card is read first, then those files. From the hub (its main branch, as lm-eval reads
it; the commit read is named in the run header) or a --data-dir folder in the same layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from . import tabular

CARD = "README.md"


def rows(repo: str, config: str, split: str, columns: Sequence[str],
         data_dir: str | None) -> tuple[list[dict], str]:
    """(every row of `config`'s `split`, with `columns`, in file order; the source)."""
    if data_dir is None:
        from ..hub import download_dataset

        root = download_dataset(repo, [CARD])
        paths = data_files(root / CARD, config, split)
        root = download_dataset(repo, [CARD, *paths])
        source = f"hub:{repo}@{root.name}"  # the snapshot folder is named by its commit
    else:
        root = Path(data_dir).expanduser()
        if not (root / CARD).is_file():
            raise DataError(f"{root}: no {CARD} with the dataset's configs here; pass "
                            f"--data-dir with a copy of {repo} in the hub's layout (its card "
                            "and data files), or leave it out to download it.")
        paths = data_files(root / CARD, config, split)
        source = f"folder:{root.resolve()}"
    files = [f for p in paths for f in sorted(root.glob(p)) if f.is_file()]
    if not files:
        raise DataError(f"{source}: {config} ({split}) names {', '.join(paths)}, and no such "
                        "file is there; download it again or check --data-dir.")
    return tabular.rows(files, columns), source


def data_files(card: Path, config: str, split: str) -> list[str]:
    """The file patterns the card's front matter gives `config`'s `split`."""
    from huggingface_hub.repocard import metadata_load

    configs = (metadata_load(card) or {}).get("configs") or []
    found = next((c for c in configs if c.get("config_name") == config), None)
    if found is None:
        names = ", ".join(str(c.get("config_name")) for c in configs[:5])
        raise DataError(f"{card}: no config {config} (it has {names or 'none'}); is this "
                        "Meta's evals dataset?")
    for entry in found.get("data_files") or []:
        if isinstance(entry, dict) and entry.get("split") == split:
            path = entry.get("path")
            return [path] if isinstance(path, str) else list(path)
    raise DataError(f"{card}: config {config} has no split {split!r}.")
