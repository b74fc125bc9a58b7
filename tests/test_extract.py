"""mmlu_bench.extract against lm-eval 0.4.13's own filter output
(tests/fixtures/lmeval_filters.json, written by bench/lmeval_render.py) and against simple-evals'
extraction, read from its code."""

import json
import pathlib

import pytest

from mmlu_bench import extract

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "lmeval_filters.json"
TASK_FAMILY = {
    "mmlu_anatomy_generative": "mmlu_generative",
    "mmlu_flan_cot_zeroshot_anatomy": "mmlu_flan_cot_zeroshot",
    "mmlu_pro_biology": "mmlu_pro",
    "mmlu_redux_anatomy_generative": "mmlu_redux_generative",
    "mmlu_llama_anatomy": "mmlu_llama",
    "mmlu_de_llama_anatomy": "mmlu_llama",  # the multilingual tasks share mmlu_llama's filter
    "mmlu_cot_llama_anatomy": "mmlu_cot_llama",
    "mmlu_pro_llama_biology": "mmlu_pro_llama",
}


def _lmeval_rows() -> list:
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    rows = []
    for task in data["tasks"]:
        choices = task["doc"].get("choices") or task["doc"].get("options")
        kwargs = task["metric_kwargs"]["exact_match"]
        for outcome in task["outcomes"]:
            for filter_name, got in outcome["filters"].items():
                rows.append(pytest.param(TASK_FAMILY[task["lmeval_task"]], filter_name, choices,
                                   task["gold"], kwargs, outcome["response"], got,
                                   id=f"{task['lmeval_task']}-{filter_name}-"
                                      f"{outcome['response']!r}"))
    return rows


def test_fixture_covers_every_lmeval_pipeline():
    data = json.loads(FIXTURE.read_text(encoding="utf-8"))
    seen = {(TASK_FAMILY[t["lmeval_task"]], f["name"]) for t in data["tasks"]
            for f in t["filter_list"]}
    assert seen == {key for key in extract.PIPELINES if key[0] != "simple_evals"}
    assert len(data["responses"]) >= 25


@pytest.mark.parametrize("family,filter_name,choices,gold,kwargs,response,got", _lmeval_rows())
def test_matches_lmeval(family, filter_name, choices, gold, kwargs, response, got):
    result = extract.PIPELINES[(family, filter_name)](response, choices)
    assert result.filtered == got["filtered"]
    assert extract.exact_match(result.filtered, gold, **kwargs) == bool(got["exact_match"])
    gold_letter = gold.strip("().")
    assert (result.letter == gold_letter) == bool(got["exact_match"])
    assert (result.letter is None) == (result.reason is not None)


def test_lmeval_reasons():
    assert extract.lmeval_mmlu_generative("").reason == "empty response"
    assert extract.lmeval_mmlu_pro("I pick B").reason == "no match"
    assert extract.lmeval_mmlu_generative("B. Mars").reason.startswith("not a lone letter")


def test_flexible_empty_choice_text_falls_through_to_colon_letter():
    # An empty choice makes lm-eval's choice-text regex match "" everywhere; its last hit is ""
    # so the colon-letter step decides.
    got = extract.lmeval_flan_cot_flexible("so: C", ["", "x", "y", "z"])
    assert (got.filtered, got.letter) == ("(C)", "C")


def test_strict_first_prefix_with_one_char_left_is_invalid():
    # The first "answer is " leaves one character on its line: lm-eval captures "" -> invalid,
    # even though the next line would match.
    got = extract.lmeval_flan_cot_strict("answer is B\nSo the answer is (B).")
    assert got.filtered == extract.INVALID


SIMPLE_EVALS = [
    ("Step by step...\nAnswer: B", "B"),
    ("**Answer: C**", "C"),
    ("Answer: $D$", "D"),
    ("Answer: $\\boxed{A}$", "A"),
    ("ANSWER:B", "B"),
    ("answer :  c", None),  # (?i) extracts "c"; compared to "C" it scores 0
    ("Answer:\nB", None),  # only spaces/tabs may follow the marker
    ("The answer is B", None),
    ("Answer: A is wrong. Final Answer: B", "A"),  # first occurrence
    ("Antwort: A\nAnswer: C", "C"),  # markers are tried in list order, English first
    ("Antwort: A\nAntwort: C", "A"),
    ("Réponse : B", "B"),
    ("Respuesta: D", "D"),
    ("答案：Ｃ", "C"),
    ("答え: Ｂ", "B"),
    ("Answer: Ｂ", "B"),
    ("Answer: ｂ", None),  # (?i) matches the full-width lower case, which is not mapped
    ("الإجابة: ب", "B"),
    ("الإجابة: ت", None),  # the Arabic class is a range; ت is in it but maps to nothing
    ("উত্তর: ব", "B"),
    ("Jibu: A", "A"),
    ("Answer:\u200b\u200b\u200b\u200b\u200b\u200bD", "D"),
    ("Answer: E", None),
    ("", None),
    ("B", None),
]


@pytest.mark.parametrize("response,letter", SIMPLE_EVALS)
def test_simple_evals(response, letter):
    got = extract.simple_evals_mmlu(response)
    assert got.letter == letter
    assert (got.letter is None) == (got.reason is not None)


def test_simple_evals_reasons():
    assert extract.simple_evals_mmlu("").reason == "empty response"
    assert extract.simple_evals_mmlu("The answer is B").reason == "no match"
    assert "not a letter" in extract.simple_evals_mmlu("answer: b").reason
    assert extract.simple_evals_mmlu("answer: b").filtered == "b"


EXACT_MATCH = json.loads(FIXTURE.read_text(encoding="utf-8"))["exact_match_cases"]


@pytest.mark.parametrize("case", EXACT_MATCH, ids=lambda c: f"{c['prediction']!r}~"
                         f"{c['reference']!r}-{sorted(c['kwargs'].items())}")
def test_exact_match_equals_lmevals_metric(case):
    """Every pair as lm-eval's own exact_match_hf_evaluate scored it (bench/lmeval_render.py):
    regexes_to_ignore, then case, then ASCII punctuation, and numpy's string quirks."""
    got = extract.exact_match(case["prediction"], case["reference"], **case["kwargs"])
    assert got == bool(case["exact_match"])


# A few of those, by hand: what each lm-eval rule does to Meta's "B." target.
LLAMA_TABLE = [  # (prediction, equal to "B." under mmlu_llama's metric, why)
    ("B", True, "'\\.$' drops the target's final dot"),
    ("$B$", True, "'\\$' drops every dollar"),
    ("B..", True, "one final dot dropped, the other is punctuation"),
    ("**b**", True, "case and ASCII punctuation ignored"),
    ("Ｂ", False, "full-width letters are not ASCII"),
    ("B\x00", True, "numpy drops trailing NULs"),
    ("İ", False, "lower-cased to 'i', not 'b'"),
    ("B is", False, "the whole filtered text must match"),
]


@pytest.mark.parametrize("prediction,equal,why", LLAMA_TABLE)
def test_mmlu_llama_metric_by_hand(prediction, equal, why):
    kwargs = {"regexes_to_ignore": extract.LLAMA_REGEXES}
    assert extract.exact_match(prediction, "B.", **kwargs) == equal, why
    assert (extract.lmeval_mmlu_llama(prediction).letter == "B") == equal, why


def test_exact_match_punctuation_is_ascii_only():
    assert extract.exact_match("(B)", "b")
    assert not extract.exact_match("（B）", "B")  # full-width brackets are not string.punctuation
    assert not extract.exact_match("b", "B", ignore_case=False)
