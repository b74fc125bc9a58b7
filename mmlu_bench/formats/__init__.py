"""Prompt formats (how a task is asked), picked from a plain table, as tasks and backends are.

A format turns a task's questions into the requests a backend answers: lm-eval's plain prompt
scored by log-likelihood (the default), and so on. A new format is a module here and a row.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..lmeval_names import Naming
    from .base import Format

# name -> (module, class, one line for `mmlu-bench run --help`)
FORMATS: dict[str, tuple[str, str, str]] = {
    "plain": ("mmlu_bench.formats.plain", "Plain",
              "lm-eval's prompt, the letters scored by log-likelihood (default)"),
    "chat": ("mmlu_bench.formats.chat", "Chat",
             "lm-eval's --apply_chat_template: the model's chat template, letters scored by "
             "log-likelihood (--apply-chat-template)"),
    "generative": ("mmlu_bench.formats.generative", "Generative",
                   "lm-eval's mmlu_generative: greedy text, its first line must be the letter"),
    "cot": ("mmlu_bench.formats.generative", "FlanCoT",
            "lm-eval's mmlu_flan_cot_zeroshot: step-by-step text, 'the answer is (X)'"),
    "simple-evals": ("mmlu_bench.formats.generative", "SimpleEvals",
                     "OpenAI simple-evals: one chat message, 'Answer: X' on the last line"),
}


def get(name: str, **settings) -> Format:
    return _class(name)(**settings)


def naming(name: str) -> Naming:
    """What lm-eval calls the results of a run in format `name` (a run header's format)."""
    return _class(name).naming()


def _class(name: str) -> type[Format]:
    if name not in FORMATS:
        raise ConfigError(f"--format {name!r}: no such prompt format; use one of "
                          f"{', '.join(FORMATS)}.")
    module, cls, _ = FORMATS[name]
    return getattr(importlib.import_module(module), cls)
