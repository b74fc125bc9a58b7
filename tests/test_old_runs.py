"""Run folders written before the typed read-back still load, and every report re-renders byte
for byte as the code that wrote them rendered it (tests/fixtures/run-2026-12-04/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmlu_bench import compare, listing, report_formats

ROOT = Path(__file__).resolve().parent.parent
OLD = Path("tests/fixtures/run-2026-12-04")  # relative: the listings name folders as given
FOLDERS = sorted(p.name for p in (ROOT / OLD).iterdir() if p.is_dir())
FILES = {"results.md": "table", "results.json": "json", "report.html": "html",
         "report.md": "markdown"}


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_every_kind_of_run_is_here():
    assert len(FOLDERS) == 10, FOLDERS


@pytest.mark.parametrize("folder", FOLDERS)
@pytest.mark.parametrize("name", sorted(FILES))
def test_reports_render_as_they_were_written(folder, name):
    expected = (OLD / folder / name).read_text(encoding="utf-8")
    assert report_formats.render(OLD / folder, FILES[name]) == expected


def test_compare_and_listing_read_as_before():
    runs = [compare.load(OLD / n) for n in ("mmlu-fake-0shot", "mmlu-fake-1shot",
                                            "mmlu-fake-partial")]
    assert compare.render(runs, seed=0) == (OLD / "compare.txt").read_text()
    rows = listing.sort(listing.find(OLD), "model")
    assert listing.table(rows) == (OLD / "runs.txt").read_text()
