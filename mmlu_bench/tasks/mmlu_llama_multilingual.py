"""Meta's multilingual MMLU for Llama 3.1 as lm-eval 0.4.13's `mmlu_{de,es,fr,hi,it,pt,th}_llama`
(tasks/llama3/instruct/mmlu_<lang>), asked with `--format llama`.

The questions are the translated MMLU test rows Meta published with its evaluation details:
the hub dataset meta-llama/Llama-3.1-8B-Instruct-evals (gated: accept its licence, then `hf auth
login`), config `Llama-3.1-8B-Instruct-evals__multilingual_mmlu_<lang>__details`, split
`latest`, columns subtask_name ("mmlu_de_chat.anatomy"), input_question, input_choice_list
(A..D), input_correct_responses (["B"]) and input_final_prompts (Meta's own rendered prompt).
lm-eval filters the split by subtask_name, one task per subject, so a question's index counts
within its subject.

The few-shot examples. lm-eval writes five per subject inline in its YAML (fewshot_config
samples), which PR #2826 took from Meta's prompts; every row's input_final_prompts holds them,
rendered in Llama 3's chat format: "<|start_header_id|>user<|end_header_id|>\\n\\n<the question
in mmlu_llama's prompt><|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\nThe best
answer is B.<|eot_id|>" five times, then the question and "The best answer is". mmlu-bench reads
them from there at run time (the subject's first row, in the split's order: the set lm-eval
copied for college_medicine in German is the one Meta's rows hold), so no translated question
text is copied anywhere, and lm-eval is not needed. A prompt that is not in that shape is a
DataError naming the row.

Which files: the dataset card's `configs` (README.md front matter) maps the config and split to
its parquet files; a --data-dir folder in the same layout works offline. lm-eval reads the
hub's main branch; so does this, and the run header names the commit read.

Names: one language is lm-eval's tree (mmlu_de_llama, its category groups mmlu_de_llama_stem
with alias "stem", the subjects' mmlu_de_llama_<subject> with alias "<subject>", versions 1, 1,
1.0); with several, an mmlu-bench row over all of them (`mmlu_llama_multilingual`, not an lm-eval
name) sits above the languages' trees.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import DataError
from ..schema import Question, TaskData
from .base import Node, Task, first_n
from .mmlu import CATEGORIES, CATEGORY_OF, SUBJECTS, category_tree
from .mmmlu import pick_languages, split_unit

HUB_REPO = "meta-llama/Llama-3.1-8B-Instruct-evals"
CONFIG = "Llama-3.1-8B-Instruct-evals__multilingual_mmlu_{lang}__details"
SPLIT = "latest"
LANGUAGES = {"de": "German", "es": "Spanish", "fr": "French", "hi": "Hindi", "it": "Italian",
             "pt": "Portuguese", "th": "Thai"}
COLUMNS = ("subtask_name", "input_question", "input_choice_list", "input_correct_responses",
           "input_final_prompts")
TOP = "mmlu_llama_multilingual"

# Meta's prompt, one turn at a time (Llama 3's header tokens), and mmlu_llama's question text.
_TURN = re.compile(r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\n\n"
                   r"(.*?)(?=<\|eot_id\|>|$)", re.S)
_QUESTION = re.compile(
    r"Given the following question and four candidate answers \(A, B, C and D\), choose the "
    r"best answer\.\nQuestion: (?P<q>.*)\nA\. (?P<A>.*?)\nB\. (?P<B>.*?)\nC\. (?P<C>.*?)\n"
    r"D\. (?P<D>.*?)\nYour response should end with \"The best answer is "
    r"\[the_answer_letter\]\" where the \[the_answer_letter\] is one of A, B, C or D\.", re.S)
_ANSWER = re.compile(r"The best answer is ([ABCD])\.")


class MMLULlamaMultilingual(Task):
    name = TOP
    title = "Multilingual MMLU (Meta's Llama 3.1 evals)"
    # Bump when a change alters any prompt byte: resumed runs refuse a different format.
    prompt_format = "lm-eval-0.4.13-mmlu_lang_llama-1.0"
    formats = ("llama",)  # the recipe is the task: --format llama only

    def __init__(self, languages: str | None = None) -> None:
        self.languages = pick_languages(languages, list(LANGUAGES), self.name)
        self.options = {"languages": ",".join(self.languages)} if languages else {}

    def units(self) -> tuple[str, ...]:
        return tuple(f"{lang}.{s}" for lang in self.languages for s in SUBJECTS)

    def groups(self) -> dict[str, tuple[str, ...]]:
        """A language, a category or a subject: its units in the chosen languages."""
        out = {lang: tuple(f"{lang}.{s}" for s in SUBJECTS) for lang in self.languages}
        for name, subjects in [*CATEGORIES.items(), *((s, (s,)) for s in SUBJECTS)]:
            out[name] = tuple(f"{lang}.{s}" for lang in self.languages for s in subjects)
        return out

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        from . import meta_evals

        test: dict[str, tuple[Question, ...]] = {}
        shots: dict[str, tuple[Question, ...]] = {}
        sources = []
        for lang in sorted({split_unit(u)[0] for u in units}):
            rows, source = meta_evals.rows(HUB_REPO, CONFIG.format(lang=lang), SPLIT, COLUMNS,
                                           data_dir)
            sources.append(source)
            wanted = [u for u in units if split_unit(u)[0] == lang]
            found = _questions(lang, rows, source)
            missing = [u for u in wanted if u not in found]
            if missing:
                raise DataError(f"{source}: no rows for {', '.join(missing[:3])} (subtask_name "
                                f"mmlu_{lang}_chat.<subject>); is this Meta's evals dataset?")
            for u in wanted:
                test[u], first = found[u]
                shots[u] = read_shots(u, first, source)
        return TaskData(test, shots, "; ".join(dict.fromkeys(sources)))

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        """lm-eval's first_n over the subject's five samples."""
        return first_n(data.dev.get(q.subject, ()), k, q.subject)

    def tree(self, units: Sequence[str]) -> list[Node]:
        languages = sorted({split_unit(u)[0] for u in units})
        rows: list[Node] = []
        if len(languages) > 1:
            rows.append(Node(TOP, TOP, 0, tuple(sorted(units)), nshot=False))
        for lang in languages:
            key = f"mmlu_{lang}_llama"
            rows += category_tree(key, key, [u for u in units if split_unit(u)[0] == lang],
                                  CATEGORY_OF, key, ("1", "1", "1.0"),
                                  level=int(len(languages) > 1),
                                  subject_of=lambda u: split_unit(u)[1], version_text=True)
        return rows


def _questions(lang: str, rows: list[dict], where: str
               ) -> dict[str, tuple[tuple[Question, ...], dict]]:
    """unit -> (its questions in split order, its first row), for MMLU's subjects."""
    out: dict[str, list] = {}
    prefix = f"mmlu_{lang}_chat."
    for i, row in enumerate(rows):
        subject = str(row["subtask_name"]).removeprefix(prefix)
        if subject not in CATEGORY_OF:
            continue
        unit = f"{lang}.{subject}"
        found = out.setdefault(unit, [])
        choices = row["input_choice_list"] or {}
        try:
            gold = "ABCD".index(row["input_correct_responses"][0])
            options = tuple(str(choices[x]) for x in "ABCD")
        except (KeyError, IndexError, TypeError, ValueError):
            raise DataError(f"{where}: row {i + 1}: input_choice_list must hold A..D and "
                            "input_correct_responses a letter A-D.") from None
        found.append((Question(unit, len(found), str(row["input_question"]), options, gold),
                      row))
    return {u: (tuple(q for q, _ in qs), qs[0][1]) for u, qs in out.items()}


def read_shots(unit: str, row: dict, where: str) -> tuple[Question, ...]:
    """The few-shot examples of Meta's prompt for `row` (input_final_prompts[0]): each answered
    user turn before the question's own, as questions of `unit` numbered -1, -2, ..."""
    prompts = row.get("input_final_prompts") or [""]
    turns = [t for t in _TURN.findall(prompts[0]) if t[0] != "system"]
    if len(turns) < 2 or len(turns) % 2 or [r for r, _ in turns[-2:]] != ["user", "assistant"]:
        raise _not_meta(unit, where)
    out = []
    for i in range(0, len(turns) - 2, 2):
        (role, text), (answer_role, answer) = turns[i], turns[i + 1]
        q, a = _QUESTION.fullmatch(text), _ANSWER.fullmatch(answer)
        if (role, answer_role) != ("user", "assistant") or not q or not a:
            raise _not_meta(unit, where)
        out.append(Question(unit, -1 - i // 2, q["q"], tuple(q[x] for x in "ABCD"),
                            "ABCD".index(a[1])))
    return tuple(out)


def _not_meta(unit: str, where: str) -> DataError:
    return DataError(f"{where}: the first {unit} row's input_final_prompts is not Meta's "
                     "few-shot chat prompt (user and assistant turns in Llama 3's format, each "
                     "answered 'The best answer is X.'); its few-shot examples cannot be read "
                     "from it.")
