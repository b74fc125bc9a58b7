"""`--task mmlu_pro --format cot` against lm-eval 0.4.13's `mmlu_pro` group, question by question.

Made-up rows (one test question per category, three worked validation rows per category) are
scored by both on the same GGUF through transformers (fp32, CPU); the script prints how many
prompts (sha256), generated texts and exact_match values agree, and both tables.

    GGUF=.../SmolLM2-135M-Instruct.Q4_1.gguf
    /tmp/lmeval-venv/bin/python bench/pro_cot_vs_lmeval.py lmeval "$GGUF" OUT   # lm-eval's side
    python bench/pro_cot_vs_lmeval.py compare "$GGUF" OUT                       # ours, then compare

The lm-eval side serves the rows through bench/lmeval_render.py's stand-in for
datasets.load_dataset; everything else is lm-eval's own code.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

CATEGORIES = ("biology", "business", "chemistry", "computer science", "economics",
              "engineering", "health", "history", "law", "math", "other", "philosophy",
              "physics", "psychology")
SHOTS = 2


def row(i: int, category: str, n: int, cot: str = "") -> dict:
    return {"question_id": i, "question": f"Which option is number {i % n} for {category}?",
            "options": [f" option {j} " for j in range(n)], "answer": "ABCDEFGHIJ"[i % n],
            "answer_index": i % n, "cot_content": cot, "category": category, "src": "made-up"}


def made_up() -> dict:
    test = [row(i, c, 4 + i % 7) for i, c in enumerate(CATEGORIES)]
    val = [row(i, c, 4, f"A: Let's think step by step. Option {i % 4} is asked for. The "
                        f"answer is ({'ABCD'[i % 4]}).")
           for k, c in enumerate(CATEGORIES) for i in range(100 + 3 * k, 103 + 3 * k)]
    return {"test": test, "validation": val}


def lmeval_side(gguf: Path, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import lm_eval
    import lmeval_render as lr  # replaces datasets.load_dataset
    from lm_eval.utils import make_table

    lr._DATA[lr.MMLU_PRO] = made_up()
    res = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={gguf.parent},gguf_file={gguf.name},dtype=float32",
        tasks=["mmlu_pro"], num_fewshot=SHOTS, limit=1, log_samples=True, batch_size=4,
        device="cpu")
    samples = {f"{t[len('mmlu_pro_'):]}/{s['doc_id']}":
               {"context": s["arguments"][0][0], "text": s["resps"][0][0],
                "exact_match": s["exact_match"]} for t, ss in res["samples"].items() for s in ss}
    out.mkdir(parents=True, exist_ok=True)
    (out / "lmeval.json").write_text(json.dumps({"samples": samples, "table": make_table(res)
                                                 + "\n" + make_table(res, "groups")}))


def compare(gguf: Path, out: Path) -> None:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split, rows in made_up().items():
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    ours = subprocess.run(
        [sys.executable, "-m", "mmlu_bench.cli", "run", "--model", f"hf:{gguf}", "--task",
         "mmlu_pro", "--format", "cot", "--data-dir", str(data), "--num-fewshot", str(SHOTS),
         "--limit", "1", "--device", "cpu", "--output", str(out / "ours"), "--no-progress"],
        check=True, capture_output=True, text=True, cwd=Path(__file__).parent.parent).stdout
    theirs = json.loads((out / "lmeval.json").read_text())
    records = [json.loads(x) for x in (out / "ours/records.jsonl").read_text().splitlines()[1:-1]]
    assert {r["qid"] for r in records} == set(theirs["samples"]), "different questions"
    same = {"prompt": 0, "text": 0, "exact_match": 0}
    for r in records:
        t = theirs["samples"][r["qid"]]
        same["prompt"] += hashlib.sha256(t["context"].encode()).hexdigest() == r["prompt_sha256"]
        same["text"] += t["text"] == r["response"]
        same["exact_match"] += t["exact_match"] == float(r["correct"])
    print(", ".join(f"{k}: {v}/{len(records)} identical" for k, v in same.items()))
    print("lm-eval:\n" + theirs["table"] + "\nmmlu-bench:\n" + ours)


if __name__ == "__main__":
    mode, gguf, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    (lmeval_side if mode == "lmeval" else compare)(gguf, out)
