"""Prompts are lm-eval 0.4.13's `mmlu` prompts byte for byte (pinned by sha256, not by copying
MMLU questions into the repo)."""

from __future__ import annotations

import json

import pytest

from mmlu_bench import dataset, prompts
from mmlu_bench.errors import UserError
from mmlu_bench.schema import Question, TaskData
from mmlu_bench.tasks.mmlu import MMLU, SUBJECTS

from .conftest import REFERENCE_0SHOT

# sha256 of lm-eval 0.4.13's own 5-shot contexts (rendered by lm-eval from the same CSV files,
# collected from its --log_samples output by bench/bench_vs_lmeval.py).
LMEVAL_5SHOT_SHA256 = {
    "anatomy/0": "b91759cf63d02a5541c3bd952870370ea5c19661d02a7a9a4c20907549d641e3",
    "anatomy/1": "aa6f08c659eb3177b1e14719db9b0eb80772f2b9e3e34d62c26543ba3188f2fb",
    "anatomy/2": "444452032e4c36ec8e4755f18f0c88e80dd1e15c598bcbcbbad3aae9dad7e8b1",
    "virology/0": "e0b003a91e641c19e3defeef85ccd8472f7fdd92115f5d6e7880d751c07a73fc",
    "virology/1": "3c16be147202adc93f75d6c44b04afd431fb50554acba2f10d7634f5816f500a",
    "virology/2": "d1548abedede65e39016eeb815f953aad2469060aa0738337978ef2b846f18e5",
}


@pytest.fixture(scope="module")
def data(mmlu_dir):
    return dataset.load(str(mmlu_dir), SUBJECTS)


def test_zero_shot_prompts_match_lm_eval_for_all_570_reference_questions(data):
    reference = [json.loads(line) for line in REFERENCE_0SHOT.open()]
    assert len(reference) == 570
    for ref in reference:
        q = data.test[ref["subject"]][ref["doc_id"]]
        assert q.gold == ref["gold"], ref["doc_id"]
        assert prompts.sha256(prompts.context(MMLU(), q, ())) == ref["prompt_sha256"], q.qid


def test_five_shot_prompts_match_lm_eval(data):
    for qid, digest in LMEVAL_5SHOT_SHA256.items():
        subject, index = qid.split("/")
        q = data.test[subject][int(index)]
        shots = MMLU().shots(data, q, 5)
        assert prompts.sha256(prompts.context(MMLU(), q, shots)) == digest, qid


def test_prompt_shape_on_a_made_up_question():
    q = Question("high_school_us_history", 0, "  Why?\n", ("a", "b ", "<c>", "d"), 2)
    shot = Question("high_school_us_history", 0, "How?", ("1", "2", "3", "4"), 1)
    expected = ("The following are multiple choice questions (with answers) about high school us "
                "history.\n\nHow?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n"
                "Why?\nA. a\nB. b \nC. <c>\nD. d\nAnswer:")
    data = TaskData({}, {q.subject: (shot,)}, "test")
    assert prompts.context(MMLU(), q, (shot,)) == expected
    request = prompts.build_requests(MMLU(), (q,), data, 1)[0]
    assert request.continuations == (" A", " B", " C", " D")
    assert request.qid == "high_school_us_history/0"


def test_fewshot_takes_the_first_k_dev_examples_and_refuses_too_many(data):
    dev = data.dev["anatomy"]
    q = data.test["anatomy"][0]
    assert MMLU().shots(data, q, 3) == dev[:3]
    with pytest.raises(UserError, match="--num-fewshot 6 is more than the 5 few-shot examples"):
        MMLU().shots(data, q, 6)
