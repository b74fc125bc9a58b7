"""Reports, rebuilt from records alone: lm-eval's table (markdown) and lm-eval-shaped JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .schema import GroupResult, QuestionRecord

GROUP_ALIAS = {"social_sciences": "social sciences"}
# lm-eval 0.4.13's task versions: the mmlu groups are version 2, each subject task version 1.
VERSION = {0: "2", 1: "2", 2: "1"}
HEADERS = ["Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"]
RIGHT = {1, 3, 6, 8}  # numeric columns, right-aligned as lm-eval's pytablewriter does


def _fmt(x: float) -> str:
    return "   N/A" if math.isnan(x) else f"{x:.4f}"


def _row(g: GroupResult) -> list[str]:
    name = GROUP_ALIAS.get(g.name, g.name)
    label = name if g.level == 0 else " " * g.level + "- " + name
    shots = "" if g.num_fewshot is None else str(g.num_fewshot)
    # lm-eval 0.4.13 leaves the higher-is-better arrow blank on the top group's row.
    arrow = "" if g.level == 0 else "↑"
    return [label, VERSION[g.level], "none", shots, "acc", arrow, _fmt(g.acc), "±", _fmt(g.stderr)]


def markdown_table(rows: Sequence[GroupResult], title: str = "Tasks") -> str:
    """lm-eval's results table: same columns, same row order, acc and stderr to 4 decimals."""
    cells = [[title] + HEADERS[1:]] + [_row(g) for g in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    widths = [max(w, 3) for w in widths]

    def line(values: list[str], header: bool = False) -> str:
        out = []
        for i, v in enumerate(values):
            if header:
                out.append(v.center(widths[i]))
            else:
                out.append(v.rjust(widths[i]) if i in RIGHT else v.ljust(widths[i]))
        return "|" + "|".join(out) + "|"

    rule = "|" + "|".join(("-" * (w - 1) + ":") if i in RIGHT else "-" * w
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0], True), rule] + [line(c) for c in cells[1:]]) + "\n"


def title(header: dict) -> str:
    """The run line lm-eval prints above its table."""
    settings = header.get("backend_info", {}).get("settings", {})
    limit = header.get("limit")
    return (f"{header['backend']} ({header['model']}), limit: {limit if limit else None}, "
            f"num_fewshot: {header['num_fewshot']}, batch_size: {settings.get('batch_size')}")


def full_table(rows: Sequence[GroupResult], footer: str = "") -> str:
    """The Tasks table, then the Groups table, as lm-eval prints them for `mmlu`."""
    groups = [g for g in rows if g.level < 2]
    text = markdown_table(rows) + "\n" + markdown_table(groups, "Groups")
    return text + (f"\n{footer}\n" if footer else "")


def table_footer(records: Sequence[QuestionRecord]) -> str:
    missing = sum(1 for r in records if any(ll is None for ll in r.loglikelihoods))
    if not missing:
        return ""
    return (f"{missing} question(s) had letters missing from the server's top log-probabilities "
            "(scored from the letters present).")


def _task_key(g: GroupResult) -> str:
    return "mmlu" if g.level == 0 else f"mmlu_{g.name}"


def results_json(rows: Sequence[GroupResult], header: dict,
                 records: Sequence[QuestionRecord]) -> dict:
    """The shape of lm-eval's results file: results/groups keyed by task name with
    'acc,none' and 'acc_stderr,none', plus group_subtasks, n-shot, versions and config."""

    def entry(g: GroupResult) -> dict:
        alias = GROUP_ALIAS.get(g.name, g.name)
        label = alias if g.level == 0 else " " * g.level + "- " + alias
        stderr = "N/A" if math.isnan(g.stderr) else g.stderr
        return {"alias": label, "acc,none": g.acc, "acc_stderr,none": stderr, "sample_len": g.n}

    results = {_task_key(g): entry(g) for g in rows}
    subtasks: dict[str, list[str]] = {}
    parent = None
    for g in rows:
        if g.level == 1:
            parent = _task_key(g)
            subtasks.setdefault("mmlu", []).append(parent)
        elif g.level == 2:
            subtasks.setdefault(parent, []).append(_task_key(g))
    missing = sum(1 for r in records if any(ll is None for ll in r.loglikelihoods))
    return {
        "results": results,
        "groups": {k: v for k, v in results.items() if k == "mmlu" or k in subtasks["mmlu"]},
        "group_subtasks": subtasks,
        "versions": {_task_key(g): int(VERSION[g.level]) for g in rows},
        "n-shot": {_task_key(g): header["num_fewshot"] for g in rows if g.level == 2},
        "higher_is_better": {_task_key(g): {"acc": True} for g in rows},
        "n-samples": {_task_key(g): {"original": g.n, "effective": g.n}
                      for g in rows if g.level == 2},
        "config": {"model": header["model"], "backend": header["backend"],
                   "num_fewshot": header["num_fewshot"], "limit": header["limit"],
                   "prompt_format": header["prompt_format"], **header.get("backend_info", {})},
        "questions_with_missing_letters": missing,
        "mmlu_bench_version": header["tool_version"],
    }
