"""The loop: data -> prompts -> backend -> records, with resume, progress and timing."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, backends, dataset, prompts, sampling, scoring
from .config import RunConfig
from .errors import UserError
from .interrupts import signals_held
from .records import RECORDS, RecordWriter, disk_error, folder_lock, read, write_atomic
from .result import Result, load
from .schema import (Generation, Question, RunFooter, RunHeader, ScoreRequest,
                     header_from_json, to_json)
from .tasks.base import Task

log = logging.getLogger(__name__)

# Header fields that must match for a resume: what changes the numbers.
IDENTITY = ("task", "task_options", "model", "backend", "num_fewshot", "limit", "subjects",
            "data_fingerprint", "prompt_format", "sample", "seed")
# Settings that change what is computed. Speed settings (batch size, threads, concurrency,
# timeout, Ray replicas) may change on resume: a run that ran out of memory resumes with a
# smaller batch, one on Ray with fewer replicas or none (ray_pool.py: the same records).
IDENTITY_SETTINGS = ("quantize", "prefix_sharing", "n_gpu_layers", "ctx_size", "model_name")


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything decided before the model loads: questions, requests, where to write."""

    task: Task
    prompt_format: str  # the format's identity of the task's prompts
    subjects: tuple[str, ...]  # the task's units
    questions: dict[str, Question]  # qid -> question, in canonical order
    requests: dict[str, list[ScoreRequest]]  # subject -> requests
    fingerprint: str
    out_dir: Path
    source: str
    population: dict = field(default_factory=dict)  # --sample: subject -> test size
    # A format that renders with the backend's chat template builds its requests once the
    # backend exists: render(renderer) -> the Plan with requests (see with_requests).
    render: Callable[..., Plan] | None = None
    chat: dict = field(default_factory=dict)  # the format's chat fields for the header
    fmt: object = None  # the formats.Format that built the requests and reads the answers


def plan(config: RunConfig, out_dir: Path | None = None) -> Plan:
    """What `config` asks, in the run folder `out_dir` (default: the config's)."""
    task, fmt = config.task_spec(), config.format_spec()
    units = task.resolve(config.subjects)
    data = task.load(config.data_dir, units, config.data_source)
    tests = _selection(task, data, units, config)
    questions: dict[str, Question] = {}
    used: list[Question] = []
    for unit in units:
        test = tests.get(unit, ())
        questions.update((q.qid, q) for q in test)
        used += _shots_used(task, data, test, config.num_fewshot) + list(test)

    def render(p: Plan, renderer=None) -> Plan:
        requests = {u: fmt.requests(task, tests.get(u, ()), data, config.num_fewshot,
                                    renderer) for u in units}
        return replace(p, prompt_format=fmt.prompt_format(task, renderer), requests=requests,
                       render=None, chat=fmt.header_chat(renderer))

    population = {u: len(data.test[u]) for u in units} if config.sample else {}
    p = Plan(task, "", units, questions, {}, dataset.fingerprint(used),
             out_dir or config.output_dir(),
             data.source, population, render, fmt=fmt)
    if not fmt.needs_renderer:  # plain prompts: every request built before anything is written
        p = render(p)
    _check_writable(p.out_dir)
    return p


def with_requests(p: Plan, backend) -> Plan:
    """The plan's requests rendered with the backend's chat template, when its format needs
    one (checked before it loaded: _check_capabilities); the plan itself otherwise."""
    return p if p.render is None else p.render(p, backend.chat_renderer())


def _selection(task, data, units: tuple[str, ...], config: RunConfig) -> dict[str, tuple]:
    """The test questions to score, by unit: all, the first --limit of each unit (or of the
    whole task, where lm-eval runs it as one task), or a stratified --sample."""
    if config.sample:
        return sampling.select({u: data.test[u] for u in units}, config.sample, config.seed)
    if not config.limit:
        return {u: data.test[u] for u in units}
    if task.limit_per_unit:
        return {u: data.test[u][:config.limit] for u in units}
    # One lm-eval task over every unit: the first N questions in document order.
    ordered = sorted((q for u in units for q in data.test[u]), key=lambda q: q.index)
    kept = {q.qid for q in ordered[:config.limit]}
    return {u: tuple(q for q in data.test[u] if q.qid in kept) for u in units}


def _shots_used(task, data, test, k: int) -> list[Question]:
    """The distinct few-shot examples of a unit's questions, in first-use order (MMLU: the
    unit's first k dev examples, so the fingerprint reads as it always did)."""
    seen: dict[str, Question] = {}
    for q in test:
        for s in task.shots(data, q, k) if k else ():
            seen.setdefault(f"{s.qid}", s)
    return list(seen.values())


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
        prompt_format=p.prompt_format, tool_version=__version__,
        backend_info={**info, "settings": config.public(), "data_source": p.source,
                      "host": _host()},
        started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        sample=config.sample, seed=config.seed if config.sample else None,
        population=p.population, task=p.task.name, task_options=p.task.options, chat=p.chat,
    )


def _host() -> dict:
    import platform

    from .versions import NUMERIC, installed

    # Recorded (libraries whose version can move a log-likelihood), not checked on resume.
    return {"system": platform.system(), "release": platform.release(),
            "machine": platform.machine(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "packages": installed(NUMERIC + ("numpy",))}


def resume_check(path: Path, header: RunHeader, resume_keys: tuple[str, ...]
                 ) -> tuple[set[str], bool]:
    """(qids already recorded in `path`, whether it is finished), after checking the run
    there is this same run."""
    if not path.exists():
        return set(), False
    old, records, footer = read(path)
    new = header_from_json(to_json(header))  # as it will read back: lists, not tuples
    diffs = [(k, getattr(old, k), getattr(new, k)) for k in IDENTITY]
    old_info, new_info = old.backend_info, new.backend_info
    # Each backend declares what identifies its model (a file's sha256, an Ollama digest).
    diffs += [(f"backend_info.{k}", old_info.get(k), new_info.get(k)) for k in resume_keys]
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


def run(config: RunConfig, out_dir: Path | None = None, reports: bool = True) -> Result:
    """Score every planned question not yet recorded in the run folder (`out_dir`, else the
    config's), then read the run back from its records (and write its reports there)."""
    p = plan(config, out_dir)
    with folder_lock(p.out_dir):
        spec = _check_capabilities(config, p)
        backend = backends.create(config)
        try:
            p = with_requests(p, backend)
            header = make_header(config, p, backend.info())
            path = p.out_dir / RECORDS
            done, finished = resume_check(path, header, spec.resume_keys)
            scored = 0
            if not (finished and done >= set(p.questions)):
                scored = _score_all(backend, p, RecordWriter(path, header), done, config)
        finally:
            backend.close()
        result = load(p.out_dir, scored)
        if reports:
            write_reports(result)
        return result


def _check_capabilities(config: RunConfig, p: Plan) -> backends.BackendSpec:
    """Refuse, before a model loads, a backend that cannot do what the format needs."""
    spec = backends.spec(config.backend)
    if p.fmt.needs not in spec.capabilities:
        raise UserError(f"--format {config.format} needs a backend that can {p.fmt.needs}; the "
                        f"{config.backend}: backend cannot: use another backend or format.")
    if p.render is not None and "chat" not in spec.capabilities:
        able = ", ".join(f"{s.name}:" for s in backends.SPECS if "chat" in s.capabilities)
        raise UserError(f"the {config.backend}: backend cannot apply a chat template; leave out "
                        f"--apply-chat-template, or use {able}.")
    return spec


def _score_all(backend, p: Plan, writer: RecordWriter, done: set[str],
               config: RunConfig) -> int:
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
        footer = RunFooter(len(records), sum(r.n_tokens for r in records), round(elapsed, 3),
                           round(tokens / elapsed, 1) if tokens else None)
        writer.finalize(list(p.questions), footer)
    finally:
        writer.close()
    return scored


def _stream(backend, p: Plan, done: set[str]):
    """The backend's scores of every unrecorded question, batch by batch: every unit's
    requests with the qids already recorded (a backend that plans batches over the whole unit
    runs only those holding unrecorded questions, so resumed records are bit-identical)."""
    groups = []
    generate = p.fmt is not None and p.fmt.needs == "generate"
    for unit in p.subjects:
        requests = p.requests[unit]
        skip = frozenset(r.qid for r in requests if r.qid in done)
        # Generation plans its batches over the whole run (hf_generate.plan): recorded units
        # stay in, or a resume would put the rest in other batches.
        if len(skip) < len(requests) or generate:
            groups.append((requests, skip))
    return backend.generate_groups(groups) if generate else backend.score_groups(groups)


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
            q, sha = p.questions[scores.qid], waiting.pop(scores.qid)
            recs.append(p.fmt.record(p.task, q, scores, sha) if isinstance(scores, Generation)
                        else scoring.record(q, scores, sha))
            tokens += scores.n_tokens
        with signals_held():
            writer.append(recs)
        bar.update(len(recs))
    assert not waiting, f"backend left {len(waiting)} unanswered, e.g. {next(iter(waiting))}"
    return scored, tokens


def _progress(config: RunConfig, total: int, done: int):
    from tqdm.auto import tqdm  # a widget in a notebook, a text bar in a terminal

    desc = f"Scoring on {config.data_parallel} replicas" if config.data_parallel else "Scoring"
    return tqdm(total=total, initial=done, unit="q", desc=desc, disable=not config.progress,
                dynamic_ncols=True)


def write_reports(result: Result) -> None:
    """results.md, results.json and report.html in the run folder, from the run's Summary."""
    texts = {name: result.report(fmt) for name, fmt in (
        ("results.md", "table"), ("results.json", "json"), ("report.html", "html"))}
    try:
        for name, text in texts.items():
            write_atomic(result.folder / name, text)
    except OSError as e:
        raise disk_error(e, result.folder) from None
