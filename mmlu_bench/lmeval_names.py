"""What lm-eval calls a format's results: the metric, the filters and the task names.

A format declares them (formats/base.py `naming`); the Summary carries them and every report
prints them. Log-likelihood formats are lm-eval's `acc` under the filter `none`, with the task's
own names (tasks/*.py `tree`). A generative format is lm-eval's `exact_match` under its filters
(`get_response`; `strict-match` and `flexible-extract`) and, where lm-eval 0.4.13 ships the same
recipe as a task of its own, that task's names, aliases and versions from its YAML files:

    mmlu_generative                    alias "mmlu (generative)", version 3
      mmlu_generative::stem ...        inline groups, named under the task, version N/A
        mmlu_anatomy_generative ...    task_alias "anatomy", version 3.0

Meta's recipes (llama3/instruct) name their category groups as groups of their own, with an
alias and a version each:

    mmlu_llama                         version 1
      mmlu_llama_stem ...              group_alias "stem", version 0 (the others 1)
        mmlu_llama_anatomy ...         task_alias "anatomy", version 1.0

A task lm-eval has no such variant of keeps its own row names (simple-evals: none at all).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from .schema import GroupResult


@dataclass(frozen=True, slots=True)
class TaskNames:
    """lm-eval's names for the rows of a three-level task (the task, its groups, its units)
    asked in one format: `unit` and `unit_alias` take {unit} (the unit's row name), {words}
    (it with spaces for "_") and {key}; `group` and `group_alias` take {top}, {group} (the
    group's row name, e.g. "social sciences"), {slug} (the task's own key without its prefix,
    "social_sciences") and {key}."""

    top: str  # the task's (lm-eval group's) name
    top_alias: str  # its group_alias
    unit: str  # a unit's task name
    unit_alias: str = "{unit}"  # its task_alias; "{key}" where the YAML has none
    group: str = "{top}::{group}"  # lm-eval names an inline group under its parent
    versions: tuple[str, str, str] = ("3", "N/A", "3")  # task, groups, units (metadata.version)
    note: str = ""  # printed under the table: where the rows differ from lm-eval's table
    group_alias: str = "{key}"  # an inline group prints its name; a named one its group_alias
    group_versions: Mapping[str, str] = field(default_factory=dict)  # by {slug}, where it differs
    group_version_text: bool = False  # lm-eval holds the groups' versions as text ("1")

    def rename(self, rows: Sequence[GroupResult]) -> tuple[GroupResult, ...]:
        return tuple(self._row(g) for g in rows)

    def _row(self, g: GroupResult) -> GroupResult:
        if g.unit:
            key = self.unit.format(unit=g.name)
            alias = self.unit_alias.format(unit=g.name, key=key, words=g.name.replace("_", " "))
            return replace(g, key=key, alias=alias, version=self.versions[2],
                           version_text=False)
        text = self.group_version_text and self.versions[0] != "N/A"
        if g.level == 0:
            return replace(g, key=self.top, alias=self.top_alias, version=self.versions[0],
                           version_text=text)
        slug = g.key.partition("_")[2]
        key = self.group.format(top=self.top, group=g.name, slug=slug)
        alias = self.group_alias.format(top=self.top, group=g.name, slug=slug, key=key)
        return replace(g, key=key, alias=alias,
                       version=self.group_versions.get(slug, self.versions[1]),
                       version_text=self.group_version_text)


@dataclass(frozen=True, slots=True)
class Naming:
    """A format's metric and filters (the first decides `correct` and is the headline), and
    lm-eval's row names per --task where they differ from the task's own."""

    metric: str = "acc"
    filters: tuple[str, ...] = ("none",)
    tasks: Mapping[str, TaskNames] = field(default_factory=dict)

    def rows(self, task: str, rows: Sequence[GroupResult]) -> tuple[GroupResult, ...]:
        names = self.tasks.get(task)
        return names.rename(rows) if names else tuple(rows)

    def note(self, task: str) -> str:
        names = self.tasks.get(task)
        return names.note if names else ""
