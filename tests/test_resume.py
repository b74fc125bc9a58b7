"""Never lose a run: resume, torn lines, refusals, signals, and SIGKILL at random moments.

Run as a script (`python tests/test_resume.py drive ...`) this file is the fault-injection
driver: see `drive`.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlu_bench import records
from mmlu_bench.cli import main
from mmlu_bench.records import RECORDS
from mmlu_bench.tasks.mmlu import MMLU

ROOT = Path(__file__).resolve().parent.parent
SUBJECTS = "anatomy,virology"


def run_argv(out: Path, data: Path, *extra: str, model: str = "fake:x") -> list[str]:
    return ["run", "--model", model, "--data-dir", str(data), "--subjects", SUBJECTS,
            "--limit", "20", "--output", str(out), "--no-progress", *extra]


def without_timing(path: Path) -> list[str]:
    """records.jsonl less the header's `started` and the footer's timing of one invocation;
    every record line byte for byte."""
    lines = path.read_text().splitlines()
    header, footer = json.loads(lines[0]), json.loads(lines[-1])
    header["header"].pop("started")
    for key in ("wall_seconds", "tokens_per_second"):
        footer["footer"].pop(key)
    return [json.dumps(header)] + lines[1:-1] + [json.dumps(footer)]


def assert_same_run(a: Path, b: Path) -> None:
    assert without_timing(a / RECORDS) == without_timing(b / RECORDS)
    for name in ("results.json", "results.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture
def reference(tmp_path, mmlu_dir):
    """An uninterrupted run, moved aside so the run under test can use the same --output."""
    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir)) == 0
    return out.rename(tmp_path / "reference")


def keep_lines(path: Path, n: int, tail: bytes = b"") -> None:
    """Cut a records file to its first n lines (header included), plus `tail` bytes."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:n]) + tail)


def test_resume_scores_only_what_is_missing(reference, tmp_path, mmlu_dir, monkeypatch):
    from mmlu_bench.backends import fake

    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir)) == 0
    keep_lines(out / RECORDS, 1 + 7)  # header and 7 records: as if killed after them
    asked, score = [], fake.FakeBackend.score

    def spy(self, requests):
        asked.extend(r.qid for r in requests)
        return score(self, requests)

    monkeypatch.setattr(fake.FakeBackend, "score", spy)
    assert main(run_argv(out, mmlu_dir)) == 0
    assert len(asked) == 40 - 7 and "anatomy/6" not in asked and "anatomy/7" in asked
    assert_same_run(reference, out)


@pytest.mark.parametrize("tail", [
    b'{"qid": "anatomy/3", "subject": "anat',  # cut mid-line
    b'{"qid": "anatomy/3"}',  # cut just before the newline: parses, but is still torn
], ids=["mid-line", "before-newline"])
def test_torn_last_line_is_dropped_and_rescored(reference, tmp_path, mmlu_dir, tail):
    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir)) == 0
    keep_lines(out / RECORDS, 1 + 3, tail)
    _, kept, footer = records.read(out / RECORDS)
    assert [r.qid for r in kept] == ["anatomy/0", "anatomy/1", "anatomy/2"] and footer is None
    assert main(run_argv(out, mmlu_dir)) == 0
    assert_same_run(reference, out)


def test_finished_run_is_not_rescored_and_keeps_its_footer(tmp_path, mmlu_dir, capsys):
    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir)) == 0
    before = (out / RECORDS).read_bytes()
    assert main(run_argv(out, mmlu_dir)) == 0
    assert (out / RECORDS).read_bytes() == before
    assert "Nothing left to score: all 40 questions" in capsys.readouterr().out


def test_speed_settings_may_change_on_resume(reference, tmp_path, mmlu_dir):
    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir)) == 0
    keep_lines(out / RECORDS, 1 + 5)
    assert main(run_argv(out, mmlu_dir, "--batch-size", "3", "--threads", "1")) == 0
    assert_same_run(reference, out)


def test_every_batch_is_fsynced(tmp_path, mmlu_dir, monkeypatch):
    from mmlu_bench.backends import fake

    synced, appended = [], []
    fsync, append = records.os.fsync, records.RecordWriter.append
    monkeypatch.setattr(records.os, "fsync", lambda fd: synced.append(fd) or fsync(fd))
    monkeypatch.setattr(records.RecordWriter, "append",
                        lambda self, recs: appended.append(len(recs)) or append(self, recs))
    monkeypatch.setattr(fake, "BATCH", 3)
    assert main(run_argv(tmp_path / "run", mmlu_dir)) == 0
    assert appended == [3] * 6 + [2] + [3] * 6 + [2]  # two subjects of 20, batches of 3
    # one fsync per batch, and one for each atomic rewrite (header, final records, results)
    assert len(synced) >= len(appended) + 2


def test_header_and_footer_identify_the_run(tmp_path, mmlu_dir):
    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir, "--num-fewshot", "2")) == 0
    header, recs, footer = records.read(out / RECORDS)
    assert (header.model, header.backend, header.num_fewshot, header.limit) == (
        "x", "fake", 2, 20)
    assert header.tool_version and header.prompt_format == MMLU.prompt_format
    assert len(header.data_fingerprint) == 64 and header.started.endswith("+00:00")
    info = header.backend_info
    assert {"device", "dtype", "settings", "data_source", "host"} <= set(info)
    assert {"system", "machine", "python", "cpus", "packages"} <= set(info["host"])
    assert "api_key" not in info["settings"]
    assert footer.questions == len(recs) == 40
    assert footer.tokens == sum(r.n_tokens for r in recs)
    assert footer.wall_seconds > 0 and footer.tokens_per_second > 0


def test_local_model_folder_identity_changes_with_its_files(tmp_path):
    from mmlu_bench.backends.identity import folder_identity

    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights-1")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "lock").write_text("ignored")
    first = folder_identity(tmp_path)
    (tmp_path / ".cache" / "lock").write_text("still ignored")
    assert folder_identity(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"weights-2")
    assert folder_identity(tmp_path)["model_sha256"] != first["model_sha256"]


def _edit_header(key: str, value):
    def edit(out: Path) -> None:
        lines = (out / RECORDS).read_text().splitlines(keepends=True)
        header = json.loads(lines[0])["header"]
        header["backend_info"][key] = value
        lines[0] = json.dumps({"header": header}) + "\n"
        (out / RECORDS).write_text("".join(lines))
    return edit


def _changed_question(data: Path) -> list[str]:
    test = data / "test" / "virology_test.csv"
    test.write_text(test.read_text().replace("?", " ?", 1))
    return []


# (id, extra flags or a change to the data/header, what the message must name)
REFUSALS = [
    ("model", ["--model", "fake:other"], 'model: recorded "x", now "other"'),
    ("shots", ["--num-fewshot", "2"], "num_fewshot: recorded 0, now 2"),
    ("limit", ["--limit", "10"], "limit: recorded 20, now 10"),
    ("subjects", ["--subjects", "anatomy"], "subjects: recorded"),
    ("setting", ["--no-prefix-sharing"], "prefix_sharing: recorded true, now false"),
    ("ctx-size", ["--ctx-size", "2048"], "ctx_size: recorded 4096, now 2048"),
    ("data", _changed_question, "data_fingerprint: recorded"),
    ("device", _edit_header("device", "cuda"), 'backend_info.device: recorded "cuda", now "none"'),
    ("dtype", _edit_header("dtype", "float16"), 'backend_info.dtype: recorded "float16"'),
    ("prompt-format", "prompt", "prompt_format: recorded"),
]


@pytest.mark.parametrize("name,change,expected", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_resume_with_a_different_run_is_refused(name, change, expected, tmp_path, mmlu_dir,
                                               capsys, monkeypatch):
    data = tmp_path / "data"
    for split in ("dev", "test"):
        (data / split).mkdir(parents=True)
        for s in SUBJECTS.split(","):
            name_ = f"{s}_{split}.csv"
            (data / split / name_).write_bytes((mmlu_dir / split / name_).read_bytes())
    out = tmp_path / "run"
    assert main(run_argv(out, data)) == 0
    keep_lines(out / RECORDS, 1 + 5)
    before = (out / RECORDS).read_bytes()
    argv = run_argv(out, data)
    if isinstance(change, list):
        argv += change
    elif change == "prompt":
        monkeypatch.setattr(MMLU, "prompt_format", "some-other-format")
    elif name == "data":
        change(data)
    else:
        change(out)
        before = (out / RECORDS).read_bytes()
    capsys.readouterr()
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"mmlu-bench: error: {out} holds a different run")
    assert expected in err[0] and "pass a new --output folder to start a new run" in err[0]
    assert (out / RECORDS).read_bytes() == before


def test_two_runs_in_one_folder_are_refused(tmp_path, mmlu_dir, capsys):
    out = tmp_path / "run"
    assert main(run_argv(out, mmlu_dir)) == 0
    keep_lines(out / RECORDS, 1 + 5)
    before = (out / RECORDS).read_bytes()
    with records.folder_lock(out):  # another run, live
        capsys.readouterr()
        assert main(run_argv(out, mmlu_dir)) != 0
        err = capsys.readouterr().err
    assert f"{out}: another mmlu-bench run is using this folder" in err
    assert (out / RECORDS).read_bytes() == before


# Signals, sent to a real process. The fake backend is slowed down (a sleep per batch) so the
# signal lands mid-run; everything else is the real CLI.
SLOW_CLI = """
import sys, time
from mmlu_bench.backends import fake

score = fake.FakeBackend.score
def slow(self, requests):
    for batch in score(self, requests):
        time.sleep(0.3)
        yield batch
fake.FakeBackend.score = slow
fake.BATCH = 4
if sys.argv[1] != "-":  # a cleanup that hangs, after creating the file sys.argv[1]
    fake.FakeBackend.close = lambda self: open(sys.argv[1], "w").close() or time.sleep(60)
from mmlu_bench.cli import main
sys.exit(main(sys.argv[2:]))
"""


def start_slow(argv: list[str], hang_marker: str = "-") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, hang_marker, *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_records(path: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not path.exists() or path.read_bytes().count(b"\n") < 1 + n:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_cleanly_and_prints_the_resume_command(signum, reference, tmp_path,
                                                             mmlu_dir):
    out = tmp_path / "run"
    argv = run_argv(out, mmlu_dir)
    proc = start_slow(argv)
    wait_for_records(out / RECORDS, 8, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert f"Interrupted ({signal.Signals(signum).name})" in err
    command = err.strip().splitlines()[-1].strip()
    assert command == "mmlu-bench " + shlex.join(argv)
    data = (out / RECORDS).read_bytes()
    assert data.endswith(b"\n") and records.read(out / RECORDS)[2] is None  # whole batches
    assert main(shlex.split(command)[1:]) == 0
    assert_same_run(reference, out)


def test_second_signal_exits_at_once(tmp_path, mmlu_dir):
    out = tmp_path / "run"
    closing = tmp_path / "closing"
    proc = start_slow(run_argv(out, mmlu_dir), str(closing))
    wait_for_records(out / RECORDS, 4, proc)
    proc.send_signal(signal.SIGINT)
    while not closing.exists():  # the first signal is being handled: close() hangs
        assert proc.poll() is None
        time.sleep(0.02)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGINT and time.monotonic() - start < 5
    assert len(records.read(out / RECORDS)[1]) >= 4


def test_python_m_cli_sigterm(tmp_path, mmlu_dir):
    """The module entry point itself, all 57 subjects, SIGTERM once records appear."""
    out = tmp_path / "run"
    argv = ["run", "--model", "fake:x", "--data-dir", str(mmlu_dir), "--output", str(out),
            "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "mmlu_bench.cli", *argv], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_records(out / RECORDS, 1, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal landed")
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1].strip() == "mmlu-bench " + shlex.join(argv)
    records.read(out / RECORDS)


def test_resume_command_keeps_the_output_folder_and_hides_the_key():
    from mmlu_bench.cli import _resume_command
    from mmlu_bench.config import RunConfig

    config = RunConfig.from_spec("fake:x", limit=5)
    given = ["run", "--model", "fake:x", "--limit", "5"]
    assert _resume_command(config, given).endswith("--limit 5 --output runs/fake_x_0shot_limit5")
    given = ["run", "--model", "fake:x", "--output=my run", "--api-key", "sk-1", "--api-key=sk-2"]
    assert _resume_command(config, given) == ("mmlu-bench run --model fake:x '--output=my run' "
                                              '--api-key "$OPENAI_API_KEY" '
                                              '--api-key="$OPENAI_API_KEY"')


# Fault injection: SIGKILL at 20 seeded random moments of a real model's run, resume each time.
KILLS, SEED = 20, 1234
FAULT_SUBJECTS = "abstract_algebra,anatomy,virology"


def tiny_llama(folder: Path, gguf: Path) -> None:
    """A randomly initialised 2-layer Llama (hidden size 256) with SmolLM2's real tokenizer.

    Big enough that its 30 batches take a while (~20 ms each): with two CPU lanes a smaller
    model scored all of them within a few milliseconds of the first record, and no kill could
    land mid-scoring."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _in_child(work, log: Path) -> int:
    """Run `work()` in a forked child with output to `log`; return the child's pid."""
    pid = os.fork()
    if pid == 0:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            code = work()
        finally:
            os._exit(code)
    return pid


def _finish(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _warm_imports(model: Path) -> None:
    """Import what a run imports lazily (transformers' Llama, its tokenizer classes) and load
    the tokenizer once: no torch op runs here, so forked children start clean."""
    import transformers.models.llama.modeling_llama  # noqa: F401
    from transformers import AutoTokenizer

    import mmlu_bench.backends.hf  # noqa: F401

    AutoTokenizer.from_pretrained(model)


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _timed_run(argv: list[str], path: Path, log: Path) -> tuple[float, float]:
    """Run to the end; (seconds until the first record line, seconds in all)."""
    start, first = time.perf_counter(), None
    pid = _in_child(lambda: main(argv), log)
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if first is None and _lines(path) > 1:
            first = time.perf_counter() - start
        time.sleep(0.005)
    total = time.perf_counter() - start
    return first or total, total


def _wait_for_lines(path: Path, count: int, pid: int, timeout: float = float("inf")) -> bool:
    """Wait until the records hold `count` lines or `timeout` seconds pass; False if the child
    exited first."""
    end = time.perf_counter() + timeout
    while _lines(path) < count and time.perf_counter() < end:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
        time.sleep(0.002)
    return True


def drive(spec: dict) -> dict:
    """Fork, don't spawn: torch and transformers are imported once here (seconds on this
    machine), and every run is a forked child that only loads the model and scores.

    The moments are seeded random and measured against the run itself, not the clock alone, so
    they fall the same way on a fast or a loaded machine: 3 kills in 10 come during start-up
    (model load, reading the records, cutting a torn tail; at the latest as the first new record
    lands), the others a random time of up to a batch's worth after the child has recorded a
    random share of the questions left (at most a third): mid-batch, between batches, near the
    end, in the final rewrite. Counting records, not seconds, keeps the kills mid-scoring however
    fast the passes are. The last run goes to the end."""
    model, out, log = Path(spec["model"]), Path(spec["out"]), Path(spec["log"])
    if not (model / "tokenizer.json").is_file():  # written last
        assert _finish(_in_child(lambda: tiny_llama(model, Path(spec["gguf"])) or 0, log)) == 0
    _warm_imports(model)
    argv, path = spec["argv"], out / RECORDS
    startup, whole = _timed_run(argv, path, log)
    assert records.read(path)[2] is not None, log.read_text()[-3000:]
    out.rename(spec["reference"])
    batches = spec["questions"] / int(argv[argv.index("--batch-size") + 1])
    batch = (whole - startup) / batches
    rng, seen = random.Random(SEED), []
    for _ in range(KILLS):
        early = rng.random() < 0.3
        delay = rng.uniform(0, startup) if early else rng.uniform(0, batch)
        recorded = len(records.read(path)[1]) if path.exists() else 0
        # Lines now: the header (written first, also by a fresh run) and the records so far.
        base = 1 + recorded
        target = base + rng.randint(1, max(1, (spec["questions"] - recorded) // 3))
        pid = _in_child(lambda: main(argv), log)
        # An early kill comes at a random moment of start-up, or as the first new record lands
        # if that comes sooner: a resumed run starts faster than the first one (warm caches),
        # and a kill after its end would leave nothing to resume (seen on CI: a kill 1.3 s in
        # found the run finished).
        if early:
            alive = _wait_for_lines(path, base + 1, pid, timeout=delay)
        else:
            alive = _wait_for_lines(path, target, pid)
            time.sleep(delay)
        if alive:
            os.kill(pid, signal.SIGKILL)
            _finish(pid)
        seen.append(len(records.read(path)[1]) if path.exists() else -1)
    assert _finish(_in_child(lambda: main(argv), log)) == 0, log.read_text()[-3000:]
    return {"startup": startup, "whole": whole, "recorded_after_each_kill": seen}


def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path, mmlu_dir, gguf_path,
                                                                 request):
    pytest.importorskip("transformers")
    # Built once (converting SmolLM2's GGUF tokenizer takes a while) and kept in pytest's cache.
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    model = cache.mkdir("tiny-llama-smollm2-tokenizer-v2") if cache else tmp_path / "tiny"
    out = tmp_path / "run"
    argv = ["run", "--model", f"hf:{model}", "--data-dir", str(mmlu_dir), "--subjects",
            FAULT_SUBJECTS, "--limit", "20", "--num-fewshot", "1", "--batch-size", "2",
            "--output", str(out), "--no-progress"]
    spec = {"model": str(model), "gguf": str(gguf_path), "out": str(out), "argv": argv,
            "reference": str(tmp_path / "reference"), "log": str(tmp_path / "runs.log"),
            "questions": 60}  # 3 subjects, --limit 20
    done = subprocess.run([sys.executable, __file__, "drive", json.dumps(spec)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    seen = report["recorded_after_each_kill"]
    print(f"\nrun: {report['startup']:.1f} s to the first record, {report['whole']:.1f} s in "
          f"all; questions recorded after each kill: {seen}")
    assert any(0 < n < 60 for n in seen), "no kill landed mid-scoring"
    assert_same_run(tmp_path / "reference", out)


if __name__ == "__main__" and sys.argv[1:2] == ["drive"]:
    print(json.dumps(drive(json.loads(sys.argv[2]))))


def test_model_hashes_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    import hashlib
    import os

    from mmlu_bench.backends import identity

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights-1")
    digest = hashlib.sha256(b"weights-1").hexdigest()
    assert identity.sha256(weights) == digest
    assert not identity.cache_file().exists(), "a file written just now is not remembered"

    os.utime(weights, ns=(10**18, 10**18))  # written long ago
    assert identity.sha256(weights) == digest
    assert digest in identity.cache_file().read_text()
    reads = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: reads.append(a) or real_open(*a, **k))
    assert identity.file_identity(weights)["model_sha256"] == digest
    assert not [a for a in reads if str(a[0]) == str(weights)], "an unchanged file is not re-read"

    weights.write_bytes(b"weights-2")  # same size, new modification time
    os.utime(weights, ns=(2 * 10**18, 2 * 10**18))
    assert identity.sha256(weights) == hashlib.sha256(b"weights-2").hexdigest()


def test_an_unwritable_hash_cache_costs_only_a_re_read(tmp_path, monkeypatch):
    import hashlib
    import os

    from mmlu_bench.backends import identity

    (tmp_path / "plain-file").write_text("x")  # a folder under a file cannot be made, even by root
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "plain-file"))
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"weights")
    os.utime(weights, ns=(10**18, 10**18))
    assert identity.sha256(weights) == hashlib.sha256(b"weights").hexdigest()
