"""The loop: data -> prompts -> backend -> records, with resume, progress and timing."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, backends, dataset, metrics, prompts, sampling, scoring
from .config import RunConfig
from .errors import UserError
from .interrupts import signals_held
from .records import (RECORDS, RecordWriter, disk_error, folder_lock, header_json, read,
                      write_atomic)
from .schema import GroupResult, Question, RunHeader, ScoreRequest

log = logging.getLogger(__name__)

# Header fields that must match for a resume: what changes the numbers.
IDENTITY = ("model", "backend", "num_fewshot", "limit", "subjects", "data_fingerprint",
            "prompt_format", "sample", "seed")
IDENTITY_INFO = ("device", "dtype", "model_sha256", "model_size", "hub_id", "revision",
                 "model_path", "quantize", "server_model", "tokenizer", "ollama_path")
# Settings that change what is computed. Speed settings (batch size, threads, concurrency,
# timeout) may change on resume: a run that ran out of memory resumes with a smaller batch.
IDENTITY_SETTINGS = ("quantize", "prefix_sharing", "n_gpu_layers", "ctx_size", "model_name")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided before the model loads: questions, requests, where to write."""

    subjects: tuple[str, ...]
    questions: dict[str, Question]  # qid -> question, in canonical order
    requests: dict[str, list[ScoreRequest]]  # subject -> requests
    fingerprint: str
    out_dir: Path
    source: str
    population: dict = field(default_factory=dict)  # --sample: subject -> test size


@dataclass(frozen=True, slots=True)
class Outcome:
    rows: list[GroupResult]
    out_dir: Path
    table: str
    scored: int  # questions scored by this invocation (not resumed)
    footer: dict | None = None  # totals and this invocation's wall time and tokens/s


def plan(config: RunConfig) -> Plan:
    subjects = dataset.resolve_subjects(config.subjects)
    data = dataset.load(config.data_dir, subjects)
    questions: dict[str, Question] = {}
    requests: dict[str, list[ScoreRequest]] = {}
    used: list[Question] = []
    chosen = sampling.select(data.test, config.sample, config.seed) if config.sample else None
    for s in subjects:
        test = data.test[s][: config.limit] if config.limit else data.test[s]
        test = chosen[s] if chosen else test
        questions.update((q.qid, q) for q in test)
        requests[s] = prompts.build_requests(test, data.dev[s], config.num_fewshot)
        used += list(prompts.fewshot(data.dev[s], config.num_fewshot, s)) + list(test)
    out_dir = config.output_dir()
    _check_writable(out_dir)
    population = {s: len(data.test[s]) for s in subjects} if config.sample else {}
    return Plan(subjects, questions, requests, dataset.fingerprint(used), out_dir, data.source,
                population)


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"{out_dir}: cannot write there ({e.strerror}); pass a writable "
                        "--output folder.") from None


def make_header(config: RunConfig, p: Plan, info: dict) -> RunHeader:
    return RunHeader(
        model=config.model, backend=config.backend, num_fewshot=config.num_fewshot,
        limit=config.limit, subjects=p.subjects, data_fingerprint=p.fingerprint,
        prompt_format=prompts.PROMPT_FORMAT, tool_version=__version__,
        backend_info={**info, "settings": config.public(), "data_source": p.source,
                      "host": _host()},
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sample=config.sample, seed=config.seed if config.sample else None,
        population=p.population,
    )


def _host() -> dict:
    import platform

    return {"system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "packages": _versions(PACKAGES)}


# Libraries whose version can move a log-likelihood: recorded, not checked on resume.
PACKAGES = ("torch", "transformers", "llama_cpp_python", "numpy")


def _versions(names: tuple[str, ...]) -> dict:
    from importlib import metadata

    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def resume_check(path: Path, header: RunHeader) -> tuple[set[str], bool]:
    """(qids already recorded in `path`, whether it is finished), after checking the run
    there is this same run."""
    if not path.exists():
        return set(), False
    old, records, footer = read(path)
    new = header_json(header)
    diffs = [(k, old.get(k), new.get(k)) for k in IDENTITY]
    old_info, new_info = old.get("backend_info", {}), new["backend_info"]
    diffs += [(f"backend_info.{k}", old_info.get(k), new_info.get(k)) for k in IDENTITY_INFO]
    old_set, new_set = old_info.get("settings", {}), new_info["settings"]
    diffs += [(k, old_set.get(k), new_set.get(k)) for k in IDENTITY_SETTINGS]
    diffs = [d for d in diffs if d[1] != d[2]]
    if diffs:
        what = "; ".join(f"{k}: recorded {_short(a)}, now {_short(b)}" for k, a, b in diffs)
        raise UserError(f"{path.parent} holds a different run ({what}); pass a new --output "
                        "folder to start a new run, or rerun with the recorded settings to "
                        "resume this one.")
    return {r.qid for r in records}, footer is not None


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def run(config: RunConfig) -> Outcome:
    """Score every planned question not yet recorded, then write results from the records."""
    p = plan(config)
    with folder_lock(p.out_dir):
        backend = backends.create(config)
        try:
            header = make_header(config, p, backend.info())
            path = p.out_dir / RECORDS
            done, finished = resume_check(path, header)
            if finished and done >= set(p.questions):
                return write_reports(p.out_dir, 0, read(path)[2])
            scored, footer = _score_all(backend, p, RecordWriter(path, header), done, config)
        finally:
            backend.close()
        return write_reports(p.out_dir, scored, footer)


def _score_all(backend, p: Plan, writer: RecordWriter, done: set[str],
               config: RunConfig) -> tuple[int, dict]:
    """Score what is not yet recorded, then rewrite the records in order with a footer."""
    start = time.perf_counter()
    try:
        bar = _progress(config, len(p.questions), len(done))
        try:
            scored, tokens = _record(_stream(backend, p, done), p, done, writer, bar)
        finally:
            bar.close()
        elapsed = time.perf_counter() - start
        _, records, _ = read(writer.path)
        # wall_seconds and tokens_per_second time this invocation only: with `started`, the
        # only fields in which a resumed run's records differ from an uninterrupted run's.
        footer = {"questions": len(records), "tokens": sum(r.n_tokens for r in records),
                  "wall_seconds": round(elapsed, 3),
                  "tokens_per_second": round(tokens / elapsed, 1) if tokens else None}
        writer.finalize(list(p.questions), footer)
    finally:
        writer.close()
    return scored, footer


def _stream(backend, p: Plan, done: set[str]):
    """The backend's scores of every unrecorded question, batch by batch."""
    groups = []
    for subject in p.subjects:
        requests = p.requests[subject]
        todo = [r for r in requests if r.qid not in done]
        if not todo:
            continue
        if getattr(backend, "accepts_skip", False):
            # The backend plans batches over the whole subject and runs only those holding
            # unrecorded questions: each question is computed in the same batch as in an
            # uninterrupted run, so resumed records are bit-identical.
            groups.append((requests, frozenset(r.qid for r in requests if r.qid in done)))
        else:
            groups.append((todo, None))
    if hasattr(backend, "score_groups"):  # all subjects in one stream (the hf backend)
        return backend.score_groups(groups)
    return (batch for requests, skip in groups
            for batch in (backend.score(requests) if skip is None
                          else backend.score(requests, skip=skip)))


def _record(stream, p: Plan, done: set[str], writer: RecordWriter, bar) -> tuple[int, int]:
    """Append each answered batch to the records; (questions, tokens) scored."""
    waiting = {r.qid: prompts.sha256(r.context)
               for s in p.subjects for r in p.requests[s] if r.qid not in done}
    scored, tokens = len(waiting), 0
    for batch in stream:
        recs = []
        for scores in batch:
            # A result for a question never asked, or asked twice, would shift answers silently.
            assert scores.qid in waiting, f"backend answered {scores.qid} unasked or twice"
            recs.append(scoring.record(p.questions[scores.qid], scores, waiting.pop(scores.qid)))
            tokens += scores.n_tokens
        with signals_held():
            writer.append(recs)
        bar.update(len(recs))
    assert not waiting, f"backend left {len(waiting)} unanswered, e.g. {next(iter(waiting))}"
    return scored, tokens


def _progress(config: RunConfig, total: int, done: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="q", desc="Scoring", disable=not config.progress,
                dynamic_ncols=True)


def write_reports(out_dir: Path, scored: int = 0, footer: dict | None = None) -> Outcome:
    """results.json, results.md and report.html, recomputed from records.jsonl alone."""
    from . import html_report, report_formats

    header, records, written = read(out_dir / RECORDS)
    table = report_formats.table(header, records)
    results = report_formats.results(header, records)
    page = html_report.render(header, records, written, html_report.questions(header, records))
    rows = metrics.summarize(records, header["num_fewshot"])
    try:
        write_atomic(out_dir / "results.md", table)
        write_atomic(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
        write_atomic(out_dir / "report.html", page)
    except OSError as e:
        raise disk_error(e, out_dir) from None
    return Outcome(rows, out_dir, table, scored, footer)
