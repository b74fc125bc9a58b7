"""records -> Summary: everything a report shows, computed once per run from the records.

Every format (the terminal table, markdown, results.json, the HTML page) and `compare` render a
Summary; none recomputes a number on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from . import formats, gen_metrics, metrics, sampling, tasks
from .schema import LETTERS, QuestionRecord, RunHeader, Summary
from .tasks.base import Task


def task_of(header: RunHeader) -> Task:
    """The task a run asked (runs from before tasks existed read as MMLU: schema.py)."""
    return tasks.get(header.task, **header.task_options)


def format_of(header: RunHeader) -> str:
    """The run's --format (runs from before formats existed, and chat runs, are "plain")."""
    return header.backend_info.get("settings", {}).get("format") or "plain"


def build(header: RunHeader, records: Sequence[QuestionRecord], finished: bool = True
          ) -> Summary:
    """The Summary of a run's records: every number any report or comparison shows."""
    task = task_of(header)
    naming = formats.naming(format_of(header), header.task, header.prompt_format)
    rows = naming.rows(task.name, metrics.summarize(records, task, header.num_fewshot))
    filter_rows = {name: naming.rows(task.name, metrics.summarize(
        gen_metrics.by_filter(records, name), task, header.num_fewshot))
        for name in naming.filters[1:]}
    est = sampling.overall(header, records, rows)
    widest = max((options(r) for r in records), default=4)
    chance = sum(1 / options(r) for r in records) / len(records) if records else math.nan
    slices = tuple(task.slices(records)) if records else ()
    blocks = task.blocks(records) if records else {}
    if records:  # the macro average first, beside lm-eval's micro rows
        line, blocks["macro_average"] = metrics.macro(records, task.unit_noun)
        slices = (line, *slices)
    failures = ()
    if gen_metrics.generated(records):
        slices += tuple(gen_metrics.slices(records))
        failures = gen_metrics.failures(records)
    return Summary(task=task.name, title=task.title, rows=tuple(rows), acc=est.acc,
                   stderr=est.stderr, n=est.n, population=est.population, chance=chance,
                   labels=LETTERS[:widest], missing=missing_letters(records),
                   slices=slices, finished=finished, failures=failures,
                   metric=naming.metric, filters=naming.filters, filter_rows=filter_rows,
                   note=naming.note(task.name),
                   flags=tuple(task.flags(records)) if records else (), blocks=blocks)


def options(r: QuestionRecord) -> int:
    """The question's number of options (a generative record has no log-likelihoods)."""
    return len(r.loglikelihoods) or r.n_options or 4


def missing_letters(records: Sequence[QuestionRecord]) -> int:
    """Questions where a server's top log-probabilities left out at least one letter."""
    return sum(1 for r in records if any(ll is None for ll in r.loglikelihoods))
