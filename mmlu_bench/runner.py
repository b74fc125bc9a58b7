"""The loop: data -> prompts -> backend -> records, with resume, progress and timing."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, backends, dataset, metrics, prompts, report, scoring
from .config import RunConfig
from .errors import UserError
from .records import RECORDS, RecordWriter, header_json, read
from .schema import GroupResult, Question, RunHeader, ScoreRequest

log = logging.getLogger(__name__)

# Header fields that must match for a resume: what changes the numbers.
IDENTITY = ("model", "backend", "num_fewshot", "limit", "subjects", "data_fingerprint",
            "prompt_format")
IDENTITY_INFO = ("dtype", "model_sha256", "model_size", "hub_id", "revision", "model_path",
                 "quantize", "server_model")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided before the model loads: questions, requests, where to write."""

    subjects: tuple[str, ...]
    questions: dict[str, Question]  # qid -> question, in canonical order
    requests: dict[str, list[ScoreRequest]]  # subject -> requests
    fingerprint: str
    out_dir: Path
    source: str


@dataclass(frozen=True, slots=True)
class Outcome:
    rows: list[GroupResult]
    out_dir: Path
    table: str
    scored: int  # questions scored by this invocation (not resumed)


def plan(config: RunConfig) -> Plan:
    subjects = dataset.resolve_subjects(config.subjects)
    data = dataset.load(config.data_dir, subjects)
    questions: dict[str, Question] = {}
    requests: dict[str, list[ScoreRequest]] = {}
    used: list[Question] = []
    for s in subjects:
        test = data.test[s][: config.limit] if config.limit else data.test[s]
        questions.update((q.qid, q) for q in test)
        requests[s] = prompts.build_requests(test, data.dev[s], config.num_fewshot)
        used += list(prompts.fewshot(data.dev[s], config.num_fewshot, s)) + list(test)
    out_dir = config.output_dir()
    _check_writable(out_dir)
    return Plan(subjects, questions, requests, dataset.fingerprint(used), out_dir, data.source)


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
    )


def _host() -> dict:
    import platform

    return {"system": platform.system(), "machine": platform.machine(),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def resume_check(path: Path, header: RunHeader) -> set[str]:
    """qids already recorded in `path`, after checking the run there is this same run."""
    if not path.exists():
        return set()
    old, records, _ = read(path)
    new = header_json(header)
    diffs = [k for k in IDENTITY if old.get(k) != new.get(k)]
    diffs += [f"backend_info.{k}" for k in IDENTITY_INFO
              if old.get("backend_info", {}).get(k) != new["backend_info"].get(k)]
    if diffs:
        raise UserError(f"{path.parent} holds a different run (differs in {', '.join(diffs)}); "
                        "pass a new --output folder to start a new run.")
    return {r.qid for r in records}


def run(config: RunConfig, on_progress=None) -> Outcome:
    """Score every planned question not yet recorded, then write results from the records."""
    p = plan(config)
    backend = backends.create(config)
    try:
        header = make_header(config, p, backend.info())
        path = p.out_dir / RECORDS
        done = resume_check(path, header)
        start, scored, tokens = time.perf_counter(), 0, 0
        writer = RecordWriter(path, header)
        bar = _progress(config, len(p.questions), len(done))
        try:
            for subject in p.subjects:
                todo = [r for r in p.requests[subject] if r.qid not in done]
                n, t = _score_subject(backend, todo, p.questions, writer, bar)
                scored, tokens = scored + n, tokens + t
        finally:
            writer.close()
            bar.close()
        elapsed = time.perf_counter() - start
        footer = {"wall_seconds": round(elapsed, 3), "scored": scored, "tokens": tokens,
                  "tokens_per_second": round(tokens / elapsed, 1) if elapsed else None}
        writer.finalize(list(p.questions), footer)
    finally:
        backend.close()
    return write_reports(p.out_dir, scored)


def _score_subject(backend, todo: list[ScoreRequest], questions: dict[str, Question],
                   writer: RecordWriter, bar) -> tuple[int, int]:
    if not todo:
        return 0, 0
    waiting = {r.qid: prompts.sha256(r.context) for r in todo}
    tokens = 0
    for batch in backend.score(todo):
        recs = []
        for scores in batch:
            # A result for a question never asked, or asked twice, would shift answers silently.
            assert scores.qid in waiting, f"backend answered {scores.qid} unasked or twice"
            recs.append(scoring.record(questions[scores.qid], scores, waiting.pop(scores.qid)))
            tokens += scores.n_tokens
        writer.append(recs)
        bar.update(len(recs))
    assert not waiting, f"backend left {len(waiting)} questions unanswered, e.g. {next(iter(waiting))}"
    return len(todo), tokens


def _progress(config: RunConfig, total: int, done: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="q", desc="Scoring", disable=not config.progress,
                dynamic_ncols=True)


def write_reports(out_dir: Path, scored: int = 0) -> Outcome:
    """results.json and results.md, recomputed from records.jsonl alone."""
    header, records, _ = read(out_dir / RECORDS)
    rows = metrics.summarize(records, header["num_fewshot"])
    table = report.full_table(rows, report.table_footer(records))
    (out_dir / "results.md").write_text(table, encoding="utf-8")
    results = report.results_json(rows, header, records)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return Outcome(rows, out_dir, table, scored)
