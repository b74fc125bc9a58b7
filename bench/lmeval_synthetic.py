"""Made-up documents in the exact column schema of each hub dataset lm-eval's MMLU tasks read.

Used only by bench/lmeval_render.py (run with the lm-eval 0.4.13 venv). Every question here is
synthetic; none comes from a real dataset. The rows carry traps the prompt code must survive:
leading/trailing whitespace in questions and options, a newline inside a question, non-ASCII
text, MMLU-Pro rows with 3 to 10 options, rows of other subjects/categories that a per-subject
`process_docs` filter must drop (from the test split and from the few-shot pool).
"""

LETTERS = "ABCDEFGHIJ"


def mmlu_rows(split: str, n: int, subject: str = "anatomy") -> list[dict]:
    """cais/mmlu rows: question, subject, choices (4), answer (ClassLabel index 0-3)."""
    rows = []
    for i in range(n):
        question = f"{split} Q{i} text about {subject}?"
        choices = [f"{split}{i} opt{j}" for j in range(4)]
        if i == 0:
            question = f"  {question}  "  # lm-eval strips the question, never the options
            choices[1] = f" {choices[1]} "
        if i == 1:
            question = f"{split} Q1 line one\nline two: which?"
        if i == 2:
            question = f"{split} Q2 Größe des Herzens — ¿qué? 心臓"
            choices[3] = "α-Helix (ß)"
        rows.append({"question": question, "subject": subject, "choices": choices,
                     "answer": (i + 1) % 4})
    return rows


def mmlu_pro_row(qid: int, category: str, n_opts: int, split: str) -> dict:
    """TIGER-Lab/MMLU-Pro row; cot_content is only filled on the validation split."""
    options = [f"opt{j}" for j in range(n_opts)]
    options[0] = f" {options[0]}  "  # leaderboard_mmlu_pro keeps it, mmlu_pro strips it
    answer_index = (qid * 3) % n_opts
    letter = LETTERS[answer_index]
    cot = ""
    if split == "validation":
        cot = (f"A: Let's think step by step. Fact {qid} about {category} settles it. "
               f"The answer is ({letter}).")
    question = f"Q{qid} text about {category}?"
    if qid % 4 == 1:
        question = f" Q{qid} first line\nsecond line — naïve? "
    return {"question_id": qid, "question": question, "options": options, "answer": letter,
            "answer_index": answer_index, "cot_content": cot, "category": category,
            "src": f"synthetic-{category}"}


def mmlu_pro_dataset() -> dict:
    test_spec = [("biology", 10), ("math", 4), ("biology", 3), ("law", 10), ("biology", 7)]
    val_spec = [("math", 10), ("biology", 4), ("health", 10), ("biology", 10), ("biology", 3)]
    return {
        "test": [mmlu_pro_row(100 + i, c, n, "test") for i, (c, n) in enumerate(test_spec)],
        "validation": [mmlu_pro_row(i, c, n, "validation") for i, (c, n) in enumerate(val_spec)],
    }


def mmmlu_rows() -> list[dict]:
    """openai/MMMLU (one locale config): 'Unnamed: 0', Question, A-D, Answer (letter), Subject.

    One Subject carries an embedded CSV file name, as some real configs do; lm-eval cuts it.
    """
    subjects = ["anatomy", "virology", "anatomy", "anatomy_test.csv_de-DE.csv", "anatomy"]
    rows = []
    for i, subject in enumerate(subjects):
        question = f"Frage {i} über Anatomie: Größe?" if i != 2 else f"  Frage {i}\nzweite Zeile  "
        rows.append({"Unnamed: 0": i, "Question": question, "A": f"Antwort {i}a ",
                     "B": f"Antwort {i}b", "C": f" Äquivalent {i}c", "D": f"Antwort {i}d",
                     "Answer": LETTERS[i % 4], "Subject": subject})
    return rows


def global_row(split: str, i: int, subject: str, category: str) -> dict:
    """Global-MMLU / Global-MMLU-Lite row (same columns in both datasets)."""
    question = f"{split} GQ{i} about {subject}?"
    if i == 1:
        question = f"  {split} GQ1 line one\nline two  "
    return {"sample_id": f"{subject}/{split}/{i}", "subject": subject,
            "subject_category": category, "question": question,
            "option_a": f"{split}{i} a ", "option_b": f"{split}{i} b",
            "option_c": f"{split}{i} ç", "option_d": f"{split}{i} d",
            "answer": LETTERS[(i + 2) % 4], "required_knowledge": "[]", "time_sensitive": "No",
            "reference": "-", "culture": "-", "region": "-", "country": "-",
            "cultural_sensitivity_label": "CA" if i % 2 else "CS", "is_annotated": True}


def global_lite_dataset() -> dict:
    test = [global_row("test", i, s, c) for i, (s, c) in enumerate(
        [("astronomy", "STEM"), ("marketing", "Business"), ("anatomy", "STEM"),
         ("virology", "STEM"), ("college_physics", "STEM"), ("anatomy", "STEM")])]
    dev = [global_row("dev", i, s, c) for i, (s, c) in enumerate(
        [("anatomy", "STEM"), ("nutrition", "Medical"), ("astronomy", "STEM"),
         ("virology", "STEM"), ("college_physics", "STEM"), ("anatomy", "STEM"),
         ("astronomy", "STEM")])]
    return {"test": test, "dev": dev}


def global_full_dataset() -> dict:
    test = [global_row("test", i, s, "STEM") for i, s in enumerate(
        ["anatomy", "virology", "anatomy", "anatomy"])]
    dev = [global_row("dev", i, s, "STEM") for i, s in enumerate(
        ["virology", "anatomy", "anatomy", "anatomy"])]
    return {"test": test, "dev": dev}


def redux_rows() -> list[dict]:
    """fxmarty/mmlu-redux-2.0-ok: question, choices, answer (int), error annotations."""
    rows = mmlu_rows("test", 3)
    for row in rows:
        row.update({"error_type": "ok", "source": "synthetic", "correct_answer": None,
                    "potential_reason": ""})
    return rows


FILTER_DOC_CHOICES = ["Mars", "Venus", "Earth", "Jupiter"]


# Meta's evals datasets (meta-llama/Llama-3.1-8B-Instruct-evals): the multilingual MMLU configs.
META_USER = ("Given the following question and four candidate answers (A, B, C and D), choose "
             "the best answer.\nQuestion: {q}\nA. {A}\nB. {B}\nC. {C}\nD. {D}\nYour response "
             "should end with \"The best answer is [the_answer_letter]\" where the "
             "[the_answer_letter] is one of A, B, C or D.")
HEADER = "<|start_header_id|>{}<|end_header_id|>\n\n"


def meta_doc(i: int, kind: str) -> dict:
    """A made-up question in Meta's columns (input_question, input_choice_list, ...)."""
    question = f"{kind} Frage {i} über Anatomie: Größe?"
    if i == 1:
        question = f"{kind} Frage 1\nzweite Zeile: welche?"
    choices = {x: f"{kind}{i} Antwort {x}" for x in "ABCD"}
    if i == 0:
        choices["B"] = f" {choices['B']} "
    return {"input_question": question, "input_choice_list": choices,
            "input_correct_responses": [LETTERS[(i + 3) % 4]]}


def meta_prompt(shots: list[dict], doc: dict) -> str:
    """input_final_prompts[0]: Meta's own 5-shot chat prompt in Llama 3's format."""
    def user(d):
        q = d["input_question"].strip()
        return HEADER.format("user") + META_USER.format(q=q, **d["input_choice_list"]) + \
            "<|eot_id|>"

    text = "".join(user(s) + HEADER.format("assistant") + "The best answer is "
                   f"{s['input_correct_responses'][0]}.<|eot_id|>" for s in shots)
    return text + user(doc) + HEADER.format("assistant") + "The best answer is"


def meta_multilingual(lang: str = "de") -> tuple[list[dict], list[dict]]:
    """(rows of the `latest` split, the anatomy subject's five shots): rows of two subjects,
    each carrying Meta's prompt built from its subject's shots."""
    shots = {s: [meta_doc(10 + i, f"{s[:3]}-shot") for i in range(5)]
             for s in ("anatomy", "virology")}
    rows = []
    for i, subject in enumerate(["anatomy", "virology", "anatomy", "anatomy"]):
        doc = meta_doc(i, "test")
        rows.append({"subtask_name": f"mmlu_{lang}_chat.{subject}", **doc,
                     "input_final_prompts": [meta_prompt(shots[subject], doc)],
                     "is_correct": i % 2 == 0})
    return rows, shots["anatomy"]
