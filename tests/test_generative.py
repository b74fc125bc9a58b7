"""Generative formats: prompts as lm-eval renders them, extraction wired into records, the
failure rates in every report, resume, and the fake backend's generations."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmlu_bench import formats, prompts
from mmlu_bench.cli import main
from mmlu_bench.errors import UserError
from mmlu_bench.records import RECORDS
from mmlu_bench.schema import Generation, Question, TaskData
from mmlu_bench.tasks.mmlu import MMLU

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = json.loads((ROOT / "tests/fixtures/lmeval_prompts.json").read_text())


def case(name: str) -> dict:
    return next(c for c in FIXTURES["cases"] if c["case"] == name)


def questions(rows: list[dict]) -> tuple[Question, ...]:
    return tuple(Question(r["subject"], i, r["question"], tuple(r["choices"]), r["answer"])
                 for i, r in enumerate(rows))


@pytest.mark.parametrize("name,fmt", [
    ("mmlu_anatomy_generative-0shot-plain", "generative"),
    ("mmlu_anatomy_generative-2shot-plain", "generative"),
    ("mmlu_flan_cot_zeroshot_anatomy-0shot-plain", "cot"),
])
def test_prompts_and_stop_strings_match_lm_eval_byte_for_byte(name, fmt):
    c = case(name)
    test, dev = questions(c["test_docs"]), questions(c["fewshot_docs"])
    data = TaskData({"anatomy": test}, {"anatomy": dev}, "fixture")
    made = formats.get(fmt).requests(MMLU(), test, data, c["num_fewshot"])
    assert len(made) == len(c["requests"])
    for want in c["requests"]:
        got = made[want["doc_index"]]
        assert got.context == want["context"]
        assert prompts.sha256(got.context) == want["sha256"]
        assert list(got.until) == want["gen_kwargs"]["until"]
        assert got.max_tokens == 256 and got.messages is None  # lm-eval's default max_gen_toks


def made_up() -> Question:
    return Question("astronomy", 0, "Which planet is known as the Red Planet?",
                    ("Venus", "Mars", "Jupiter", "Saturn"), 1)


def test_simple_evals_prompt_is_one_user_message():
    q = made_up()
    (r,) = formats.get("simple-evals").requests(MMLU(), [q], TaskData({}, {}, ""), 0)
    want = ("Answer the following multiple choice question. The last line of your response "
            "should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER "
            "is one of ABCD. Think step by step before answering.\n\nWhich planet is known as "
            "the Red Planet?\n\nA) Venus\nB) Mars\nC) Jupiter\nD) Saturn")
    assert r.context == want and r.messages == ({"role": "user", "content": want},)
    assert r.until == () and r.max_tokens == 1024


@pytest.mark.parametrize("fmt", ["cot", "simple-evals"])
def test_zero_shot_formats_refuse_few_shot(fmt):
    with pytest.raises(UserError, match="leave out --num-fewshot"):
        formats.get(fmt).requests(MMLU(), [made_up()], TaskData({}, {}, ""), 5)


@pytest.mark.parametrize("fmt,text,answer,failure,others", [
    ("generative", " B", "B", None, {}),
    ("generative", "B. Mars", None, "not a lone letter: 'B. Mars'", {}),
    ("generative", "", None, "empty response", {}),
    ("cot", "Mars is red. So the answer is (B).", "B", None, {"flexible-extract": "B"}),
    ("cot", "I think it is Mars", None, "no match", {"flexible-extract": "B"}),
    ("simple-evals", "Reasoning...\nAnswer: B", "B", None, {}),
    ("simple-evals", "The answer is B", None, "no match", {}),
])
def test_extraction_decides_the_record(fmt, text, answer, failure, others):
    q = made_up()
    rec = formats.get(fmt).record(MMLU(), q, Generation(q.qid, text, 9, "stop"), "sha")
    assert (rec.answer, rec.failure, rec.filters) == (answer, failure, others)
    assert rec.correct == (answer == "B") and rec.pred == (1 if answer else -1)
    assert rec.response == text and rec.loglikelihoods == () and rec.n_options == 4


def test_cut_off_text_says_so():
    q = made_up()
    rec = formats.get("generative").record(MMLU(), q, Generation(q.qid, "", 256, "length"), "")
    assert rec.failure == "empty response (cut off at max_tokens)" and not rec.correct


def argv(out: Path, data: Path, *extra: str) -> list[str]:
    return ["run", "--model", "fake:x", "--data-dir", str(data), "--subjects",
            "anatomy,virology", "--limit", "20", "--output", str(out), "--no-progress", *extra]


def lines(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / RECORDS).read_text().splitlines()[1:-1]]


def test_cli_run_records_and_reports(tmp_path, mmlu_dir, capsys):
    out = tmp_path / "cot"
    assert main(argv(out, mmlu_dir, "--format", "cot")) == 0
    printed = capsys.readouterr().out
    recs = lines(out)
    assert len(recs) == 40 and all("response" in r and "finish" in r for r in recs)
    failed = [r for r in recs if "answer" not in r]
    assert failed and all(r["failure"] == "no match" for r in failed)
    assert all("failure" not in r for r in recs if "answer" in r)
    results = json.loads((out / "results.json").read_text())
    rates = results["extraction_failures"]
    assert rates["overall"] == {"failed": len(failed), "n": 40, "rate": len(failed) / 40}
    assert set(rates["units"]) == {"anatomy", "virology"}
    answered = results["slices"]["answered only"]
    right = sum(r["correct"] for r in recs)
    assert answered["n"] == 40 - len(failed) and answered["acc"] == right / answered["n"]
    top = results["results"]["mmlu_flan_cot_zeroshot"]  # lm-eval's name (test_gen_names)
    assert top["exact_match,strict-match"] == right / 40  # failures count wrong
    assert "filter flexible-extract" in results["slices"]
    assert f"Answer extraction failed on {len(failed)} of 40" in printed
    assert "answered only:" in printed
    assert 'id="failures"' in (out / "report.html").read_text()


def test_loglikelihood_records_keep_their_fields(tmp_path, mmlu_dir):
    out = tmp_path / "plain"
    assert main(argv(out, mmlu_dir)) == 0
    assert set(lines(out)[0]) == {"qid", "subject", "index", "gold", "loglikelihoods", "pred",
                                  "correct", "prompt_sha256", "n_tokens"}
    assert "extraction_failures" not in json.loads((out / "results.json").read_text())


def test_resume_refuses_other_decoding_settings(tmp_path, mmlu_dir, capsys):
    out = tmp_path / "run"
    assert main(argv(out, mmlu_dir, "--format", "generative")) == 0
    header = json.loads((out / RECORDS).read_text().splitlines()[0])["header"]
    assert header["prompt_format"] == ("lm-eval-0.4.13-mmlu-default/generative:greedy,"
                                       "max_tokens=256,until=['</s>', '\\n'],seed=1234")
    assert main(argv(out, mmlu_dir, "--format", "cot")) != 0
    assert "holds a different run (prompt_format" in capsys.readouterr().err


def test_a_backend_without_generation_is_refused_before_loading(tmp_path, mmlu_dir, capsys,
                                                                 monkeypatch):
    import dataclasses

    from mmlu_bench import backends

    only = dataclasses.replace(backends.spec("fake"), capabilities=frozenset({"loglikelihood"}))
    monkeypatch.setitem(backends.BACKENDS, "fake", only)
    monkeypatch.setattr(backends, "create", lambda config: pytest.fail("a backend was built"))
    assert main(argv(tmp_path / "r", mmlu_dir, "--format", "generative")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--format generative needs a backend that can generate; the fake: "
                            "backend cannot: use another backend or format.")


SLOW = """
import sys, time
from mmlu_bench.backends import fake
gen = fake.FakeBackend.generate
def slow(self, requests):
    for batch in gen(self, requests):
        time.sleep(0.2)
        yield batch
fake.FakeBackend.generate = slow
fake.BATCH = 4
from mmlu_bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def without_timing(out: Path) -> list[str]:
    text = (out / RECORDS).read_text().splitlines()
    header, footer = json.loads(text[0]), json.loads(text[-1])
    header["header"].pop("started")
    footer["footer"] = {k: footer["footer"][k] for k in ("questions", "tokens")}
    return [json.dumps(header)] + text[1:-1] + [json.dumps(footer)]


def test_sigkill_then_resume_gives_the_same_records(tmp_path, mmlu_dir):
    out = tmp_path / "run"
    run = argv(out, mmlu_dir, "--format", "simple-evals")
    assert main(run) == 0
    ref = out.rename(tmp_path / "ref")  # the same --output, as the resumed run's header has
    proc = subprocess.Popen([sys.executable, "-c", SLOW, *run], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    path = out / RECORDS
    while not path.exists() or path.read_bytes().count(b"\n") < 1 + 8:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert 8 <= path.read_bytes().count(b"\n") - 1 < 40
    assert main(run) == 0
    assert without_timing(ref) == without_timing(out)
    assert (ref / "results.json").read_bytes() == (out / "results.json").read_bytes()


def made_up_requests() -> list:
    """Four made-up questions behind a shared 2-shot prefix (over 32 tokens, so the prefix
    cache is used); two stop at a newline, two run to max_tokens under CoT-like stops."""
    from mmlu_bench.schema import GenerateRequest

    shots = (Question("astronomy", 0, "How many moons does Earth have?", ("0", "1", "2", "3"), 1),
             Question("astronomy", 1, "What is the closest star to Earth?",
                      ("Proxima Centauri", "Sirius", "The Sun", "Vega"), 2))
    asked = [made_up(),
             Question("astronomy", 1, "Which planet has the most prominent rings?",
                      ("Saturn", "Mercury", "Mars", "Venus"), 0),
             Question("astronomy", 2, "What galaxy contains our Solar System?",
                      ("Andromeda", "Triangulum", "Whirlpool", "The Milky Way"), 3),
             Question("astronomy", 3, "What force keeps planets in orbit around the Sun?",
                      ("Magnetism", "Gravity", "Friction", "Buoyancy"), 1)]
    out = []
    for i, q in enumerate(asked):
        context = prompts.context(MMLU(), q, shots)
        until, n = (("</s>", "\n"), 8) if i % 2 else (("Q:",), 6)
        out.append(GenerateRequest(q.qid, context + (" Let's think." if i % 2 == 0 else ""),
                                   until, n))
    return out


@pytest.mark.slow
def test_hf_batched_generation_equals_unbatched_greedy(gguf_path):
    """Batched generation (prefix cache, left padding, rows leaving the batch) gives the text
    transformers' own unbatched greedy `generate` gives, cut at the stop strings."""
    import torch

    from mmlu_bench import backends
    from mmlu_bench.backends.textgen import cut_at_stop
    from mmlu_bench.config import RunConfig

    b = backends.create(RunConfig.from_spec(f"hf:{gguf_path}", batch_size="4"))
    reqs = made_up_requests()
    got = {g.qid: g for batch in b.generate_groups([(reqs, frozenset())]) for g in batch}
    assert set(got) == {r.qid for r in reqs}
    tok = b.tokenizer
    for r in reqs:
        ids = torch.tensor([b.encode(r.context)])
        with torch.inference_mode():
            whole = b.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=r.max_tokens, do_sample=False)
        new = whole[0, ids.shape[1]:].tolist()
        text = tok.decode(new, skip_special_tokens=True)
        want, stopped = cut_at_stop(text, r.until + (tok.decode([tok.eos_token_id]),))
        assert got[r.qid].text == want, r.qid
        assert got[r.qid].finish == ("stop" if stopped or tok.eos_token_id in new else "length")
    b.close()


def test_default_run_folder_names_the_format():
    from mmlu_bench.config import RunConfig

    assert str(RunConfig.from_spec("fake:x").output_dir()) == "runs/fake_x_0shot"
    assert str(RunConfig.from_spec("fake:x", format="cot").output_dir()) == "runs/fake_x_0shot_cot"


def stub_backend(batch_size: int):
    """What hf_generate.plan reads from an hf: backend, with characters as tokens."""
    from types import SimpleNamespace

    tokenizer = SimpleNamespace(eos_token_id=None, chat_template=None)
    return SimpleNamespace(tokenizer=tokenizer, encode=lambda text: [ord(c) for c in text],
                           max_length=4096, batch_size=batch_size, prefix_sharing=True)


def test_generation_batches_span_units_in_lm_evals_order_and_survive_resume():
    """Small units share batches (lm-eval's Collator order over the whole run: longest prompt
    first), and a resume, even with a unit fully recorded, runs each remaining question in the
    batch it had."""
    from mmlu_bench.backends import hf_generate
    from mmlu_bench.schema import GenerateRequest

    units = [[GenerateRequest(f"{u}/{i}", f"{u}: " + "x" * (3 * i + len(u)), ("\n",), 4)
              for i in range(3)] for u in ("anatomy", "virology", "astronomy")]
    backend = stub_backend(4)
    full = [[r.request.qid for r in batch]
            for batch, _ in hf_generate.plan(backend, [(u, frozenset()) for u in units])]
    assert [len(b) for b in full] == [4, 4, 1]
    lengths = [len(r.context) for b in full for r in _by_qid(units, b)]
    assert lengths == sorted(lengths, reverse=True)
    assert len({q.split("/")[0] for q in full[0]}) > 1  # units share a batch
    done = frozenset(r.qid for r in units[1]) | {full[0][0]}
    resumed = hf_generate.plan(backend, [(u, done & {r.qid for r in u}) for u in units])
    again = [[r.request.qid for r in batch] for batch, _ in resumed]
    assert again == [b for b in full if not set(b) <= done]
    assert all(skip == done for _, skip in resumed)


def _by_qid(units, qids):
    found = {r.qid: r for u in units for r in u}
    return [found[q] for q in qids]


def test_auto_generation_batches_are_not_the_scoring_budget():
    """--batch-size auto: 8 rows where the 1,024-token CPU scoring budget over prompt +
    max_tokens would give one (while 8 rows' KV cache fits 8x the budget), fewer for very
    long rows, the scoring rule where it gives more (a GPU's budget)."""
    from mmlu_bench.backends import hf_generate
    from mmlu_bench.schema import GenerateRequest

    backend = stub_backend(None)
    backend.token_budget = 1024
    reqs = [GenerateRequest(f"anatomy/{i}", "x" * (100 + 10 * i), ("\n",), 256)
            for i in range(40)]
    sizes = [len(b) for b, _ in hf_generate.plan(backend, [(reqs, frozenset())])]
    assert sizes == [8] * 5
    long = [GenerateRequest(f"law/{i}", "x" * 2000, ("\n",), 256) for i in range(5)]
    assert [len(b) for b, _ in hf_generate.plan(backend, [(long, frozenset())])] == [3, 2]
    backend.token_budget = 32768
    assert [len(b) for b, _ in hf_generate.plan(backend, [(reqs, frozenset())])] == [40]
