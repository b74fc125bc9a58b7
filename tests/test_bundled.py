"""The MMLU bundled inside the package: pinned, rebuilt bit for bit, checked on every read, the
default source of mmlu and mmlu_redux (resumable across copies), and its questions nowhere
else in the repository."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from mmlu_bench import bundled, dataset, html_report, records
from mmlu_bench.cli import main
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError, DataError
from mmlu_bench.tasks import TASKS
from mmlu_bench.tasks.mmlu import SUBJECTS

from .conftest import SHARED, require, unpack_bundled

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "build_mmlu_archive.py"
SHARED_MMLU = SHARED / "data" / "mmlu"
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false")


def script():
    spec = importlib.util.spec_from_file_location("build_mmlu_archive", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_archive_holds_mmlus_114_files_and_matches_its_pin():
    data = bundled.ARCHIVE.read_bytes()
    assert sha256(data) == bundled.SHA256 and len(data) < 1_500_000
    names = script().names()
    assert len(names) == 114 and sorted(bundled.members()) == names
    with tarfile.open(bundled.ARCHIVE, "r:xz") as tar:  # what `tar tvJf` shows
        members = tar.getmembers()
    assert [m.name for m in members] == names
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == \
        {(0, 0, 0, "", "", 0o644)}


# The original files from ../shared where they are (CI always has them); an unpacked copy of
# the archive with other mtimes and modes everywhere, so a plain clone checks determinism too.
SOURCES = ["unpacked"] + (["shared"] if SHARED_MMLU.is_dir() or IN_CI else [])


@pytest.mark.parametrize("source", SOURCES)
def test_a_rebuild_gives_the_pinned_bytes(source, tmp_path):
    if source == "shared":
        require(SHARED_MMLU.is_dir(), f"the original MMLU files at {SHARED_MMLU}")
        folder = SHARED_MMLU
    else:
        folder = unpack_bundled(tmp_path / "copy")
        for i, f in enumerate(sorted(folder.rglob("*.csv"), reverse=True)):
            os.utime(f, (1e9 + 7919 * i, 1e9 + 7919 * i))
            f.chmod(0o600 if i % 2 else 0o664)
    out = tmp_path / "rebuilt.tar.xz"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # The original files through --check (built, compared with the shipped file and the pin);
    # the unpacked copy written out and compared byte for byte.
    extra = ["--check"] if source == "shared" else ["--out", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), str(folder), *extra],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    if source == "shared":
        assert done.stdout.splitlines() == [f"built {bundled.SHA256}",
                                            f"shipped {bundled.SHA256}",
                                            f"pinned {bundled.SHA256}", "identical"]
    else:
        assert done.stdout.startswith(f"{bundled.SHA256}  {out}")
        assert out.read_bytes() == bundled.ARCHIVE.read_bytes()


def test_check_mode_fails_on_other_bytes_and_a_folder_must_be_complete(tmp_path, monkeypatch,
                                                                       capsys):
    (tmp_path / "test").mkdir()
    module = script()
    with pytest.raises(SystemExit, match="114 MMLU files missing"):
        module.build(tmp_path)
    monkeypatch.setattr(module, "build", lambda folder: b"other bytes")
    assert module.main([str(tmp_path), "--check"]) == 1
    assert capsys.readouterr().out.endswith("DIFFERENT\n")


def flipped_copy(tmp_path: Path) -> tuple[Path, str]:
    """The package copied under tmp_path/pkg with one byte of its archive flipped."""
    shutil.copytree(ROOT / "mmlu_bench", tmp_path / "pkg" / "mmlu_bench",
                    ignore=shutil.ignore_patterns("__pycache__"))
    archive = tmp_path / "pkg" / "mmlu_bench" / "data" / bundled.NAME
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(data)
    return archive.resolve(), sha256(data)


def test_one_flipped_byte_fails_the_run_with_one_line(tmp_path, mmlu_dir):
    archive, actual = flipped_copy(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "pkg"), "HF_HUB_OFFLINE": "1"}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mmlu_bench.cli", "run", "--model",
                               "fake:x", "--subjects", "anatomy", "--limit", "2",
                               "--no-progress", *extra], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)

    done = run()
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"mmlu-bench: error: {archive}: sha256 is {actual}, "
                                  f"expected {bundled.SHA256}: ")
    assert "reinstall mmlu-bench" in done.stderr and "--data-dir" in done.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was written
    # What the message offers works: the user's own copy runs beside the damaged archive.
    done = run("--data-dir", str(mmlu_dir), "--output", str(tmp_path / "own"))
    assert done.returncode == 0, done.stderr


def test_a_missing_truncated_or_unreadable_archive_is_one_clear_error(tmp_path, monkeypatch):
    data = bundled.ARCHIVE.read_bytes()
    monkeypatch.setattr(bundled, "ARCHIVE", tmp_path / "gone.tar.xz")
    with pytest.raises(DataError, match=r"gone.tar.xz: cannot read the bundled MMLU archive "
                                        r"\(No such file or directory\); reinstall"):
        dataset.load(None, ("anatomy",))
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(data[:-1000])
    monkeypatch.setattr(bundled, "ARCHIVE", cut)
    with pytest.raises(DataError, match=f"sha256 is {sha256(data[:-1000])}, expected "
                                        f"{bundled.SHA256}"):
        dataset.load(None, ("anatomy",))
    # A pin naming a file that is not an xz tar (a bad release) says so too.
    monkeypatch.setattr(bundled, "SHA256", sha256(data[:-1000]))
    with pytest.raises(DataError, match="cut.tar.xz: the bundled MMLU archive cannot be "
                                        "unpacked"):
        dataset.load(None, ("anatomy",))


def test_every_read_checks_the_hash_and_parses_once(monkeypatch):
    first = dataset.load(None, ("anatomy",))
    reads = []
    monkeypatch.setattr(bundled, "_read", lambda path: reads.append(path) or
                        bundled.ARCHIVE.read_bytes())
    again = dataset.load(None, ("anatomy",))
    assert reads == [bundled.ARCHIVE]  # read and hashed again...
    assert again.test["anatomy"] is first.test["anatomy"]  # ...but not parsed again


def run_argv(out: Path, data_dir: Path | None) -> list[str]:
    return ["run", "--model", "fake:x", "--subjects", "anatomy,virology", "--limit", "5",
            "--num-fewshot", "2", "--output", str(out), "--no-progress",
            *(["--data-dir", str(data_dir)] if data_dir else [])]


@pytest.mark.parametrize("first", ["folder", "bundled"])
def test_a_run_resumes_from_the_other_copy(first, tmp_path, mmlu_dir, capsys):
    """The same questions from --data-dir or the bundled archive: one data fingerprint, so a
    run started on either resumes on the other."""
    dirs = {"folder": mmlu_dir, "bundled": None}
    then = "bundled" if first == "folder" else "folder"
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    assert main(run_argv(out, dirs[first])) == 0
    lines = (out / records.RECORDS).read_bytes().splitlines(keepends=True)
    (out / records.RECORDS).write_bytes(b"".join(lines[:1 + 4]))  # killed after 4 records
    capsys.readouterr()
    assert main(run_argv(out, dirs[then])) == 0
    assert "Scored 6 of 10 questions" in capsys.readouterr().out
    assert main(run_argv(fresh, dirs[then])) == 0
    (h1, r1, _), (h2, r2, _) = (records.read(d / records.RECORDS) for d in (out, fresh))
    assert h1.data_fingerprint == h2.data_fingerprint and r1 == r2
    sources = {"folder": f"folder:{mmlu_dir.resolve()}", "bundled": bundled.source()}
    assert h2.backend_info["data_source"] == sources[then]


def test_the_report_page_shows_bundled_question_text(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--model", "fake:x", "--subjects", "anatomy", "--limit", "3",
                 "--output", str(out), "--no-progress"]) == 0
    header, recs, _ = records.read(out / records.RECORDS)
    assert header.backend_info["data_source"] == bundled.source()
    shown = html_report.questions(header, recs)
    assert shown["anatomy/0"] == dataset.load(None, ("anatomy",)).test["anatomy"][0]
    assert bundled.SHA256 in (out / "report.html").read_text()
    other = dataclasses.replace(header, backend_info={"data_source": bundled.source("0" * 64)})
    assert html_report.questions(other, recs) == {}  # another archive: ids only


def test_data_source_option_is_checked():
    with pytest.raises(ConfigError, match="--data-source hub and --data-dir together"):
        RunConfig.from_spec("fake:x", data_source="hub", data_dir="x")
    with pytest.raises(ConfigError, match="--data-source bundled: --task mmlu_pro reads hub"):
        RunConfig.from_spec("fake:x", task="mmlu_pro", data_source="bundled")
    for task in ("mmlu", "mmlu_redux"):
        assert RunConfig.from_spec("fake:x", task=task, data_source="hub").data_source == "hub"
    with pytest.raises(SystemExit):  # argparse lists the choices
        main(["run", "--model", "fake:x", "--data-source", "disk"])


def test_tasks_says_which_run_offline(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    where = {line.split()[0]: line.split()[1] for line in out.splitlines()
             if line and line.split()[0] in ("mmlu", "mmlu_redux", "mmlu_pro", "mmmlu")}
    assert where == {"mmlu": "bundled,", "mmlu_redux": "bundled,", "mmlu_pro": "hub",
                     "mmmlu": "hub"}
    assert "runs offline out of the box" in out
    rows = [line for line in out.splitlines() if line.split(" ")[0] in TASKS]
    assert len(rows) == len(TASKS)
    # The second column starts at one place on every row, the longest name's included
    # (mmlu_llama_multilingual once ran past a fixed width of 17).
    assert len({re.search(r" (bundled, offline|hub) ", row).start() for row in rows}) == 1


def repository_text() -> str:
    """Every file of the repository as git sees it (tracked, or new and not ignored), but the
    archive, as one text."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    paths = [ROOT / n for n in names if n and (ROOT / n).is_file()]
    assert bundled.ARCHIVE in [p.resolve() for p in paths], "run from a git checkout"
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in paths
                     if p.resolve() != bundled.ARCHIVE)


def test_no_mmlu_question_is_in_the_repository_outside_the_archive():
    width = 48  # long enough to be one question's and no made-up fixture's
    data = dataset.load(None, SUBJECTS)
    # Question openings as a file would hold them unescaped (no quote, backslash or newline).
    openings = (q.question[:width] for qs in (*data.test.values(), *data.dev.values())
                for q in qs if len(q.question) >= width)
    starts = {s for s in openings if not set('"\\\n') & set(s)}
    assert len(starts) > 10_000
    text = repository_text()
    found = [text[i:i + width] for i in range(len(text) - width) if text[i:i + width] in starts]
    assert not found, f"MMLU question text outside the archive: {sorted(found)[:3]}"
