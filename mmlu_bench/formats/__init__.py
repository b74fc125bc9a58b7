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
            "the task's own chain of thought, 'the answer is (X)': lm-eval's "
            "mmlu_flan_cot_zeroshot (mmlu), mmlu_pro (mmlu_pro)"),
    "simple-evals": ("mmlu_bench.formats.generative", "SimpleEvals",
                     "OpenAI simple-evals: one chat message, 'Answer: X' on the last line"),
    "llama": ("mmlu_bench.formats.llama", "MMLULlama",
              "Meta's Llama 3.1 recipe, 'The best answer is' pre-filled: lm-eval's mmlu_llama "
              "(mmlu), mmlu_pro_llama (mmlu_pro), mmlu_<lang>_llama (mmlu_llama_multilingual)"),
    "llama-cot": ("mmlu_bench.formats.llama", "MMLUCoTLlama",
                  "Meta's 0-shot chain of thought, the last 'best answer is X': lm-eval's "
                  "mmlu_cot_llama (mmlu)"),
}

# A format that is each task's own recipe: (format, task) -> (module, class). Such a format
# runs only on the tasks it has a row for (lm-eval has no chain of thought for the others),
# unless it has a row for ANY: that recipe serves every task without a row of its own.
ANY = "*"
RECIPES: dict[tuple[str, str], tuple[str, str]] = {
    ("cot", "mmlu"): ("mmlu_bench.formats.generative", "FlanCoT"),
    ("cot", "mmlu_pro"): ("mmlu_bench.formats.mmlu_pro_cot", "ProCoT"),
    ("generative", "mmlu_redux"): ("mmlu_bench.formats.mmlu_redux_generative",
                                   "ReduxGenerative"),  # lm-eval `mmlu_redux_generative`
    ("generative", ANY): ("mmlu_bench.formats.generative", "Generative"),  # `mmlu_generative`
    ("llama", "mmlu"): ("mmlu_bench.formats.llama", "MMLULlama"),  # `mmlu_llama`
    ("llama", "mmlu_pro"): ("mmlu_bench.formats.llama", "ProLlama"),  # `mmlu_pro_llama`
    ("llama", "mmlu_llama_multilingual"): ("mmlu_bench.formats.llama", "MMLULlama"),
    ("llama-cot", "mmlu"): ("mmlu_bench.formats.llama", "MMLUCoTLlama"),  # `mmlu_cot_llama`
}


def get(name: str, task: str | None = None, **settings) -> Format:
    """The format `name`; for `task`, that task's own recipe where the format has recipes."""
    return _class(name, task)(**settings)


def naming(name: str, task: str | None = None, prompt_format: str | None = None) -> Naming:
    """What lm-eval calls the results of a run in format `name` (a run header's format) on
    `task`; a recorded run whose task has no recipe of its own, or that was asked before the
    task had one (its header's `prompt_format` says), keeps the format's names."""
    try:
        cls = _class(name, task)
    except ConfigError:
        return _class(name).naming()
    if prompt_format is not None and not cls.asked(prompt_format):
        cls = _class(name)
    return cls.naming()


def _class(name: str, task: str | None = None) -> type[Format]:
    if name not in FORMATS:
        raise ConfigError(f"--format {name!r}: no such prompt format; use one of "
                          f"{', '.join(FORMATS)}.")
    module, cls, _ = FORMATS[name]
    recipes = {t: where for (f, t), where in RECIPES.items() if f == name}
    if task is not None and recipes:
        where = recipes.get(task) or recipes.get(ANY)
        if where is None:
            raise ConfigError(f"--format {name} is each task's own recipe, and --task {task} "
                              f"has none (lm-eval 0.4.13 has one for {', '.join(recipes)}); "
                              f"--task {task} takes --format {', '.join(usable(task))}.")
        module, cls = where
    return getattr(importlib.import_module(module), cls)


def usable(task: str) -> list[str]:
    """The formats `task` can be asked in."""
    per_task = {f for f, _ in RECIPES}
    return [f for f in FORMATS
            if f not in per_task or (f, task) in RECIPES or (f, ANY) in RECIPES]
