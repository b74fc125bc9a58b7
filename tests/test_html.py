"""report.html: escaping, self-containment, and a real headless Chromium load (no console
errors, the charts in the DOM, a screenshot to look at)."""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from mmlu_bench import cli, html_report
from mmlu_bench.records import RECORDS, read
from mmlu_bench.schema import QuestionRecord
from mmlu_bench import summary

from .browser import artifacts, load, screenshot

CHARTS = ("chart-overall", "chart-categories", "chart-subjects", "chart-letters",
          "chart-calibration")
NASTY = ['What does <script>alert("x")</script> print?', "Is a & b < c?",
         "```python\nif x < 3 and y > 2: print('</pre>')\n```", 'Quote "this" & <that>']


def write_data(root, subject="computer_security", rows=12):
    for split, count in (("test", rows), ("dev", 5)):
        (root / split).mkdir(parents=True)
        with open(root / split / f"{subject}_{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            for i in range(count):
                writer.writerow([NASTY[i % len(NASTY)] + f" #{i}", "<b>", "a & b", "x > y",
                                 "</li>", "ABCD"[i % 4]])
    return root


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory, mmlu_dir):
    out = tmp_path_factory.mktemp("html") / "run"
    assert cli.main(["run", "--model", "fake:<b>bold</b>&co", "--data-dir", str(mmlu_dir),
                     "--limit", "5", "--output", str(out), "--no-progress"]) == 0
    return out


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, flags=re.S)]


def test_page_is_self_contained_and_charts_are_well_formed(fake_run):
    page = (fake_run / "report.html").read_text()
    assert "<script" not in page and not re.search(r"\b(src|href)=", page)
    assert "@import" not in page and "url(" not in page
    charts = svgs(page)  # each chart parses as XML: no stray <, & or NaN
    assert [c.get("id") for c in charts] == list(CHARTS)
    assert "NaN" not in page and "nan" not in " ".join(c.get("width") for c in charts)
    assert "fake:" not in page and "&lt;b&gt;bold&lt;/b&gt;&amp;co" in page


def test_question_text_is_escaped(tmp_path, capsys):
    data = write_data(tmp_path / "data")
    out = tmp_path / "run"
    assert cli.main(["run", "--model", "fake:z", "--data-dir", str(data), "--subjects",
                     "computer_security", "--output", str(out), "--no-progress"]) == 0
    page = (out / "report.html").read_text()
    assert "Most confident mistakes" in page
    parsed = Parsed()
    parsed.feed(page)
    assert "script" not in parsed.tags and "pre" in parsed.tags
    text = "".join(parsed.text)  # the questions come back as text, not markup
    assert any(q in text for q in NASTY) and "answered" in text
    assert "&lt;b&gt;" in page or "a &amp; b" in page
    svgs(page)


class Parsed(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.add(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def test_missing_letters_and_unfinished_runs_render(fake_run):
    header, records, _ = read(fake_run / RECORDS)
    holes = [QuestionRecord(r.qid, r.subject, r.index, r.gold,
                            (None,) * 4 if i == 0 else (r.loglikelihoods[0], None) +
                            r.loglikelihoods[2:], -1 if i == 0 else r.pred,
                            False if i == 0 else r.correct, r.prompt_sha256, r.n_tokens)
             for i, r in enumerate(records[:20])]
    page = html_report.render(header, holes, None, summary.build(header, holes, False))
    assert "has not finished" in page
    conf, _ = html_report.confidences(holes)
    assert len(conf) == 19 and all(0.25 <= c <= 1 or math.isclose(c, 1) for c in conf)
    assert [c.get("id") for c in svgs(page)] == list(CHARTS)


def test_chromium_detects_console_errors(chromium, tmp_path):
    """The check below can fail: a page with a bad SVG attribute and a script error."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><svg><rect width="NaN" height="-1"/></svg>'
                   "<script>missing()</script>")
    _, console = load(bad, tmp_path / "profile")
    assert any("rect" in line for line in console) and any("missing" in line for line in console)


def check_in_chromium(run_dir, tmp_path, name: str, min_bars: int) -> str:
    page = run_dir / "report.html"
    dom, console = load(page, tmp_path / "profile")
    assert console == [], console
    for chart in CHARTS:
        assert re.search(rf'<svg id="{chart}"', dom), chart
    assert dom.count("<rect") >= min_bars  # bars really drawn
    png = screenshot(page, artifacts(tmp_path) / f"{name}.png", tmp_path / "profile")
    assert png.stat().st_size > 20_000
    return dom


def test_fake_run_report_in_chromium(chromium, fake_run, tmp_path):
    dom = check_in_chromium(fake_run, tmp_path, "report-fake", 57 + 4 + 1 + 8)
    assert "Expected calibration error" in dom


@pytest.mark.slow
def test_real_smollm2_report_in_chromium(chromium, smollm2_runs, tmp_path):
    zero, _ = smollm2_runs
    dom = check_in_chromium(zero, tmp_path, "report-smollm2-0shot", 2 + 2 + 1 + 8)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in dom and "anatomy" in dom
