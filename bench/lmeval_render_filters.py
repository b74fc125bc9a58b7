"""What lm-eval 0.4.13's real filter pipelines + exact_match make of many response shapes.

Called by bench/lmeval_render.py (lm-eval venv). For each generative task it builds the real task
on one synthetic doc (gold letter B), clones its request once per response, runs the task's own
`apply_filters()` and `process_results()` exactly as the evaluator does, and records, per filter,
the filtered string and the exact_match score.
"""

import copy
import json

# Response shapes a model might produce; the expected letters come from lm-eval, not from us.
RESPONSES = [
    "The answer is (B).", "**Answer: C**", "B. Mars", "I think A or B", "",
    "Answer: B\n\nExplanation: it is not A.", "B", " B", "B\n", "b", "(B)", "B.",
    "the answer is (c)", "Let's think step by step. Venus is hot.\nTherefore, the answer is D.",
    "The answer is B", "The answer is B.", "Ｂ", "Answer: Ｂ",
    "The correct answer is (B) Venus, not (A).",
    "Mars is red. The answer is (A). Wait, the answer is (B).", "answer is B.",
    "The answer: B.", "**B**", "Option B is correct.", "The final answer: (D).", "venus",
    "The answer is $\\boxed{B}$", "Answer:B", "Réponse : B", "Antwort: A\nAntwort: C",
    "答案：Ｃ", "   \n  ", "C) Earth", "I'd say (E)", "The answer is (J).",
    "The answer is (B)\n\nQuestion: next one", "B) Venus\nA) Mars", "(b) venus",
    "answer is B\nSo the answer is (B).", "The answer is  B.", "Answer: b", "（B）",
]

PLANETS = ["Mars", "Venus", "Earth", "Jupiter"]
FILTER_TASKS = {
    "mmlu_anatomy_generative": (("cais/mmlu", "anatomy"), "test"),
    "mmlu_flan_cot_zeroshot_anatomy": (("cais/mmlu", "anatomy"), "validation"),
    "mmlu_pro_biology": (("TIGER-Lab/MMLU-Pro", None), "test"),
    "mmlu_redux_anatomy_generative": (("fxmarty/mmlu-redux-2.0-ok", "anatomy"), "test"),
}


def filter_doc(task_name: str) -> dict:
    if task_name == "mmlu_pro_biology":
        options = PLANETS + ["Saturn", "Neptune", "Uranus", "Pluto", "Mercury", "the Moon"]
        return {"question_id": 1, "question": "Which planet is the hottest?", "options": options,
                "answer": "B", "answer_index": 1, "cot_content": "", "category": "biology",
                "src": "synthetic"}
    doc = {"question": "Which planet is the hottest?", "subject": "anatomy",
           "choices": list(PLANETS), "answer": 1}
    if task_name.startswith("mmlu_redux"):
        del doc["subject"]
        doc.update({"error_type": "ok", "source": "synthetic", "correct_answer": None,
                    "potential_reason": ""})
    return doc


def task_outcomes(task) -> list[dict]:
    """Clone the one request per response; run the task's filters and metric as the evaluator."""
    [template] = task.instances
    clones = []
    for resp in RESPONSES:
        inst = copy.deepcopy(template)
        inst.resps = [resp]
        clones.append(inst)
    task._instances = clones
    task.apply_filters()
    names = [f.name for f in task._filters]
    rows = []
    for resp, inst in zip(RESPONSES, clones, strict=True):
        per_filter = {}
        for name in names:
            filtered = inst.filtered_resps[name]
            metrics = task.process_results(inst.doc, [filtered])
            per_filter[name] = {"filtered": filtered, "exact_match": float(metrics["exact_match"])}
        rows.append({"response": resp, "filters": per_filter})
    return rows


def write(manager, load_task, data: dict, path) -> None:
    tasks = []
    for name, (key, split) in FILTER_TASKS.items():
        data[key] = {**data.get(key, {}), split: [filter_doc(name)]}
        task = load_task(manager, name, 0)
        task.build_all_requests()
        metric_kwargs = {m: dict(kw) for m, kw in task._metric_fn_kwargs.items()}
        tasks.append({
            "lmeval_task": name, "doc": filter_doc(name), "gold": task.doc_to_target(
                task.instances[0].doc),
            "filter_list": task.config.filter_list, "metric_kwargs": metric_kwargs,
            "outcomes": task_outcomes(task)})
    payload = {"lm_eval_version": "0.4.13", "responses": RESPONSES, "tasks": tasks}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
