"""Run folders written before the typed read-back still load, and every report re-renders byte
for byte as the code that wrote them rendered it (tests/fixtures/run-2026-12-04/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmlu_bench import compare, listing, load_run
from mmlu_bench.schema import RECORDS_VERSION, header_from_json, to_json

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
    assert load_run(OLD / folder).report(FILES[name]) == expected


def test_compare_and_listing_read_as_before():
    runs = [OLD / n for n in ("mmlu-fake-0shot", "mmlu-fake-1shot", "mmlu-fake-partial")]
    assert compare(*runs, seed=0) == (OLD / "compare.txt").read_text()
    assert compare(*map(load_run, runs), seed=0) == (OLD / "compare.txt").read_text()
    rows = listing.sort(listing.find(OLD), "model")
    assert listing.table(rows) == (OLD / "runs.txt").read_text()


@pytest.mark.parametrize("folder", FOLDERS)
def test_a_version_1_header_reads_as_the_same_run_in_version_2(folder):
    """The header written without a version reads into the same RunHeader as its version-2
    JSON does, and that JSON is the old one plus the version."""
    line = (OLD / folder / "records.jsonl").read_text().splitlines()[0]
    old = json.loads(line)["header"]
    assert "records_version" not in old
    header = header_from_json(old)
    assert to_json(header) == {**old, "records_version": RECORDS_VERSION}
    assert header_from_json(to_json(header)) == header
    result = load_run(OLD / folder)
    assert result.header == header and result.finished == (folder != "mmlu-fake-partial")


@pytest.mark.parametrize("folder", FOLDERS)
def test_records_and_footers_write_back_byte_for_byte(folder):
    lines = (OLD / folder / "records.jsonl").read_text(encoding="utf-8").splitlines()
    result = load_run(OLD / folder)
    again = [json.dumps(to_json(r), ensure_ascii=False) for r in result.records]
    if result.footer:
        again.append(json.dumps({"footer": to_json(result.footer)}))
    assert again == lines[1:]
