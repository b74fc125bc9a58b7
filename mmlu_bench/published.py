"""Published figures mmlu-bench knows how to reproduce, and a finished run held against them.

The figures are data (data/published.tsv: the model card's or leaderboard's number, its metric,
the recipe that computes the same quantity, the source). A run is compared with a figure when
  - its recipe is the figure's: the task (and language), the format, the shots, the chat
    template (with lm-eval's multi-turn shots and no system instruction), and every question
    of the task: no --limit, --sample or --subjects subset;
  - its model is the figure's: --published-model NAME when given (a fine-tune, a file named
    otherwise), else the run's model: a hub id, a folder, a .gguf file or an Ollama name whose
    name, without a quantization suffix (-Q4_K_M, .f16, ...), is one of the figure's names.
    A GGUF of the model is the usual case: "does my Q4 quant still score what the card says".
The comparison uses the same quantity the figure is: the macro average (each subject or
category weighs the same, with its interval: stats.macro_average), the micro average (the
table's top row, lm-eval's number, +- 1.96 stderr), or the Open LLM Leaderboard's normalized
score (its slice, with its Wilson interval mapped).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath

from .schema import RunHeader, Summary

QUANT = re.compile(r"[-._](i?q\d[\w]*|f16|f32|bf16|fp16|fp32)$")


@dataclass(frozen=True, slots=True)
class Figure:
    model: str
    aliases: tuple[str, ...]
    benchmark: str
    value: float  # percent, as published
    shown: str  # the figure as printed in the source ("73.0")
    metric: str  # macro_avg/acc, micro_avg/acc, normalized/acc
    task: str
    format: str
    shots: int
    chat: bool
    languages: str
    source: str
    note: str

    @property
    def average(self) -> str:
        return self.metric.split("_")[0].split("/")[0]  # macro, micro, normalized

    def command(self) -> str:
        """The mmlu-bench command computing the same quantity, on the model's hub id."""
        parts = ["mmlu-bench run", f"--model hf:{self.aliases[0]}"]
        if self.task != "mmlu":
            parts.append(f"--task {self.task}")
        if self.languages:
            parts.append(f"--languages {self.languages}")
        if self.format != "plain":
            parts.append(f"--format {self.format}")
        if self.chat:
            parts.append("--apply-chat-template")
        if self.shots:
            parts.append(f"--num-fewshot {self.shots}")
        return " ".join(parts)


def figures() -> list[Figure]:
    text = resources.files("mmlu_bench").joinpath("data/published.tsv").read_text("utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [Figure(r["model"], tuple(r["aliases"].split()), r["benchmark"], float(r["figure"]),
                   r["figure"], r["metric"], r["task"], r["format"], int(r["shots"]), r["chat"] == "yes",
                   r["languages"], r["source"], r["note"])
            for r in csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t")]


def canonical(name: str) -> str:
    """A model's name for matching: lower case, the file or folder name of a path (without
    .gguf), without a quantization suffix; a hub id or an Ollama name stays whole."""
    name = name.strip().lower().removesuffix("/")
    if name.endswith(".gguf") or name.startswith((".", "/", "~")):
        name = PurePosixPath(name).name.removesuffix(".gguf")
    while QUANT.search(name):
        name = QUANT.sub("", name)
    return name


def _names(figure: Figure) -> set[str]:
    out = set()
    for alias in figure.aliases:
        out |= {canonical(alias), canonical(alias).rsplit("/", 1)[-1]}
    return out


def matching(header: RunHeader, task_units: tuple[str, ...]) -> list[Figure]:
    """The figures a finished run reproduces (see the module's rules)."""
    settings = header.backend_info.get("settings", {})
    chat = header.chat or {}
    complete = (not header.limit and not header.sample
                and set(header.subjects) == set(task_units))
    if not complete or chat.get("system_instruction") or chat.get("fewshot_as_multiturn") is False:
        return []
    model = canonical(settings.get("published_model") or header.model)
    languages = (header.task_options or {}).get("languages", "")
    return [f for f in figures()
            if f.task == header.task and f.languages == languages
            and f.format == (settings.get("format") or "plain") and f.shots == header.num_fewshot
            and f.chat == bool(settings.get("apply_chat_template"))
            and (model in _names(f) or model.rsplit("/", 1)[-1] in _names(f))]


@dataclass(frozen=True, slots=True)
class Comparison:
    figure: Figure
    ours: float  # percent
    low: float
    high: float
    what: str  # which of our numbers

    @property
    def difference(self) -> float:
        return self.ours - self.figure.value

    @property
    def inside(self) -> bool:
        return self.low <= self.figure.value <= self.high


def compare(header: RunHeader, s: Summary, task_units: tuple[str, ...]) -> list[Comparison]:
    out = []
    for f in matching(header, task_units):
        if f.average == "macro":
            m = s.blocks.get("macro_average")
            if not m:
                continue
            acc, (low, high), what = m["acc"], m["ci95"], f"macro average over {m['units']} " \
                f"{m['unit']}"
        elif f.average == "normalized":
            found = [x for x in s.slices if x.name.startswith("normalized")]
            if not found:
                continue
            acc, low, high, what = found[0].acc, found[0].low, found[0].high, "normalized score"
        else:
            acc, what = s.rows[0].acc, f"micro average ({s.rows[0].key})"
            low, high = acc - 1.959963984540054 * s.rows[0].stderr, \
                acc + 1.959963984540054 * s.rows[0].stderr
        out.append(Comparison(f, 100 * acc, 100 * low, 100 * high, what))
    return out


def footer_line(c: Comparison) -> str:
    f = c.figure
    where = "inside" if c.inside else "outside"
    return (f"Published: {f.model}, {f.benchmark} {f.shots}-shot {f.metric} {f.shown} "
            f"({f.source}); this run: {c.ours:.2f} ({c.what}, 95% interval {c.low:.2f} to "
            f"{c.high:.2f}): {c.difference:+.2f} points, {where} the interval.")


def block(comparisons: list[Comparison]) -> list[dict]:
    """results.json `published`: each matched figure beside ours."""
    return [{"model": c.figure.model, "benchmark": c.figure.benchmark,
             "figure": c.figure.value, "metric": c.figure.metric, "source": c.figure.source,
             "ours": c.ours, "ci95": [c.low, c.high], "difference": c.difference,
             "inside_interval": c.inside, "ours_is": c.what} for c in comparisons]


def comparisons(header: RunHeader, s: Summary) -> list[Comparison]:
    """The run's comparisons with published figures: none for an unfinished run."""
    if not s.finished or not s.rows:
        return []
    from .summary import task_of

    return compare(header, s, task_of(header).units())


def html_section(found: list[Comparison]) -> str:
    """report.html's published figures beside this run's."""
    from .svg import esc

    if not found:
        return ""
    rows = "".join(
        f"<tr><td>{esc(c.figure.model)}</td><td>{esc(c.figure.benchmark)} "
        f"{c.figure.shots}-shot {esc(c.figure.metric)}</td><td class=\"num\">"
        f"{esc(c.figure.shown)}</td><td class=\"num\">{c.ours:.2f}</td><td>{c.low:.2f} to "
        f"{c.high:.2f}</td><td class=\"num\">{c.difference:+.2f}</td><td>"
        f"{'inside' if c.inside else 'outside'}</td><td><a href=\"{esc(c.figure.source)}\">"
        "source</a></td></tr>" for c in found)
    return ("<section id=\"published\"><h2>Published figures</h2><p class=\"muted\">The same "
            "quantity as published for this model, computed by this run (the figure's average: "
            "macro over units, or micro over questions).</p><table><tr><th>model</th>"
            "<th>benchmark</th><th>published</th><th>this run</th><th>95% interval</th>"
            "<th>difference</th><th>published figure</th><th></th></tr>" + rows
            + "</table></section>")


def listing(model: str | None = None) -> str:
    """`mmlu-bench published`: every figure, or one model's, with the command for it."""
    rows = [f for f in figures()
            if model is None or canonical(model) in _names(f) | {f.model.lower()}]
    lines = []
    for f in rows:
        lines += [f"{f.model} | {f.benchmark} | {f.shots}-shot | {f.metric} | {f.shown}",
                  f"    {f.command()}", f"    source: {f.source}"
                  + (f" ({f.note})" if f.note else "")]
    return "\n".join(lines) + "\n" if lines else f"No published figure for {model!r}.\n"
