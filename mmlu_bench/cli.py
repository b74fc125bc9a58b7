"""The command line: flags -> RunConfig -> runner. Printing happens here and nowhere else."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import UserError


def _run_parser(sub) -> None:
    p = sub.add_parser("run", help="score a model on MMLU")
    p.add_argument("--model", required=True,
                   help="[backend:]model: hf:ID|FOLDER|FILE.gguf, gguf:FILE, ollama:NAME, "
                        "openai:BASE_URL, fake:NAME; no prefix = hf (gguf for .gguf files)")
    p.add_argument("--data-dir", help="MMLU in the original layout (folder or data.tar); "
                                      "default: the Hugging Face dataset cais/mmlu")
    p.add_argument("--subjects", help="comma-separated subjects or categories (default: all 57)")
    p.add_argument("--num-fewshot", type=int, default=0, help="dev examples per prompt (0-5)")
    p.add_argument("--limit", type=int, help="first N test questions of each subject (lm-eval's "
                                             "--limit)")
    p.add_argument("--sample", type=int, help="a stratified random sample of N test questions "
                                              "across subjects: a faster, unbiased estimate")
    p.add_argument("--seed", type=int, default=0, help="the --sample seed (default 0)")
    p.add_argument("--output", help="run folder (default: runs/<backend>_<model>_<N>shot[...]); "
                                    "the same folder resumes an interrupted run")
    p.add_argument("--batch-size", default="auto", help="rows per batch, or auto (token budget)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto", help="auto, float32, float16, bfloat16")
    p.add_argument("--quantize", choices=["8bit", "4bit"], help="bitsandbytes, hf on CUDA only")
    p.add_argument("--no-prefix-sharing", dest="prefix_sharing", action="store_false",
                   help="recompute each prompt's shared few-shot prefix (slower, for checks)")
    p.add_argument("--n-gpu-layers", type=int, default=0, help="llama.cpp layers to offload")
    p.add_argument("--threads", type=int, help="llama.cpp CPU threads")
    p.add_argument("--ctx-size", type=int, default=4096, help="llama.cpp context size")
    p.add_argument("--model-name", help="the model id an openai: server serves")
    p.add_argument("--api-key", help="API key for openai: (default: $OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel server requests")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per server request")
    p.add_argument("--ollama-direct", action="store_true",
                   help="ollama: score the model file Ollama pulled, in-process with llama.cpp "
                        "(the default when no server with logprobs is running)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmlu-bench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mmlu-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    rep = sub.add_parser("report", help="re-print the table of a run folder from its records")
    rep.add_argument("run_dir")
    rep.add_argument("--format", default="table", choices=["table", "markdown", "json", "html"],
                     help="table (lm-eval's), markdown, json (lm-eval results shape), html")
    cmp = sub.add_parser("compare", help="compare runs: deltas and a paired significance test")
    cmp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="the first is the baseline")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    runs = sub.add_parser("runs", help="list the run folders under a folder")
    runs.add_argument("root", nargs="?", default="runs", help="default: ./runs")
    runs.add_argument("--sort", default="date", choices=["acc", "date", "model"])
    sub.add_parser("backends", help="list the backends and whether each is installed")
    sub.add_parser("subjects", help="list the 57 subjects by category")
    return parser


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
    from .records import RECORDS
    from .runner import write_reports

    run_dir = Path(args.run_dir)
    if not (run_dir / RECORDS).is_file():
        raise UserError(f"{run_dir}: no {RECORDS} here; pass a run folder written by "
                        "`mmlu-bench run`.")
    if args.format != "table":
        from .report_formats import render

        print(render(run_dir, args.format), end="")
        return 0
    print(write_reports(run_dir).table)
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
    from .dataset import CATEGORIES

    for category, subjects in sorted(CATEGORIES.items()):
        print(f"{category} ({len(subjects)}): {', '.join(subjects)}")
    return 0


COMMANDS = {"run": cmd_run, "report": cmd_report, "backends": cmd_backends,
            "subjects": cmd_subjects, "compare": cmd_compare, "runs": cmd_runs}


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
