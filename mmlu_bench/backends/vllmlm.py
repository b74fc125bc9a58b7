"""vLLM's offline engine in-process (`vllm:`): a hub id or a transformers folder (AWQ, GPTQ, FP8
and other checkpoints vLLM loads itself, its quantization read from config.json).

Numbers follow lm-eval's protocol: prompts are tokenized here with transformers' tokenizer of
the model, as the hf: backend does, into tokens.py's rows, and vLLM gets those token ids
(TokensPrompt), so its own tokenizer never re-splits a prompt.

A letter's log-likelihood is read at the answer position as a generated token's log-probability
(`logprob_token_ids`: the raw log-softmax of that position's logits, before any sampling
setting), not with `prompt_logprobs`: vLLM 0.32 reads no prefix cache for a request that asks
for prompt log-probabilities (they need the logits of every prompt position), so a unit's few-
shot prefix would be recomputed by every question. Here prefix caching stays on, and a
question is one request. A chat prompt's shared newline before the letter ("\\nA") is one more
position: the request stops before it and is made to generate it (`allowed_token_ids`, which
masks the logits after the raw log-probabilities are taken), then the letters are read at the
next step.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, ModelError
from ..schema import ChoiceScores, ScoreRequest
from . import tokens as tk

log = logging.getLogger(__name__)

SEED = 1234  # lm-eval's vllm model seeds the engine with 1234; greedy decoding never samples
# Requests handed to the engine at once: it batches them continuously; the runner records a
# chunk's questions when it finishes (what an interrupted run keeps, and the progress bar's
# step). On a CPU a chunk of 64 MMLU prompts is ~10 s of work and still fills vLLM's batches.
CHUNK_REQUESTS = {"cpu": 64}
DEFAULT_CHUNK = 512
CHUNK_TOKENS = 1 << 17
DTYPES = {"auto": "auto", "float32": "float32", "fp32": "float32", "float16": "float16",
          "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


@dataclass(frozen=True, slots=True)
class _Job:
    """One engine request for a row: `prompt` then `steps` generated tokens, the first
    steps - 1 forced to `forced` (the row's own tokens); read at every step."""

    row: tk.Row
    prompt: tuple[int, ...]
    steps: int
    forced: int | None


class VLLMBackend:
    """Its spec: backends/__init__.py."""

    exact = True

    def __init__(self, config) -> None:
        import vllm
        from transformers import AutoTokenizer

        self.source, self.identity = _source(config.model)
        self.tokenizer = AutoTokenizer.from_pretrained(self.source)
        self.encode = tk.lm_eval_encoder(self.tokenizer)
        self.llm = _engine(config, self.source)
        model_config = self.llm.llm_engine.model_config
        # vLLM needs room for one generated token after a prompt (lm-eval's vllm: max_length-1).
        self.max_length = model_config.max_model_len - 1
        self.prefix_sharing = config.prefix_sharing
        self.batch_size = None  # hf_generate's planner is not used: the engine batches
        self._info = {"device": _device(), "dtype": str(model_config.dtype).removeprefix("torch."),
                      "max_length": self.max_length, "vllm_version": vllm.__version__,
                      "tensor_parallel_size": config.tensor_parallel_size,
                      "quantization": model_config.quantization,
                      "engine_args": engine_args(config.vllm_args), **self.identity}
        self._model_name = config.model

    def info(self) -> dict:
        return dict(self._info)

    def close(self) -> None:
        if self.llm is not None:
            engine, self.llm = self.llm, None
            shutdown = getattr(engine.llm_engine, "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()  # its worker processes, now, not at interpreter exit

    def chat_renderer(self):
        """The tokenizer's chat template, applied as lm-eval applies it (as hf:)."""
        from .chat_template import tokenizer_renderer

        return tokenizer_renderer(self.tokenizer, self._model_name)

    def score_groups(self, groups: Iterable[tuple[Sequence[ScoreRequest], frozenset[str]]]
                     ) -> Iterator[list[ChoiceScores]]:
        """Every unit's unrecorded rows, in unit order and sorted by their tokens within a unit
        (neighbours share the longest prefix), handed to the engine in chunks."""
        size = CHUNK_REQUESTS.get(self._info["device"], DEFAULT_CHUNK)
        jobs: list[_Job] = []
        rows: list[tk.Row] = []
        for requests, skip in groups:
            todo = [row for r in requests if r.qid not in skip
                    for row in tk.plan_rows(r, self.encode, self.max_length)]
            rows += todo
            jobs += [job for row in sorted(todo, key=lambda r: r.tokens) for job in _jobs(row)]
        collector = tk.Collector(rows)
        for chunk in _chunks(jobs, size):
            done = []
            for job, logprobs in zip(chunk, self._run(chunk), strict=True):
                scores = collector.add(job.row, logprobs) if logprobs is not None else None
                if scores is not None:
                    done.append(scores)
            if done:
                yield done
        assert not collector.pending, f"unfinished questions: {sorted(collector.pending)[:3]}"

    def _run(self, chunk: list[_Job]) -> list:
        """Each job's log-probabilities, one {token: logprob} per read position (the row's
        last positions, in order); None for a job that only feeds a longer one."""
        from vllm import SamplingParams, TokensPrompt

        prompts, params = [], []
        for job in chunk:
            wanted = sorted({t for _, targets in job.row.reads for t in targets})
            params.append(SamplingParams(
                temperature=0.0, max_tokens=job.steps, detokenize=False, seed=SEED,
                logprob_token_ids=wanted, ignore_eos=job.steps > 1,
                allowed_token_ids=[job.forced] if job.forced is not None else None))
            prompts.append(TokensPrompt(prompt_token_ids=list(job.prompt)))
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        out = []
        for job, output in zip(chunk, outputs, strict=True):
            steps = output.outputs[0].logprobs or []
            if len(steps) < job.steps:
                raise ModelError(f"{job.row.qid}: vLLM returned log-probabilities for "
                                 f"{len(steps)} of {job.steps} positions")
            out.append([{t: lp.logprob for t, lp in step.items()} for step in steps])
        return out

    def generate_groups(self, groups) -> Iterator:
        """Greedy text until a stop string (vllm_generate.py)."""
        from .vllm_generate import generate_groups

        return generate_groups(self, groups)


def _jobs(row: tk.Row) -> list[_Job]:
    """The row's read positions as engine requests. One request when every read is one token
    (plain letters), or when the tokens between the first read position and the last are one
    repeated token (a chat prompt's newline): the request is made to generate them. Else one
    request per read position, each a prefix of the row (a multi-token continuation)."""
    n = max(len(targets) for _, targets in row.reads)
    head = len(row.tokens) - n + 1  # the prompt up to the first read position
    between = row.tokens[head:]
    if len(set(between)) <= 1:
        return [_Job(row, row.tokens[:head], n, between[0] if between else None)]
    return [_Job(row, row.tokens[:head + k], 1, None) for k in range(n)]


def _chunks(jobs: list[_Job], size: int) -> Iterator[list[_Job]]:
    chunk: list[_Job] = []
    tokens = 0
    for job in jobs:
        if chunk and (len(chunk) >= size or tokens + len(job.prompt) > CHUNK_TOKENS):
            yield chunk
            chunk, tokens = [], 0
        chunk.append(job)
        tokens += len(job.prompt)
    if chunk:
        yield chunk


def _source(model: str) -> tuple[str, dict]:
    """(folder vLLM loads, identity): a local transformers folder, or a hub id downloaded
    through the same cache as hf: (its revision recorded)."""
    from .identity import folder_identity

    path = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        raise ConfigError(f"vllm:{model}: the vllm: backend runs transformers checkpoints; run a "
                          "GGUF file with gguf: (llama.cpp) or hf: (dequantized).")
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a transformers model folder (no config.json).")
        return str(path), {"model_path": str(path.resolve()), **folder_identity(path)}
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelError(f"{model}: no such model folder; check the path.")
    from ..hub import download_model

    folder = download_model(model)
    return str(folder), {"hub_id": model, "revision": folder.name}


def _engine(config, source: str):
    from vllm import LLM

    device = _device()
    if config.device != "auto" and config.device.split(":")[0] != device:
        raise ConfigError(f"--device {config.device}: this vLLM build runs on {device}; leave "
                          "--device out (vLLM picks its devices; CUDA_VISIBLE_DEVICES selects "
                          "GPUs).")
    if config.dtype not in DTYPES:
        raise ConfigError(f"--dtype {config.dtype!r}: use auto, float32, float16 or bfloat16.")
    dtype = DTYPES[config.dtype]
    if dtype == "auto" and device == "cpu":
        dtype = "float32"  # as hf: (vLLM's auto is bf16 there, several times slower on AVX2)
    kwargs = {"model": source, "tokenizer": source, "dtype": dtype,
              "tensor_parallel_size": config.tensor_parallel_size, "seed": SEED,
              "enable_prefix_caching": config.prefix_sharing}
    if config.max_model_len:
        kwargs["max_model_len"] = config.max_model_len
    if config.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = config.gpu_memory_utilization
    if config.batch_size != "auto":
        kwargs["max_num_seqs"] = int(config.batch_size)
    kwargs.update(engine_args(config.vllm_args))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return LLM(**kwargs)
    except (ValueError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{config.model}: vLLM could not start it ({first[:300]}).") from None


def engine_args(pairs: Sequence[str]) -> dict:
    """--vllm-arg KEY=VALUE pairs as vLLM engine arguments; a VALUE that reads as JSON (true,
    0.5, {"a": 1}) is that value, anything else the string itself."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--vllm-arg {pair!r}: give KEY=VALUE, e.g. enforce_eager=true.")
        try:
            out[key.strip().replace("-", "_")] = json.loads(value)
        except ValueError:
            out[key.strip().replace("-", "_")] = value
    return out


def _device() -> str:
    from vllm.platforms import current_platform

    return str(current_platform.device_type or "unknown")
