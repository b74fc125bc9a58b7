"""A Summary as lm-eval prints and writes it: its results table and its results-file shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

from .schema import GroupResult, Summary

HEADERS = ["Tasks", "Version", "Filter", "n-shot", "Metric", "", "Value", "", "Stderr"]
RIGHT = {1, 3, 6, 8}  # numeric columns, right-aligned as lm-eval's pytablewriter does


def _fmt(x: float) -> str:
    return "   N/A" if math.isnan(x) else f"{x:.4f}"


def _label(g: GroupResult) -> str:
    return g.name if g.level == 0 else " " * g.level + "- " + g.name


def _row(g: GroupResult) -> list[str]:
    shots = "" if g.num_fewshot is None else str(g.num_fewshot)
    # lm-eval 0.4.13 leaves the higher-is-better arrow blank exactly where it leaves the
    # shots blank (the mmlu row; mmmlu's locale rows).
    arrow = "" if g.num_fewshot is None else "↑"
    return [_label(g), g.version, "none", shots, "acc", arrow, _fmt(g.acc), "±", _fmt(g.stderr)]


def _center(text: str, width: int) -> str:
    """pytablewriter's centring: an odd space goes right (str.center may put it left)."""
    pad = width - len(text)
    return " " * (pad // 2) + text + " " * (pad - pad // 2)


def markdown_table(rows: Sequence[GroupResult], title: str = "Tasks") -> str:
    """lm-eval's results table: same columns, same row order, acc and stderr to 4 decimals."""
    cells = [[title] + HEADERS[1:]] + [_row(g) for g in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADERS))]
    widths = [max(w, 3) for w in widths]

    def line(values: list[str], header: bool = False) -> str:
        out = []
        for i, v in enumerate(values):
            if header:
                out.append(_center(v, widths[i]))
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


def full_table(summary: Summary, notes: Sequence[str] = ()) -> str:
    """The Tasks table, then the Groups table when there are groups, as lm-eval prints them;
    then the task's slices and any notes."""
    text = markdown_table(summary.rows)
    group_rows = [g for g in summary.rows if g.group]
    if group_rows:
        text += "\n" + markdown_table(group_rows, "Groups")
    lines = [slice_line(s) for s in summary.slices] + [n for n in notes if n]
    return text + ("\n" + "\n".join(lines) + "\n" if lines else "")


def slice_line(s) -> str:
    return (f"{s.name}: {s.acc:.4f} (n={s.n}, 95% interval {s.low:.4f} to {s.high:.4f})"
            + (f"; {s.note}" if s.note else ""))


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


def results_json(summary: Summary, header: dict) -> dict:
    """The shape of lm-eval's results file: results/groups keyed by task name with
    'acc,none' and 'acc_stderr,none', plus group_subtasks, n-shot, versions and config."""
    rows = summary.rows

    def entry(g: GroupResult) -> dict:
        stderr = "N/A" if math.isnan(g.stderr) else g.stderr
        return {"alias": _label(g), "acc,none": g.acc, "acc_stderr,none": stderr,
                "sample_len": g.n}

    results = {g.key: entry(g) for g in rows}
    subtasks = {g.key: [rows[j].key for j in _children(rows, i)]
                for i, g in enumerate(rows) if g.group}
    out = {
        "results": results,
        "groups": {g.key: results[g.key] for g in rows if g.key in subtasks},
        "group_subtasks": subtasks,
        "versions": {g.key: _version(g.version) for g in rows},
        # Every lm-eval task row (a unit, or a flat task over units), not groups.
        "n-shot": {g.key: header["num_fewshot"] for g in rows if not g.group},
        "higher_is_better": {g.key: {"acc": True} for g in rows},
        "n-samples": {g.key: {"original": g.n, "effective": g.n} for g in rows if not g.group},
        "config": {"model": header["model"], "backend": header["backend"],
                   "task": summary.task, "num_fewshot": header["num_fewshot"],
                   "limit": header["limit"], "prompt_format": header["prompt_format"],
                   **header.get("backend_info", {})},
        "slices": {s.name: {"acc": s.acc, "n": s.n, "ci95": [s.low, s.high], "note": s.note}
                   for s in summary.slices},
        "questions_with_missing_letters": summary.missing,
        "mmlu_bench_version": header["tool_version"],
    }
    if summary.flags:
        out["flags"] = [{"qid": f.qid, "label": f.label, "note": f.note} for f in summary.flags]
    assert not set(summary.blocks) & set(out), "a task block would hide a results.json key"
    return {**out, **summary.blocks}
