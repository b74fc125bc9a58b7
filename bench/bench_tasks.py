"""What differs between the benchmarks the bench script runs: MMLU and MMLU-Pro.

Each task says how lm-eval's task folder is generated, which lm-eval task runs, how its samples
files and mmlu-bench's records name a question (the id both sides are matched by), which
results row holds the accuracy, and what extra checks apply.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import lmeval_task
import lmeval_task_pro
from agreement import sha256, within
from bench_report import check_tree, expected_tree, reference_check
from tokencount import count_matching, planned_prompts

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
REFERENCE = (Path(__file__).resolve().parent.parent / "tests" / "fixtures"
             / "lmeval-0.4.13_smollm2-135m-instruct-q4_1_mmlu_0shot_limit10.jsonl")
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Mmlu:
    name = "mmlu"
    lm_task = "mmlu"  # lm-eval's task (and results row) name
    acc_rows = ("mmlu",)  # results.json rows holding the headline accuracy
    samples_re = re.compile(r"samples_mmlu_(?P<subject>.+)_\d{4}-\d\d-\d\dT[\d\-.]+\.jsonl$")
    record_id = "qid"  # the field of mmlu-bench's records that names a question

    def __init__(self, args) -> None:
        self.args = args
        from mmlu_bench.tasks.mmlu import MMLU

        self.subjects = list(MMLU().resolve(args.subjects))

    def describe(self) -> str:
        return f"{len(self.subjects)} subjects"

    def tag(self) -> str:
        a = self.args
        return f"{a.num_fewshot}shot_limit{a.limit or 'all'}" + \
            (f"_{len(self.subjects)}subjects" if len(self.subjects) < 57 else "") + \
            ("_chat" if getattr(a, "apply_chat_template", False) else "")

    def write_lmeval_tasks(self, lm_dir: Path, dest: Path) -> dict:
        tree = lmeval_task.write_task_dir(lm_dir, Path(self.args.data_dir), self.subjects, dest)
        return {"lmeval_task_groups": tree}

    def lmeval_id(self, m: re.Match, doc_id: int):
        return f"{m['subject']}/{doc_id}"

    def mmlu_bench_args(self) -> list[str]:
        return ["--subjects", self.args.subjects] if self.args.subjects else []

    def mmlu_bench_missing(self) -> str | None:
        return None

    def planned(self, limit: int, lm_requests: list | None) -> dict:
        return planned_prompts(self.args.data_dir, self.args.num_fewshot, self.subjects, limit)

    def mmlu_bench_tokens(self, questions, limit, counter, lm_requests):
        if getattr(self.args, "apply_chat_template", False):
            # Chat prompts depend on the model's template: count lm-eval's own requests, each
            # checked by its sha256 against the prompt mmlu-bench recorded.
            if not lm_requests:
                return None, "chat prompts: counted from lm-eval's requests, and none ran"
            planned = {qid: (sha256(pairs[0][0]), pairs) for qid, pairs in lm_requests}
            return count_matching(questions, planned, counter)
        return count_matching(questions, self.planned(limit, lm_requests), counter)

    def checks(self, results: dict, per_q: dict, summary: dict) -> None:
        print("\n=== group structure (each tool's results.json group_subtasks) ===")
        want = expected_tree(self.subjects)
        summary["group_tree_as_expected"] = {k: check_tree(k, r.group_tree, want)
                                             for k, r in results.items() if r.status == "ok"}
        if self.args.num_fewshot == 0 and REFERENCE.is_file() and \
                not getattr(self.args, "apply_chat_template", False):
            self._reference(per_q, summary)

    def _reference(self, per_q: dict, summary: dict) -> None:
        ref = []
        for line in REFERENCE.read_text(encoding="utf-8").splitlines():
            d = json.loads(line)
            ref.append({"id": f"{d['subject']}/{d['doc_id']}", "lls": d["loglikelihoods"],
                        "pred": d["pred"], "gold": d["gold"],
                        "prompt_sha256": d["prompt_sha256"]})
        same_model = Path(self.args.model).name == DEFAULT_GGUF
        print(f"\n=== against the reference {REFERENCE.name} ===")
        print("  (lm-eval 0.4.13 hf, fp32, on the GGUF dequantized into an HF folder"
              + ("" if same_model else "; another model, so only prompts are compared") + ")")
        summary["reference"] = {k: reference_check(k, q, ref, same_model)
                                for k, q in per_q.items() if q}


class MmluPro(Mmlu):
    """lm-eval's leaderboard_mmlu_pro on a local test.jsonl; questions are matched by the row
    index in test.jsonl (lm-eval's doc_id, mmlu-bench's `index`), and --limit N is the first N
    rows on both sides."""

    name = "mmlu_pro"
    lm_task = lmeval_task_pro.TASK
    acc_rows = (lmeval_task_pro.TASK, "mmlu_pro")
    samples_re = re.compile(rf"samples_{lmeval_task_pro.TASK}_\d{{4}}-\d\d-\d\dT[\d\-.]+\.jsonl$")
    record_id = "index"
    tolerance = 1e-4  # the acceptance bound on |log-likelihood difference|

    def __init__(self, args) -> None:
        self.args, self.subjects = args, []

    def describe(self) -> str:
        return "MMLU-Pro"

    def tag(self) -> str:
        return f"mmlu_pro_{self.args.num_fewshot}shot_limit{self.args.limit or 'all'}"

    def write_lmeval_tasks(self, lm_dir: Path, dest: Path) -> dict:
        a = self.args
        path = lmeval_task_pro.write_task_dir(
            lm_dir, Path(a.data_dir) / "test.jsonl", dest, a.num_fewshot,
            Path(a.validation_file) if a.validation_file else None)
        return {"lmeval_task_yaml": str(path)}

    def lmeval_id(self, m: re.Match, doc_id: int):
        return int(doc_id)

    def mmlu_bench_args(self) -> list[str]:
        return ["--task", self.name]

    def mmlu_bench_missing(self) -> str | None:
        """Why mmlu-bench cannot run MMLU-Pro yet (its `run` has no --task), or None."""
        res = subprocess.run([sys.executable, "-m", "mmlu_bench.cli", "run", "--help"],
                             capture_output=True, text=True)
        if "--task" not in res.stdout:
            return ("this mmlu-bench's `run` has no --task option yet, so it cannot run "
                    "MMLU-Pro; the lm-eval half ran alone")
        return None

    def mmlu_bench_tokens(self, questions, limit, counter, lm_requests):
        if not lm_requests:
            return None, "prompt tokens are counted on lm-eval's prompts, and lm-eval did not run"
        planned = {qid: (sha256(pairs[0][0]), pairs) for qid, pairs in lm_requests}
        return count_matching(questions, planned, counter)

    def checks(self, results: dict, per_q: dict, summary: dict) -> None:
        cmp = summary["comparisons"].get("hf", {}).get("agreement")
        if cmp is None:
            return
        ok = within(cmp, self.tolerance)
        print(f"\n=== acceptance: every prediction the same, |LL diff| <= {self.tolerance:g} ===\n"
              f"  {'PASS' if ok else 'FAIL'}")
        summary["acceptance"] = {"tolerance": self.tolerance, "pass": ok}


TASKS = {t.name: t for t in (Mmlu, MmluPro)}
