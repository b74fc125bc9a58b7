"""A Summary as lm-eval prints and writes it: its results table and its results-file shape.

Names come from the Summary (its rows' keys, aliases and versions; its metric and filters, as
the run's format declares them: lmeval_names.py), never from the format's name here."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .schema import GroupResult, RunHeader, Summary

HEADERS = ["Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"]
RIGHT = {1, 3, 6, 8}  # numeric columns, right-aligned as lm-eval's pytablewriter does


def _fmt(x: float) -> str:
    return "   N/A" if math.isnan(x) else f"{x:.4f}"


def _label(g: GroupResult) -> str:
    name = g.alias or g.name
    return name if g.level == 0 else " " * g.level + "- " + name


def _row(g: GroupResult, metric: str, filter_name: str, first: bool = True) -> list[str]:
    shots = "" if g.num_fewshot is None else str(g.num_fewshot)
    # lm-eval 0.4.13 leaves the higher-is-better arrow blank exactly where it leaves the
    # shots blank (the mmlu row; mmmlu's locale rows).
    arrow = "" if g.num_fewshot is None else "↑"
    return [_label(g) if first else "", g.version if first else "", filter_name, shots, metric,
            arrow, _fmt(g.acc), "±", _fmt(g.stderr)]


def _by_filter(summary: Summary) -> dict[str, tuple[GroupResult, ...]]:
    """Each filter's rows, all in the order of `summary.rows`; the primary filter first."""
    return {summary.filters[0]: summary.rows, **summary.filter_rows}


def _cells(summary: Summary, groups_only: bool = False) -> list[list[str]]:
    """One line per row and filter, as lm-eval prints a task's metrics: filters in the order
    of their "metric,filter" keys, the name and version on the first line only."""
    tables = _by_filter(summary)
    out = []
    for i, g in enumerate(summary.rows):
        if g.group or not groups_only:
            out += [_row(tables[f][i], summary.metric, f, n == 0)
                    for n, f in enumerate(sorted(tables))]
    return out


# A version lm-eval has no number for (an inline group's) is text to pytablewriter: the cell is
# left-aligned and its column loses the right-alignment colon. (Our N/A stderr is written
# pre-aligned, "   N/A", and keeps its column's.)
TEXT = "N/A"


def _center(text: str, width: int) -> str:
    """pytablewriter's centring: an odd space goes right (str.center may put it left)."""
    pad = width - len(text)
    return " " * (pad // 2) + text + " " * (pad - pad // 2)


def markdown_table(cells: Sequence[list[str]], title: str = "Tasks") -> str:
    """lm-eval's results table from _cells: same columns, same row order, the value and its
    stderr to 4 decimals."""
    cells = [[title] + HEADERS[1:]] + list(cells)
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    widths = [max(w, 3) for w in widths]
    numeric = [i in RIGHT and all(c[i] != TEXT for c in cells) for i in range(len(HEADERS))]

    def line(values: list[str], header: bool = False) -> str:
        out = []
        for i, v in enumerate(values):
            if header:
                out.append(_center(v, widths[i]))
            else:
                right = i in RIGHT and v != TEXT
                out.append(v.rjust(widths[i]) if right else v.ljust(widths[i]))
        return "|" + "|".join(out) + "|"

    rule = "|" + "|".join(("-" * (w - 1) + ":") if numeric[i] else "-" * w
                          for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0], True), rule] + [line(c) for c in cells[1:]]) + "\n"


def title(header: RunHeader) -> str:
    """The run line lm-eval prints above its table."""
    settings = header.backend_info.get("settings", {})
    limit = header.limit
    return (f"{header.backend} ({header.model}), limit: {limit if limit else None}, "
            f"num_fewshot: {header.num_fewshot}, batch_size: {settings.get('batch_size')}")


def full_table(summary: Summary, notes: Sequence[str] = ()) -> str:
    """The Tasks table, then the Groups table when there are groups, as lm-eval prints them;
    then the task's slices and any notes."""
    text = markdown_table(_cells(summary))
    if any(g.group for g in summary.rows):
        text += "\n" + markdown_table(_cells(summary, groups_only=True), "Groups")
    lines = [slice_line(s) for s in summary.slices] + [n for n in (summary.note, *notes) if n]
    return text + ("\n" + "\n".join(lines) + "\n" if lines else "")


def slice_line(s) -> str:
    return (f"{s.name}: {s.acc:.4f} (n={s.n}, 95% interval {s.low:.4f} to {s.high:.4f})"
            + (f"; {s.note}" if s.note else ""))


def data_line(header: RunHeader) -> str:
    """Where the questions came from: the bundled archive with its sha256, a folder or tar,
    or a hub dataset at its revision (the run header's data_source)."""
    source = header.backend_info.get("data_source")
    return f"Data: {source}" if source else ""


def table_footer(summary: Summary) -> str:
    if not summary.missing:
        return ""
    return (f"{summary.missing} question(s) had letters missing from the server's top "
            "log-probabilities (scored from the letters present).")


def _children(rows: Sequence[GroupResult], i: int) -> list[int]:
    """Indices of row i's direct children: the rows one level deeper until the next row at
    row i's level or above."""
    out = []
    for j in range(i + 1, len(rows)):
        if rows[j].level <= rows[i].level:
            break
        if rows[j].level == rows[i].level + 1:
            out.append(j)
    return out


def _version(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _entry(summary: Summary, i: int) -> dict:
    """Row i's results entry: its alias, then lm-eval's "metric,filter" and
    "metric_stderr,filter" for each filter (the primary first), then sample_len."""
    out: dict = {"alias": _label(summary.rows[i])}
    for f, rows in _by_filter(summary).items():
        g = rows[i]
        out[f"{summary.metric},{f}"] = g.acc
        out[f"{summary.metric}_stderr,{f}"] = "N/A" if math.isnan(g.stderr) else g.stderr
    out["sample_len"] = summary.rows[i].n
    return out


def results_json(summary: Summary, header: RunHeader) -> dict:
    """The shape of lm-eval's results file: results/groups keyed by task name with
    "metric,filter" and "metric_stderr,filter" ('acc,none', 'exact_match,get_response'),
    plus group_subtasks, n-shot, versions and config."""
    rows = summary.rows
    results = {g.key: _entry(summary, i) for i, g in enumerate(rows)}
    subtasks = {g.key: [rows[j].key for j in _children(rows, i)]
                for i, g in enumerate(rows) if g.group}
    out = {
        "results": results,
        "groups": {g.key: results[g.key] for g in rows if g.key in subtasks},
        "group_subtasks": subtasks,
        "versions": {g.key: _version(g.version) for g in rows},
        # Every lm-eval task row (a unit, or a flat task over units), not groups.
        "n-shot": {g.key: header.num_fewshot for g in rows if not g.group},
        "higher_is_better": {g.key: {summary.metric: True} for g in rows},
        "n-samples": {g.key: {"original": g.n, "effective": g.n} for g in rows if not g.group},
        "config": {"model": header.model, "backend": header.backend,
                   "task": summary.task, "num_fewshot": header.num_fewshot,
                   "limit": header.limit, "prompt_format": header.prompt_format,
                   **header.backend_info},
        "slices": {s.name: {"acc": s.acc, "n": s.n, "ci95": [s.low, s.high], "note": s.note}
                   for s in summary.slices},
        "questions_with_missing_letters": summary.missing,
        "mmlu_bench_version": header.tool_version,
    }
    if summary.flags:
        out["flags"] = [{"qid": f.qid, "label": f.label, "note": f.note} for f in summary.flags]
    assert not set(summary.blocks) & set(out), "a task block would hide a results.json key"
    return {**out, **summary.blocks}
