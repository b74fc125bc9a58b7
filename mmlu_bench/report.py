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
    out, firsts = [], []
    for i, g in enumerate(summary.rows):
        if g.group or not groups_only:
            firsts.append((len(out), g))
            out += [_row(tables[f][i], summary.metric, f, n == 0)
                    for n, f in enumerate(sorted(tables))]
    _format_versions([(out[at], g) for at, g in firsts if g.version])
    return out


class _Text(str):
    """A cell pytablewriter holds as text in a column that is not all numbers: left-aligned."""


def _format_versions(shown: list[tuple[list[str], GroupResult]]) -> None:
    """The Version cells as pytablewriter prints lm-eval's versions: a column of numbers
    (groups' "2" text parsed as one) with the most decimals any needs ("1.0" -> "1", but
    "2.0" beside "3.1" stays "2.0"); in a column with text ("N/A"), text left-aligned (a
    group's version, held as text) and each number with its own decimals. Trap (pytablewriter
    1.2.1, as lm-eval's mmlu_cot_llama table shows): a number held as text right after three
    right-aligned cells is right-aligned too."""
    numeric = all(_number(c[1]) for c, _ in shown)
    places = max((_places(c[1]) for c, _ in shown), default=0)
    right = []
    for cells, g in shown:
        v = cells[1]
        if numeric:
            cells[1] = f"{float(v):.{places}f}"
        elif not _number(v) or (g.version_text and not (len(right) >= 3 and all(right[-3:]))):
            cells[1] = _Text(v)
        else:
            cells[1] = f"{float(v):.{_places(v)}f}"
        right.append(not isinstance(cells[1], _Text))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _places(text: str) -> int:
    """Decimals a version needs (pytablewriter's float formatting): "1.0" 0, "3.1" 1."""
    return len(text.partition(".")[2].rstrip("0")) if _number(text) else 0


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
    numeric = [i in RIGHT and all(c[i] != TEXT and not isinstance(c[i], _Text) for c in cells)
               for i in range(len(HEADERS))]

    def line(values: list[str], header: bool = False) -> str:
        out = []
        for i, v in enumerate(values):
            if header:
                out.append(_center(v, widths[i]))
            else:
                right = i in RIGHT and v != TEXT and not isinstance(v, _Text)
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


def _version(g: GroupResult) -> int | float | str:
    """A row's version as lm-eval's results file holds it: a task's metadata.version as a
    number (1.0), a group's as text where lm-eval keeps it so ("2"; GroupResult.version_text),
    "N/A" where it has none."""
    if g.version_text or not _number(g.version):
        return g.version
    if g.group:  # groups whose text lm-eval is not known to keep: numbers, as before
        return int(g.version) if g.version.isdigit() else float(g.version)
    return float(g.version)


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
        "versions": {g.key: _version(g) for g in rows},
        # Every row lm-eval prints with its shots (tasks, and groups below the top), as its
        # results file lists them; higher_is_better over the same rows.
        "n-shot": {g.key: header.num_fewshot for g in rows if g.num_fewshot is not None},
        "higher_is_better": {g.key: {summary.metric: True} for g in rows
                             if g.num_fewshot is not None},
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
