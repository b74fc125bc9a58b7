"""`mmlu-bench compare RUN_A RUN_B [...]` and `mmlu_bench.compare`: is the difference between
runs real?

Every run after the first is compared with the first (the baseline): accuracy deltas per
category and subject, and a paired test over the questions both runs scored (exact McNemar,
paired bootstrap interval), from the records alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from . import stats
from .model_spec import model_slug
from .result import Result
from .schema import GroupResult

ALPHA = 0.05


def _rows(run: Result) -> dict[str, GroupResult]:
    """The run's table rows by name: the task, its groups, its units."""
    return {g.name: g for g in run.summary.rows}


def _label(run: Result) -> str:
    return str(run.folder) if run.folder else "(no run folder)"


@dataclass(frozen=True, slots=True)
class Paired:
    """The paired comparison of run B against run A on the questions both scored."""

    n: int
    only_a: int  # b: A right, B wrong
    only_b: int  # c: A wrong, B right
    acc_a: float
    acc_b: float
    low: float  # bootstrap 95% interval for acc_b - acc_a
    high: float
    p_value: float  # exact McNemar

    @property
    def diff(self) -> float:
        return self.acc_b - self.acc_a


def paired(a: Result, b: Result, seed: int = 0) -> Paired:
    right_a = {r.qid: r.correct for r in a.records}
    shared = [(right_a[r.qid], r.correct) for r in b.records if r.qid in right_a]
    n = len(shared)
    if n == 0:
        return Paired(0, 0, 0, math.nan, math.nan, math.nan, math.nan, math.nan)
    only_a = sum(1 for x, y in shared if x and not y)
    only_b = sum(1 for x, y in shared if y and not x)
    low, high = stats.paired_bootstrap(only_a, only_b, n, seed)
    return Paired(n, only_a, only_b, sum(x for x, _ in shared) / n, sum(y for _, y in shared) / n,
                  low, high, stats.mcnemar_exact(only_a, only_b))


def verdict(p: Paired, a: str = "A", b: str = "B") -> str:
    """A plain-language reading of the paired test of run `b` against run `a`."""
    if p.n == 0:
        return "The runs share no questions, so they cannot be compared question by question."
    shown = (f"{p.diff:+.1%} (95% interval {p.low:+.1%} to {p.high:+.1%}; McNemar p = "
             f"{p.p_value:.3g}, {p.n} shared questions)")
    if p.p_value < ALPHA and (p.low > 0 or p.high < 0):
        better = "better" if p.diff > 0 else "worse"
        return (f"{b} is {better} than {a}: {shown}. A gap this large would be unlikely if the "
                "two runs were equally accurate.")
    if p.p_value < ALPHA or p.low > 0 or p.high < 0:
        return f"Borderline: {shown}. The tests disagree; score more questions to be sure."
    return (f"No clear difference: {shown}. A gap this size can come from chance alone; more "
            "questions would narrow the interval.")


def warnings(a: Result, b: Result) -> list[str]:
    """Differences in how the runs were made that make the comparison less like-for-like."""
    out = []
    for key, what in (("num_fewshot", "few-shot examples"), ("prompt_format", "prompt formats"),
                      ("limit", "--limit"), ("sample", "--sample"), ("seed", "sample seeds")):
        if getattr(a.header, key) != getattr(b.header, key):
            out.append(f"different {what}: {getattr(a.header, key)} vs {getattr(b.header, key)}")
    qa, qb = {r.qid for r in a.records}, {r.qid for r in b.records}
    if qa != qb:
        out.append(f"different question sets: {len(qa)} vs {len(qb)} questions, {len(qa & qb)} "
                   "shared; deltas compare different questions, the paired test uses the shared "
                   "ones only")
    for run in (a, b):
        if not run.finished:
            out.append(f"{_label(run)} has not finished: its numbers cover the questions so far")
    return out


def _fmt(x: float) -> str:
    return "   n/a" if math.isnan(x) else f"{x:6.1%}"


def _delta_table(runs: Sequence[Result], level: int) -> list[str]:
    tables = [_rows(r) for r in runs]
    names = sorted({n for rows in tables for n, g in rows.items()
                    if (g.unit if level == 2 else (g.group and g.level > 0))})
    base = tables[0]

    def key(name: str) -> float:
        d = [rows[name].acc - base[name].acc for rows in tables[1:]
             if name in rows and name in base]
        return d[0] if d else math.inf

    if level == 2:
        names.sort(key=key)  # biggest losses first
    width = max([len(n) for n in names] + [8])
    letters = [chr(ord("A") + i) for i in range(len(runs))]
    head = f"{'':{width}} " + " ".join(f"{x:>6}" for x in letters) + " " + \
        " ".join(f"{x + '-A':>7}" for x in letters[1:]) + "      n"
    lines = [head]
    for name in names:
        accs = [rows[name].acc if name in rows else math.nan for rows in tables]
        deltas = [acc - accs[0] for acc in accs[1:]]
        n = base[name].n if name in base else 0
        lines.append(f"{name:{width}} " + " ".join(_fmt(x) for x in accs) + " " +
                     " ".join(f"{d:+7.1%}" if not math.isnan(d) else "    n/a" for d in deltas)
                     + f" {n:6d}")
    return lines


def render(runs: Sequence[Result], seed: int = 0) -> str:
    """The comparison as text: the runs, deltas by category and subject, paired tests."""
    assert len(runs) >= 2, "compare needs two runs or more"
    out = ["Runs:"]
    for i, r in enumerate(runs):
        h, e = r.header, r.summary
        out.append(f"  {chr(ord('A') + i)}: {_label(r)}  {h.backend}:{model_slug(h.model)}, "
                   f"{h.num_fewshot}-shot, {e.n} questions, accuracy {_fmt(e.acc).strip()} "
                   f"± {_fmt(e.stderr).strip()}")
    out += ["", "By category:"] + _delta_table(runs, 1)
    out += ["", "By subject (largest drop first):"] + _delta_table(runs, 2)
    for i, r in enumerate(runs[1:], 1):
        label = chr(ord("A") + i)
        p = paired(runs[0], r, seed)
        out += ["", f"{label} vs A, paired over shared questions:",
                f"  only A right: {p.only_a}, only {label} right: {p.only_b}, of {p.n}",
                "  " + verdict(p, "A", label)]
        out += [f"  warning: {w}" for w in warnings(runs[0], r)]
    return "\n".join(out) + "\n"
