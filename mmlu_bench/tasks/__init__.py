"""Tasks (what is asked), picked from a plain table. Imports are lazy, as for backends.

A new benchmark is a module here and a row in TASKS. A format that lm-eval runs as another
task on the same data (its own prompts, shots, results tree, --limit) is a row in RECIPES.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import Task

# --task name -> (module, class, one line for `mmlu-bench tasks`)
TASKS: dict[str, tuple[str, str, str]] = {
    "mmlu": ("mmlu_bench.tasks.mmlu", "MMLU",
             "MMLU, 57 subjects, as lm-eval's `mmlu` (log-likelihood of A-D)"),
    "mmlu_pro": ("mmlu_bench.tasks.mmlu_pro", "MMLUPro",
                 "MMLU-Pro, 14 categories, as lm-eval's `leaderboard_mmlu_pro` (A-J); "
                 "with --format cot, lm-eval's `mmlu_pro`"),
    "mmlu_redux": ("mmlu_bench.tasks.mmlu_redux", "MMLURedux",
                   "MMLU-Redux 2.0: re-checked MMLU test rows, MMLU's loglik recipe (ok rows)"),
    "mmmlu": ("mmlu_bench.tasks.mmmlu", "MMMLU",
              "OpenAI's MMMLU, MMLU in 14 locales, as lm-eval's `mmmlu` (--languages de_de,..)"),
    "global_mmlu": ("mmlu_bench.tasks.global_mmlu", "GlobalMMLU",
                    "Global-MMLU, 42 languages, as lm-eval's `global_mmlu_full_<lang>`; "
                    "CS/CA split"),
    "global_mmlu_lite": ("mmlu_bench.tasks.global_mmlu", "GlobalMMLULite",
                         "Global-MMLU-Lite, 15 languages, as lm-eval's `global_mmlu_<lang>`; "
                         "CS/CA split"),
    "mmlu_llama_multilingual": ("mmlu_bench.tasks.mmlu_llama_multilingual",
                                "MMLULlamaMultilingual",
                                "Meta's Llama 3.1 multilingual MMLU (de es fr hi it pt th), as "
                                "lm-eval's `mmlu_<lang>_llama`; --format llama"),
}

# (--task, --format) -> (module, class). The task it builds records {"recipe": format} in its
# options, so a summary rebuilds it from the run header.
RECIPES: dict[tuple[str, str], tuple[str, str]] = {
    ("mmlu_pro", "cot"): ("mmlu_bench.tasks.mmlu_pro_cot", "MMLUProCoT"),  # lm-eval `mmlu_pro`
    ("mmlu_pro", "llama"): ("mmlu_bench.tasks.mmlu_pro_llama", "MMLUProLlama"),  # mmlu_pro_llama
}


def sources(name: str) -> tuple[str, ...]:
    """Where the task's questions come from without --data-dir, its default first (a task
    class's `sources`: "bundled" ships inside mmlu-bench, "hub" is downloaded)."""
    module, cls = TASKS[name][:2]
    return getattr(importlib.import_module(module), cls).sources


def get(name: str, recipe: str | None = None, **options) -> Task:
    """The task called `name`, built with its options (e.g. languages); as asked by the
    format `recipe` where RECIPES has a row for the two."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"--task {name!r}: no such task.{hint} `mmlu-bench tasks` lists them.")
    module, cls = RECIPES.get((name, recipe)) or TASKS[name][:2]
    return getattr(importlib.import_module(module), cls)(**options)
