"""report.html: one self-contained page from records.jsonl alone (inline CSS and SVG, no
scripts, nothing fetched). Question text is added from the bundled MMLU, or where the run's
data folder is still there.

Every string from a run (model names, settings, MMLU questions, which contain `<`, `&` and
code) goes through svg.esc = html.escape before it reaches the page.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from . import bundled, stats, summary, svg
from .errors import UserError
from .schema import LETTERS, GroupResult, Question, QuestionRecord, RunFooter, RunHeader, Summary
from .svg import esc

log = logging.getLogger(__name__)

CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{padding:3px 8px;border-bottom:1px solid #eee;
text-align:left;vertical-align:top}td.num{text-align:right;font-variant-numeric:tabular-nums}
.big{font-size:2.2em;font-weight:600}.muted{color:#666}.warn{color:#a33}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:.9em}
dt{color:#666}dd{margin:0;word-break:break-all}pre{white-space:pre-wrap;margin:0}
"""


def questions(header: RunHeader, records: Sequence[QuestionRecord]) -> dict[str, Question]:
    """The run's questions by qid, when its data is the bundled archive (the same one) or a
    local folder or tar that still exists; otherwise none (the report then shows question ids
    only). Never downloads."""
    source = header.backend_info.get("data_source", "")
    kind, _, where = source.partition(":")
    ours = source == bundled.source()  # another mmlu-bench's archive may hold other bytes
    if not ours and (kind in ("hub", "bundled", "") or not Path(where).exists()):
        return {}
    units = tuple(sorted({r.subject for r in records}))
    try:
        data = summary.task_of(header).load(None if ours else where, units)
    except UserError as e:
        log.warning("question text left out of the report: %s", e)
        return {}
    return {q.qid: q for qs in data.test.values() for q in qs}


def render(header: RunHeader, records: Sequence[QuestionRecord], footer: RunFooter | None,
           s: Summary, questions: dict[str, Question] | None = None) -> str:
    from .published import comparisons, html_section

    body = [_run_header(header, records, footer), _overall(s, header),
            html_section(comparisons(header, s))]
    if records:
        body += [_groups(s), _slices(s), _flags(s, questions or {}), _letters(records, s.labels),
                 _calibration(records), _below(s), _mistakes(records, questions or {})]
    title = f"{s.title}: {short_name(header.model)}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>" + "".join(body) + "</body></html>\n")


def short_name(model: str) -> str:
    """A file or folder path shows as its last part; a hub id (org/name) stays whole."""
    if model.startswith(("/", "./", "../", "~")) or model.endswith(".gguf"):
        return Path(model).name or model
    return model


def _dl(items: Sequence[tuple[str, object]]) -> str:
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items) + "</dl>"


def _run_header(header: RunHeader, records: Sequence[QuestionRecord],
                footer: RunFooter | None) -> str:
    info = header.backend_info
    items = [("model", header.model), ("backend", header.backend),
             ("few-shot examples", header.num_fewshot),
             ("questions", _selection(header, len(records))),
             ("prompt format", header.prompt_format),
             ("data", info.get("data_source", "")), ("started", header.started),
             ("device / dtype", f"{info.get('device', '?')} / {info.get('dtype', '?')}"),
             ("mmlu-bench", header.tool_version)]
    if footer is None:
        timing = "<p class=\"warn\">The run has not finished: this page shows the questions " \
                 "recorded so far.</p>"
    else:
        timing = _dl(_timing(footer))
    settings = info.get("settings", {})
    return (f"<section id=\"run\"><h2>Run</h2>{_dl(items)}<h3>Timing</h3>{timing}"
            f"<details><summary>All settings</summary>{_dl(sorted(settings.items()))}"
            "</details></section>")


TIMING = {"wall_seconds": "wall time (s)", "questions": "questions recorded",
          "tokens": "tokens", "tokens_per_second": "tokens per second"}


def _timing(footer: RunFooter) -> list[tuple[str, object]]:
    """The footer's fields that are set, in TIMING's order."""
    values = [(label, getattr(footer, k)) for k, label in TIMING.items()]
    return [(label, v) for label, v in values if v is not None]


def _selection(header: RunHeader, n: int) -> str:
    if header.sample:
        return f"{n}: stratified random sample (--sample {header.sample}, seed {header.seed})"
    if header.limit:
        where = "each subject" if summary.task_of(header).limit_per_unit else "the test split"
        return f"{n}: the first {header.limit} of {where} (--limit)"
    return f"{n}: the full test set of the chosen subjects"


def _overall(s: Summary, header: RunHeader) -> str:
    low, high = stats.normal_interval(s.acc, s.stderr)
    interval = "" if math.isnan(s.stderr) else f"95% interval {_span(low, high)}"
    kind = ("stratified-sample estimate with finite population correction"
            if header.sample else "mean over questions; lm-eval's pooled stderr")
    bar = svg.Bar(s.title, s.acc, low, high, f"accuracy {s.acc:.1%}")
    chart = svg.hbar_chart("chart-overall", "Overall accuracy with 95% interval", [bar],
                           _chance(s), label_width=80)
    value = "n/a" if math.isnan(s.acc) else f"{s.acc:.1%}"
    return (f"<section id=\"overall\"><h2>Overall accuracy</h2><p><span class=\"big\">"
            f"{value}</span> {esc(interval)}</p><p class=\"muted\">{s.n} questions; "
            f"{esc(kind)}.</p>{chart}</section>")


def _chance(s: Summary) -> list[tuple]:
    """Chance follows the task: 1 / options, averaged over the questions (MMLU-Pro has 3..10)."""
    return [] if math.isnan(s.chance) else [(s.chance, "chance", svg.GREY)]


def _span(low: float, high: float) -> str:
    """An interval for display, cut to the possible range [0, 1] (the normal interval of a
    small sample can reach past either end)."""
    return f"{max(low, 0.0):.1%} to {min(high, 1.0):.1%}"


def _bar(g: GroupResult, color: str = svg.BLUE) -> svg.Bar:
    # Wilson, not acc +- 1.96 stderr: a unit with 0 of 10 right has stderr 0 and would show
    # no whisker at all, as if it were certain.
    low, high = stats.wilson(round(g.acc * g.n), g.n)
    return svg.Bar(g.name.replace("_", " "), g.acc, low, high,
                   f"{g.name}: {g.acc:.1%} of {g.n}", color)


def _parents(rows: Sequence[GroupResult]) -> dict[str, str]:
    """Each unit row's nearest group row above it (its category, locale...)."""
    out, stack = {}, []
    for g in rows:
        stack = [p for p in stack if p.level < g.level]
        if g.unit:
            out[g.name] = stack[-1].name if stack else ""
        stack.append(g)
    return out


def _groups(s: Summary) -> str:
    marks = _chance(s) + [(s.acc, "overall", svg.RED)]
    units = [g for g in s.rows if g.unit]
    parents = _parents(s.rows)
    names = sorted(set(parents.values()))
    colors = {name: svg.PALETTE[i % len(svg.PALETTE)] for i, name in enumerate(names)}
    middle = [g for g in s.rows if not g.unit and g.level > 0]
    parts = []
    if middle:
        parts.append("<h2>Categories</h2>" + svg.hbar_chart(
            "chart-categories", "Accuracy by category", [_bar(g) for g in middle], marks))
    legend = " ".join(f'<span style="color:{c}">&#9632;</span> {esc(name.replace("_", " "))}'
                      for name, c in colors.items()) if len(colors) > 1 else ""
    parts.append("<h2>Subjects</h2><p class=\"muted\">Whiskers: 95% Wilson intervals; few "
                 "questions per subject make them wide." + (" Colours: " + legend if legend
                                                            else "") + "</p>")
    parts.append(svg.hbar_chart("chart-subjects", "Accuracy by subject",
                                [_bar(g, colors[parents[g.name]]) for g in units], marks))
    return "<section id=\"groups\">" + "".join(parts) + "</section>"


def _slices(s: Summary) -> str:
    if not s.slices:
        return ""
    rows = "".join(f"<tr><td>{esc(x.name)}</td><td class=\"num\">{x.acc:.1%}</td>"
                   f"<td class=\"num\">{x.n}</td><td>{esc(_slice_span(x))}</td>"
                   f"<td>{esc(x.note)}</td></tr>" for x in s.slices)
    from .gen_metrics import failure_note

    note = failure_note(s)
    return ("<section id=\"slices\"><h2>Labelled subsets</h2><table><tr><th>subset</th>"
            "<th>accuracy</th><th>n</th><th>95% interval</th><th></th></tr>"
            + rows + "</table>" + (f"<p id=\"failures\">{esc(note)}</p>" if note else "")
            + "</section>")


def _flags(s: Summary, questions: dict[str, Question]) -> str:
    """The scored questions a label set calls out (Redux: a wrong MMLU answer), with text
    where the run's data is still there."""
    if not s.flags:
        return ""
    rows = []
    for f in s.flags:
        q = questions.get(f.qid)
        text = f"<pre>{esc(q.question)}</pre>" if q else ""
        rows.append(f"<tr><td>{esc(f.qid)}</td><td>{esc(f.label)}</td><td>{text}"
                    f"{esc(f.note)}</td></tr>")
    return ("<section id=\"flags\"><h2>Flagged questions</h2><p class=\"muted\">Scored as "
            "usual; listed because a label set (MMLU-Redux 2.0) marks their answer key.</p>"
            "<table><tr><th>question</th><th>label</th><th></th></tr>" + "".join(rows)
            + "</table></section>")


def _slice_span(x) -> str:
    """A proportion's interval is cut to [0, 1]; a rescaled score's (which can be negative)
    is shown as it is."""
    return _span(x.low, x.high) if x.proportion else f"{x.low:.1%} to {x.high:.1%}"


def letter_shares(records: Sequence[QuestionRecord], labels: Sequence[str] = LETTERS[:4]
                  ) -> tuple[list[float], list[float]]:
    """(predicted, gold) share of each letter. Questions with no prediction (-1: every
    letter missing) count in the gold shares only."""
    predicted = [r.pred for r in records if r.pred >= 0]
    pred = [predicted.count(i) / len(predicted) if predicted else math.nan
            for i in range(len(labels))]
    gold = [sum(r.gold == i for r in records) / len(records) for i in range(len(labels))]
    return pred, gold


def _letters(records: Sequence[QuestionRecord], labels: Sequence[str]) -> str:
    pred, gold = letter_shares(records, labels)
    chart = svg.grouped_bars("chart-letters", "Predicted letters against gold letters",
                             labels, [("predicted", svg.BLUE, pred), ("gold", svg.ORANGE, gold)])
    gaps = [(p - g, letter) for p, g, letter in zip(pred, gold, labels, strict=True)]
    gap, letter = max(gaps)
    note = (f"Most over-chosen letter: {letter}, picked {gap:+.1%} more often than it is the "
            "answer." if gap > 0 else "")
    return (f"<section id=\"letters\"><h2>Position bias</h2>{chart}<p>{esc(note)}</p>"
            "</section>")


def confidences(records: Sequence[QuestionRecord]) -> tuple[list[float], list[bool]]:
    """Top-letter probability (softmax over the letters present) and correctness, per
    question; questions with every letter missing are skipped."""
    conf, correct = [], []
    for r in records:
        probs = [p for p in stats.softmax(r.loglikelihoods) if p is not None]
        if probs:
            conf.append(max(probs))
            correct.append(r.correct)
    return conf, correct


def _calibration(records: Sequence[QuestionRecord]) -> str:
    conf, correct = confidences(records)
    bins, ece = stats.calibration(conf, correct)
    chart = svg.reliability("chart-calibration", "Calibration: accuracy by confidence", bins)
    return ("<section id=\"calibration\"><h2>Calibration</h2>"
            f"<p>Expected calibration error (ECE, 10 bins): <b id=\"ece\">{ece:.3f}</b>. "
            "Bars: accuracy per confidence bin; dots: mean confidence; the dashed diagonal is "
            "perfect calibration. Probabilities are the softmax over the letters' "
            "log-likelihoods.</p>" + chart + "</section>")


def _below(s: Summary, top: int = 10) -> str:
    overall = s.acc
    subjects = sorted((g for g in s.rows if g.unit), key=lambda g: g.acc - overall)
    lines = []
    for g in [g for g in subjects if g.acc < overall][:top]:
        interval = _span(*stats.wilson(round(g.acc * g.n), g.n))
        lines.append(f"<tr><td>{esc(g.name)}</td><td class=\"num\">{g.acc:.1%}</td>"
                     f"<td class=\"num\">{g.acc - overall:+.1%}</td><td class=\"num\">{g.n}</td>"
                     f"<td>{esc(interval)}</td></tr>")
    table = ("<table><tr><th>subject</th><th>accuracy</th><th>vs overall</th><th>n</th>"
             "<th>95% interval (Wilson)</th></tr>" + "".join(lines) + "</table>") if lines else \
        "<p>No subject is below the overall score.</p>"
    return f"<section id=\"below\"><h2>Furthest below the overall score</h2>{table}</section>"


def _mistakes(records: Sequence[QuestionRecord], questions: dict[str, Question],
              top: int = 8) -> str:
    wrong = [(max(p for p in stats.softmax(r.loglikelihoods) if p is not None), r)
             for r in records if not r.correct and r.pred >= 0 and r.loglikelihoods]
    wrong.sort(key=lambda pr: -pr[0])
    items = []
    for p, r in wrong[:top]:
        q = questions.get(r.qid)
        text = (f"<pre>{esc(q.question)}</pre><p>answered {LETTERS[r.pred]}. "
                f"{esc(q.choices[r.pred])}; gold {LETTERS[r.gold]}. {esc(q.choices[r.gold])}</p>"
                if q else f"<p>answered {LETTERS[r.pred]}; gold {LETTERS[r.gold]}</p>")
        items.append(f"<li><b>{esc(r.qid)}</b> ({p:.0%} confident){text}</li>")
    if not items:
        return ""
    return (f"<section id=\"mistakes\"><h2>Most confident mistakes</h2><ol>{''.join(items)}"
            "</ol></section>")
