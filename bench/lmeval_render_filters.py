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
    # Meta's recipes: the continuation of "The best answer is", and its closing line
    "$B$", "B$", "\\$B", "B..", " b", "B is correct", "B\x00", " Ｂ", "B.\n", "\nB",
    "The best answer is B.", "The best answer is B", "the best answer is B.",
    "The best answer is b.", "The best answer is (B).", "The best answer is **B**.",
    "The best answer is C. Wait: the best answer is B.",
    "The best answer is B.\nThe best answer is C.", "best answer is B", "Best answer is B.",
    "## Step 1: Mars is red\nThe best answer is B.", "The best answer is B [Done]",
]

PLANETS = ["Mars", "Venus", "Earth", "Jupiter"]
FILTER_TASKS = {
    "mmlu_anatomy_generative": (("cais/mmlu", "anatomy"), "test"),
    "mmlu_flan_cot_zeroshot_anatomy": (("cais/mmlu", "anatomy"), "validation"),
    "mmlu_pro_biology": (("TIGER-Lab/MMLU-Pro", None), "test"),
    "mmlu_redux_anatomy_generative": (("fxmarty/mmlu-redux-2.0-ok", "anatomy"), "test"),
    "mmlu_llama_anatomy": (("hails/mmlu_no_train", "anatomy"), "test"),
    "mmlu_cot_llama_anatomy": (("hails/mmlu_no_train", "anatomy"), "test"),
    "mmlu_pro_llama_biology": (("TIGER-Lab/MMLU-Pro", None), "test"),
    "mmlu_de_llama_anatomy": (("meta-llama/Llama-3.1-8B-Instruct-evals",
                               "Llama-3.1-8B-Instruct-evals__multilingual_mmlu_de__details"),
                              "latest"),
}


def filter_doc(task_name: str) -> dict:
    if task_name == "mmlu_de_llama_anatomy":  # Meta's columns, a made-up question
        return {"subtask_name": "mmlu_de_chat.anatomy",
                "input_question": "Which planet is the hottest?",
                "input_choice_list": dict(zip("ABCD", PLANETS)),
                "input_correct_responses": ["B"], "input_final_prompts": [""]}
    if task_name in ("mmlu_pro_biology", "mmlu_pro_llama_biology"):
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


# exact_match alone (lm-eval's exact_match_hf_evaluate, one pair at a time as process_results
# calls it): the traps of its regexes, numpy strings and case folding.
EXACT_MATCH_PAIRS = [
    ("B", "B."), ("B.", "B."), ("b", "B."), (" B", "B."), ("B ", "B."), ("B.\n", "B."),
    ("B\n.", "B."), ("$B$", "B."), ("B$", "B."), ("\\$B", "B."), ("B..", "B."), ("B. ", "B."),
    ("(B)", "B."), ("**B**", "B."), ("B\x00", "B."), ("\x00B", "B."), ("B\x00!", "B."),
    ("B \x00", "B."), ("Ｂ", "B."), ("\u212a", "K."), ("İ", "i."), ("ß", "SS."), ("B.C", "B."),
    ("", "B."), ("[invalid]", "B."), ("B", "B"), ("b", "B"), ("B.", "B"), ("(B", "B"),
    ("B\t", "B"), ("\tB", "B"), ("B.$", "B."), ("$.B", "B."), ("B.\n\n", "B."),
    ("ΑΣ", "ασ."), ("ΑΣ", "ας."), ("ǅ", "ǆ."), ("İ\x00", "i̇."), ("İ\x00", "i."),
    ("İ$", "i."),
]
EXACT_MATCH_KWARGS = [
    {"ignore_case": True, "ignore_punctuation": True, "regexes_to_ignore": ["\\$", "\\.$"]},
    {"ignore_case": True, "ignore_punctuation": True},
    {"ignore_case": False, "ignore_punctuation": True, "regexes_to_ignore": ["\\$", "\\.$"]},
    {"ignore_case": True, "ignore_punctuation": False},
]


def exact_match_cases() -> list[dict]:
    from lm_eval.api.metrics import exact_match_hf_evaluate

    return [{"prediction": p, "reference": r, "kwargs": kw,
             "exact_match": float(exact_match_hf_evaluate(predictions=[p], references=[r],
                                                          **kw)["exact_match"])}
            for kw in EXACT_MATCH_KWARGS for p, r in EXACT_MATCH_PAIRS]


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
    payload = {"lm_eval_version": "0.4.13", "responses": RESPONSES, "tasks": tasks,
               "exact_match_cases": exact_match_cases()}
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
