#!/usr/bin/env python3
"""How far a run folder agrees with lm-eval's per-question reference output.

    python bench/agree_reference.py RUN_DIR [REFERENCE.jsonl]

REFERENCE defaults to the lm-eval 0.4.13 SmolLM2 0-shot --limit 10 file in ../shared/reference
(one JSON line per question: subject, doc_id, loglikelihoods, pred, prompt_sha256). Prints, over
the questions both hold: same predictions, identical prompts, and the largest |log-likelihood
difference| (where the run has the letter: server backends can miss one outside their top k).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT.parent / "shared" / "reference" /
             "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_0shot_limit10.jsonl")


def agreement(run_dir: Path, reference: Path) -> dict:
    from mmlu_bench.records import RECORDS, read

    _, records, _ = read(run_dir / RECORDS)
    ours = {r.qid: r for r in records}
    theirs = {f"{d['subject']}/{d['doc_id']}": d
              for d in map(json.loads, reference.read_text().splitlines())}
    both = [q for q in theirs if q in ours]
    gaps = [abs(a - b) for q in both
            for a, b in zip(ours[q].loglikelihoods, theirs[q]["loglikelihoods"], strict=True)
            if a is not None]
    return {"questions": len(both), "only_run": len(set(ours) - set(theirs)),
            "only_reference": len(set(theirs) - set(ours)),
            "same_pred": sum(ours[q].pred == theirs[q]["pred"] for q in both),
            "same_prompt": sum(ours[q].prompt_sha256 == theirs[q]["prompt_sha256"] for q in both),
            "max_abs_ll_diff": max(gaps, default=None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("reference", type=Path, nargs="?", default=REFERENCE)
    args = parser.parse_args(argv)
    a = agreement(args.run_dir, args.reference)
    n = a["questions"]
    if not n:
        print(f"{args.run_dir}: no question in common with {args.reference}", file=sys.stderr)
        return 1
    print(f"{a['same_pred']}/{n} same predictions ({a['same_pred'] / n:.1%}), "
          f"{a['same_prompt']}/{n} identical prompts, "
          f"max |LL diff| {a['max_abs_ll_diff']:.4f}")
    if a["only_run"] or a["only_reference"]:
        print(f"({a['only_run']} questions only in the run, {a['only_reference']} only in the "
              "reference)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
