"""bench/agreement.py (per-question agreement of two tools), bench/lmeval_runner.py's samples
reader and bench/lmeval_task_pro.py's task folder, on small synthetic cases."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    # bench/ is a folder of scripts, not a package: its modules import each other by bare name.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


agreement = _load("agreement")


def q(qid, lls, gold=0, prompt="p", pred=None):
    return {"id": qid, "lls": list(lls), "gold": gold, "prompt_sha256": agreement.sha256(prompt),
            "pred": agreement.argmax(lls) if pred is None else pred}


BASE = [q("a/0", [-1.0, -2.0, -3.0, -4.0]), q("a/1", [-3.0, -0.5, -2.0, -9.0], gold=1),
        q(7, [-2.0] * 9 + [-1.0], gold=9)]


def edited(i: int, **change) -> list[dict]:
    out = [dict(x) for x in BASE]
    out[i].update(change)
    return out


# (name, second side, expected fields of compare(BASE, second), within 1e-4)
CASES = [
    ("identical", BASE, dict(questions=3, pred_agree=3, prompts_identical=3, gold_identical=3,
                             max_abs_ll_diff=0.0, missing_lls=0, only_first=0, only_second=0),
     True),
    ("one prediction differs", edited(1, pred=2), dict(pred_agree=2, pred_agreement=2 / 3),
     False),
    ("question missing on the second side", BASE[:2], dict(questions=2, only_first=1,
                                                           only_second=0, pred_agree=2), False),
    ("question only on the second side", BASE + [q("b/0", [-1.0, -2.0])],
     dict(questions=3, only_first=0, only_second=1), False),
    ("None log-likelihood", edited(0, lls=[-1.0, None, -3.0, -4.0]),
     dict(missing_lls=1, max_abs_ll_diff=0.0, pred_agree=3), False),
    ("NaN log-likelihood", edited(0, lls=[-1.0, -2.0, math.nan, -4.0]),
     dict(missing_lls=1, max_abs_ll_diff=0.0), False),
    ("prompt hash mismatch", edited(2, prompt_sha256=agreement.sha256("other")),
     dict(prompts_identical=2, pred_agree=3), False),
    ("gold differs", edited(0, gold=3), dict(gold_identical=2), False),
    ("difference within tolerance", edited(2, lls=[-2.0] * 9 + [-1.00005]),
     dict(max_at="7 choice J", pred_agree=3), True),
    ("difference beyond tolerance", edited(0, lls=[-1.0, -2.0, -3.0002, -4.0]),
     dict(max_at="a/0 choice C"), False),
    ("choice counts differ", edited(1, lls=[-3.0, -0.5, -2.0]),
     dict(choice_counts_differ=1, pred_agree=3), False),
]


@pytest.mark.parametrize("name, second, want, ok", CASES, ids=[c[0] for c in CASES])
def test_compare(name, second, want, ok):
    cmp = agreement.compare(BASE, second)
    for key, value in want.items():
        assert cmp[key] == pytest.approx(value, abs=1e-12), key
    assert agreement.within(cmp, 1e-4) is ok


def test_compare_difference_is_measured_and_located():
    cmp = agreement.compare(BASE, edited(1, lls=[-3.0, -0.5, -2.25, -9.0]))
    assert cmp["max_abs_ll_diff"] == pytest.approx(0.25)
    assert cmp["max_at"] == "a/1 choice C"


def test_nothing_in_common_is_not_agreement():
    cmp = agreement.compare(BASE, [q("z/9", [-1.0, -2.0])])
    assert cmp["questions"] == 0 and cmp["pred_agreement"] is None
    assert not agreement.within(cmp, 1.0)


def test_a_question_named_twice_is_refused():
    with pytest.raises(ValueError, match="a/0"):
        agreement.compare(BASE + [BASE[0]], BASE)


@pytest.mark.parametrize("lls, want", [
    ([-2.0, -1.0, -1.0, -3.0], 1),  # ties: the first highest, as numpy.argmax
    ([None, -5.0, -1.0], 2),        # a missing value never wins
    ([None, None], -1),
    ([-1.0], 0),
])
def test_argmax(lls, want):
    assert agreement.argmax(lls) == want


def test_degenerate_flags_only_all_equal_log_likelihoods():
    flat = [q("a/0", [-1.0] * 4), q("a/1", [-1.0] * 4)]
    assert "four log-likelihoods are equal" in agreement.degenerate(flat)
    assert "choices' log-likelihoods" in agreement.degenerate([q(0, [-2.0] * 10)])
    assert agreement.degenerate(flat + BASE[:1]) is None
    assert agreement.degenerate([]) is None


def _sample(doc_id, context, lls, target):
    letters = "ABCDEFGHIJ"
    return {"doc_id": doc_id, "target": target,
            "arguments": {f"gen_args_{i}": {"arg_0": context, "arg_1": f" {letters[i]}"}
                          for i in range(len(lls))},
            "filtered_resps": [[str(ll), "False"] for ll in lls]}


def test_read_samples_mmlu_pro_layout(tmp_path):
    runner = _load("lmeval_runner")
    tasks_dir = tmp_path / "out" / "model"
    tasks_dir.mkdir(parents=True)
    # leaderboard_mmlu_pro logs the answer letter as its target; mmlu logs the index
    lines = [_sample(0, "Q0?\nA. x\nB. y\nC. z\nAnswer:", [-3.0, -1.0, -2.0], "C"),
             _sample(5, "Q5?\nA. x\nAnswer:", [-1.0] * 9 + [-0.5], 9)]
    name = "samples_leaderboard_mmlu_pro_2026-01-01T00-00-00.000000.jsonl"
    (tasks_dir / name).write_text("".join(json.dumps(s) + "\n" for s in lines))
    (tasks_dir / "samples_other_2026-01-01T00-00-00.000000.jsonl").write_text("not read\n")
    pattern = re.compile(r"samples_leaderboard_mmlu_pro_\d{4}-\d\d-\d\dT[\d\-.]+\.jsonl$")
    questions, requests = runner.read_samples(tmp_path / "out", pattern, lambda m, d: int(d))
    assert [x["id"] for x in questions] == [0, 5]
    assert questions[0]["lls"] == [-3.0, -1.0, -2.0] and questions[0]["pred"] == 1
    assert [x["gold"] for x in questions] == [2, 9]
    assert questions[1]["pred"] == 9 and len(requests[1][1]) == 10
    assert questions[0]["prompt_sha256"] == agreement.sha256(lines[0]["arguments"]
                                                             ["gen_args_0"]["arg_0"])
    assert requests[0][1][2] == (lines[0]["arguments"]["gen_args_0"]["arg_0"], " C")


FAKE_YAML = """dataset_path: some/hub-dataset
task: leaderboard_mmlu_pro
test_split: test
fewshot_split: validation
fewshot_config:
  sampler: first_n
output_type: multiple_choice
doc_to_text: !function utils.doc_to_text
doc_to_choice: !function utils.doc_to_choice
doc_to_target: answer
num_fewshot: 5
"""


@pytest.fixture
def fake_lm_eval(tmp_path) -> Path:
    """An lm_eval package folder holding a task in the shape of leaderboard_mmlu_pro's."""
    src = tmp_path / "lm_eval" / "tasks" / "leaderboard" / "mmlu_pro"
    src.mkdir(parents=True)
    (src / "mmlu_pro.yaml").write_text(FAKE_YAML)
    (src / "utils.py").write_text("def doc_to_text(doc):\n    return doc['question']\n")
    (tmp_path / "test.jsonl").write_text('{"question": "made up?"}\n')
    return tmp_path / "lm_eval"


def test_mmlu_pro_task_folder_reads_the_local_file(fake_lm_eval, tmp_path):
    pro = _load("lmeval_task_pro")
    path = pro.write_task_dir(fake_lm_eval, tmp_path / "test.jsonl", tmp_path / "dest", 0)
    text = path.read_text()
    assert "!function" in text and (tmp_path / "dest" / "utils.py").is_file()
    cfg = pro.yaml.load(text, Loader=pro._Loader)
    assert cfg["task"] == "leaderboard_mmlu_pro" and cfg["dataset_path"] == "json"
    assert cfg["dataset_kwargs"] == {"data_files": {"test": str(tmp_path / "test.jsonl")}}
    assert cfg["fewshot_split"] is None and cfg["doc_to_text"] == "utils.doc_to_text"
    assert isinstance(cfg["doc_to_choice"], pro._Function)


def test_mmlu_pro_task_folder_kshot(fake_lm_eval, tmp_path):
    pro = _load("lmeval_task_pro")
    with pytest.raises(SystemExit, match="validation"):
        pro.write_task_dir(fake_lm_eval, tmp_path / "test.jsonl", tmp_path / "dest", 5)
    path = pro.write_task_dir(fake_lm_eval, tmp_path / "test.jsonl", tmp_path / "dest", 5,
                              tmp_path / "val.jsonl")
    cfg = pro.yaml.load(path.read_text(), Loader=pro._Loader)
    assert cfg["fewshot_split"] == "validation"
    assert cfg["dataset_kwargs"]["data_files"]["validation"] == str(tmp_path / "val.jsonl")
