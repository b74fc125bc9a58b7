"""A run's reports as text (Result.report, `mmlu-bench report RUN_DIR --format ...`), each
rendered from the run's header, records, footer and Summary alone:

table    lm-eval's tables, as `run` prints them
markdown a document to paste into an issue or README: run details, estimate, tables
json     report.results_json: lm-eval's results-file shape (docs/results-format.md)
html     html_report: the self-contained page `run` writes as report.html
"""

from __future__ import annotations

import json

from . import gen_metrics, html_report, published, report, sampling, stats, summary
from .schema import QuestionRecord, RunFooter, RunHeader, Summary

FORMATS = ("table", "markdown", "json", "html")


def table(header: RunHeader, records: list[QuestionRecord], footer: RunFooter | None,
          s: Summary) -> str:
    """lm-eval's two tables under lm-eval's one-line run summary."""
    notes = (report.table_footer(s), gen_metrics.failure_note(s),
             sampling.summary_line(header, s), report.data_line(header),
             *map(published.footer_line, published.comparisons(header, s)))
    return report.title(header) + "\n" + report.full_table(s, notes)


def results(header: RunHeader, records: list[QuestionRecord], footer: RunFooter | None,
            s: Summary) -> dict:
    out = report.results_json(s, header)
    # lm-eval's chat_template, chat_template_sha, system_instruction(_sha), fewshot_as_multiturn
    out.update(header.chat)
    if header.sample:
        out["sample"] = sampling.sample_json(header, s)
    if s.failures:
        out["extraction_failures"] = gen_metrics.failures_json(s)
    found = published.comparisons(header, s)
    if found:
        out["published"] = published.block(found)
    return out


def markdown(header: RunHeader, records: list[QuestionRecord], footer: RunFooter | None,
             s: Summary) -> str:
    low, high = stats.normal_interval(s.acc, s.stderr)
    info = header.backend_info
    lines = [f"# {s.title}: `{header.model}`", "",
             f"- backend: {header.backend} ({info.get('device', '?')}, "
             f"{info.get('dtype', '?')})",
             f"- few-shot examples: {header.num_fewshot}",
             f"- questions: {s.n}" + (f" (stratified sample, seed {header.seed})"
                                      if header.sample else
                                      f" (first {header.limit} {_limit_scope(header)})"
                                      if header.limit else ""),
             f"- prompt format: {header.prompt_format}",
             f"- started: {header.started}",
             f"- wall time: {footer.wall_seconds if footer else 'unfinished'} s", "",
             f"**Accuracy: {s.acc:.4f} ± {s.stderr:.4f}** (95% interval {low:.4f} to "
             f"{high:.4f})", "", table(header, records, footer, s)]
    return "\n".join(lines)


def _limit_scope(header: RunHeader) -> str:
    """--limit N is per unit, or the first N of the split for a task lm-eval runs as one."""
    return "per subject" if summary.task_of(header).limit_per_unit else "of the test split"


def _json(header: RunHeader, records: list[QuestionRecord], footer: RunFooter | None,
          s: Summary) -> str:
    return json.dumps(results(header, records, footer, s), indent=2) + "\n"


def _html(header: RunHeader, records: list[QuestionRecord], footer: RunFooter | None,
          s: Summary) -> str:
    return html_report.render(header, records, footer, s,
                              html_report.questions(header, records))


RENDER = {"table": table, "markdown": markdown, "json": _json, "html": _html}
