"""process_docs for the generated lm-eval task: MMLU CSV rows -> the fields of `cais/mmlu`.

Copied next to the generated task YAML files and loaded by lm-eval (`!function`), so it runs
inside lm-eval's venv: standard library and `datasets` only, nothing from mmlu_bench.

A CSV row (question, A, B, C, D, answer letter) becomes {question, choices: [A, B, C, D],
answer: 0..3}: the columns the `mmlu` task's doc_to_text / doc_to_choice / doc_to_target read,
so those templates stay exactly as lm-eval ships them.
"""

LETTERS = "ABCD"


def _convert(row):
    values = [row["question"], row["A"], row["B"], row["C"], row["D"], row["answer"]]
    # pandas turns "None"/"NA" into NaN and all-numeric columns into numbers; the task config
    # switches that off (na_filter: false), and this makes sure nothing slipped through.
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"CSV value {v!r} was not read as text: the prompt would differ "
                            "from the file; read the CSV with na_filter: false")
    if row["answer"] not in LETTERS:
        raise ValueError(f"answer {row['answer']!r} is not one of A-D")
    return {"question": row["question"], "choices": [row["A"], row["B"], row["C"], row["D"]],
            "answer": LETTERS.index(row["answer"])}


def process_docs(dataset):
    import datasets

    # Explicit types: `map` would otherwise keep the old column's type for "answer" (text).
    features = datasets.Features({
        "question": dataset.features["question"],
        "choices": getattr(datasets, "List", datasets.Sequence)(dataset.features["A"]),
        "answer": datasets.Value("int64"),
    })
    return dataset.map(_convert, remove_columns=["A", "B", "C", "D", "answer"],
                       features=features)
