"""`mmlu-bench report RUN_DIR --format ...`: one run's report as text, from records.jsonl alone.

table    lm-eval's tables, as `run` prints them
markdown a document to paste into an issue or README: run details, estimate, tables
json     report.results_json: lm-eval's results-file shape (docs/results-format.md)
html     html_report: the self-contained page `run` writes as report.html
"""

from __future__ import annotations

import json
from pathlib import Path

from . import html_report, metrics, report, sampling, stats
from .errors import UserError
from .records import RECORDS, read

FORMATS = ("table", "markdown", "json", "html")


def render(run_dir: Path, fmt: str) -> str:
    path = Path(run_dir) / RECORDS
    if not path.is_file():
        raise UserError(f"{run_dir}: no {RECORDS} here; pass a run folder written by "
                        "`mmlu-bench run`.")
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if fmt == "html":
        return html_report.render_run(Path(run_dir))
    header, records, footer = read(path)
    if fmt == "table":
        return table(header, records)
    if fmt == "json":
        return json.dumps(results(header, records), indent=2) + "\n"
    return markdown(header, records, footer)


def table(header: dict, records: list) -> str:
    """lm-eval's two tables under lm-eval's one-line run summary."""
    rows = metrics.summarize(records, header["num_fewshot"])
    notes = (report.table_footer(records), sampling.summary_line(header, records))
    return report.title(header) + "\n" + report.full_table(rows, "\n".join(n for n in notes if n))


def results(header: dict, records: list) -> dict:
    rows = metrics.summarize(records, header["num_fewshot"])
    out = report.results_json(rows, header, records)
    if header.get("sample"):
        out["sample"] = sampling.sample_json(header, records)
    return out


def markdown(header: dict, records: list, footer: dict | None) -> str:
    est = sampling.overall(header, records)
    low, high = stats.normal_interval(est.acc, est.stderr)
    info = header.get("backend_info", {})
    timing = {**(footer or {}), **(footer or {}).get("session", {})}
    lines = [f"# MMLU: `{header['model']}`", "",
             f"- backend: {header['backend']} ({info.get('device', '?')}, "
             f"{info.get('dtype', '?')})",
             f"- few-shot examples: {header['num_fewshot']}",
             f"- questions: {est.n}" + (f" (stratified sample, seed {header.get('seed')})"
                                        if header.get("sample") else
                                        f" (first {header['limit']} per subject)"
                                        if header.get("limit") else ""),
             f"- prompt format: {header.get('prompt_format', '')}",
             f"- started: {header.get('started', '')}",
             f"- wall time: {timing.get('wall_seconds', 'unfinished')} s", "",
             f"**Accuracy: {est.acc:.4f} ± {est.stderr:.4f}** (95% interval {low:.4f} to "
             f"{high:.4f})", "", table(header, records)]
    return "\n".join(lines)
