"""What lm-eval 0.4.13 names and prints for Meta's recipes: its real group aggregation and tables.

Run with the lm-eval venv (never a dependency of mmlu-bench):
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 /tmp/lmeval-venv/bin/python bench/lmeval_llama_names.py
writes tests/fixtures/lmeval_llama_results.json.

For each of lm-eval's groups mmlu_llama, mmlu_cot_llama, mmlu_pro_llama and mmlu_de_llama it
runs lm_eval.simple_evaluate on made-up rows (every subject or category, bench/lmeval_render.py's
stand-in for datasets.load_dataset) with a scripted model that answers by a hash of the prompt,
and records each question's exact_match, the results file's names (results, groups,
group_subtasks, versions, n-shot, higher_is_better) and both printed tables. tests/test_llama_names.py
rebuilds the same verdicts as records and checks that mmlu-bench names and prints them alike.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import lmeval_render as lr  # noqa: E402  (replaces datasets.load_dataset)
import lmeval_synthetic as syn  # noqa: E402

CATEGORIES = ("biology", "business", "chemistry", "computer science", "economics",
              "engineering", "health", "history", "law", "math", "other", "philosophy",
              "physics", "psychology")
# group -> (what the scripted model writes for letter X, shots)
GROUPS = {"mmlu_llama": (" {}", 5), "mmlu_cot_llama": ("Step 1.\nThe best answer is {}.", 0),
          "mmlu_pro_llama": ("So... The best answer is {}.", 2), "mmlu_de_llama": (" {}", 0)}


def subjects() -> list[str]:
    from lm_eval.tasks import TaskManager

    names = TaskManager().all_tasks
    return sorted(n.removeprefix("mmlu_llama_") for n in names
                  if n.startswith("mmlu_llama_") and n.removeprefix("mmlu_llama_")
                  not in ("stem", "other", "social_sciences", "humanities"))


def data(subject_list: list[str]) -> None:
    for s in subject_list:
        rows = syn.mmlu_rows("test", 3, s)
        lr._DATA[("hails/mmlu_no_train", s)] = {"test": rows, "dev": syn.mmlu_rows("dev", 5, s)}
    test = [syn.mmlu_pro_row(200 + i, c, 4 + i % 7, "test")
            for i, c in enumerate(CATEGORIES * 2)]
    val = [syn.mmlu_pro_row(i, c, 4, "validation") for i, c in enumerate(CATEGORIES * 2)]
    lr._DATA[lr.MMLU_PRO] = {"test": test, "validation": val}
    meta = [{"subtask_name": f"mmlu_de_chat.{s}", **syn.meta_doc(i, f"{s} test"),
             "input_final_prompts": [""]} for s in subject_list for i in range(2)]
    lr._DATA[lr.META_DE] = {"latest": meta}


def scripted(answer: str):
    from lm_eval.api.model import LM

    class Scripted(LM):
        """Answers A, B, C or D by a hash of the prompt."""

        def generate_until(self, requests, disable_tqdm: bool = False):
            out = []
            for r in requests:
                digest = hashlib.sha256(r.arguments[0].encode()).digest()
                out.append(answer.format("ABCD"[digest[0] % 4]))
            return out

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            raise NotImplementedError

    return Scripted()


def run(group: str) -> dict:
    import lm_eval
    from lm_eval.utils import make_table

    answer, shots = GROUPS[group]
    res = lm_eval.simple_evaluate(model=scripted(answer), tasks=[group], num_fewshot=shots,
                                  log_samples=True)
    verdicts = {task: [[s["doc_id"], s["exact_match"]] for s in samples]
                for task, samples in res["samples"].items()}
    keep = ("results", "groups", "group_subtasks", "versions", "n-shot", "higher_is_better")
    return {"num_fewshot": shots, "verdicts": verdicts, **{k: res[k] for k in keep},
            "table": make_table(res), "groups_table": make_table(res, "groups")}


def main() -> None:
    data(subjects())
    out = {"lm_eval_version": "0.4.13", "groups": {g: run(g) for g in GROUPS}}
    path = lr.FIXTURES / "lmeval_llama_results.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
