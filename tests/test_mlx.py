"""The mlx: backend on the real SmolLM2, converted to MLX format here, against the hf: backend.

The GGUF goes to a transformers folder (as hf: dequantizes it), then through mlx-lm's own
converter to an fp32 MLX folder and a 4-bit copy: the same weights hf: scores, so the two
backends may differ only by float rounding.
"""

from __future__ import annotations

import importlib.util
from unittest import mock

import pytest

from mmlu_bench import backends, runner
from mmlu_bench.backends import tokens as tk
from mmlu_bench.config import RunConfig
from mmlu_bench.errors import ModelError
from mmlu_bench.records import RECORDS, read
from mmlu_bench.schema import ScoreRequest

from .conftest import _KeepOpen

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mlx") is None or importlib.util.find_spec("mlx_lm") is None,
    reason="mlx not installed: pip install mlx-lm (macOS) or pip install 'mlx[cpu]' mlx-lm "
           "(Linux)")


@pytest.fixture(scope="session")
def mlx_folders(tmp_path_factory, gguf_path) -> dict:
    """{'hf': transformers folder, 'fp32': MLX folder, '4bit': quantized MLX folder}."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mmlu_bench.backends.mlxlm import _system_blas

    _system_blas()  # before mlx_lm imports mlx: the converter runs on the faster BLAS too
    from mlx_lm import convert

    root = tmp_path_factory.mktemp("mlx")
    source = dict(pretrained_model_name_or_path=str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
    # transformers marks a GGUF-loaded model as quantized and refuses to save it, though its
    # weights are plain fp32 tensors by now.
    model.hf_quantizer = None
    vars(model.config).pop("quantization_config", None)
    model.save_pretrained(root / "hf")
    AutoTokenizer.from_pretrained(**source).save_pretrained(root / "hf")
    del model
    convert(str(root / "hf"), str(root / "fp32"), dtype="float32")
    convert(str(root / "hf"), str(root / "4bit"), quantize=True, q_bits=4, q_group_size=64)
    return {name: root / name for name in ("hf", "fp32", "4bit")}


@pytest.fixture(scope="module")
def backend(mlx_folders):
    from mmlu_bench.backends.mlxlm import MLXBackend

    b = MLXBackend(RunConfig.from_spec(f"mlx:{mlx_folders['fp32']}", device="cpu"))
    yield b
    b.close()


def mlx_runs(backend, smollm2_runs, mmlu_dir, root) -> list:
    """The mlx: backend over smollm2_runs' settings (anatomy + virology, 5 questions each,
    0- and 1-shot): (config, records by qid) per run."""
    out = []
    with mock.patch.object(backends, "create", return_value=_KeepOpen(backend)):
        for shots in (0, 1):
            config = RunConfig.from_spec(f"mlx:{backend.identity['model_path']}",
                                         data_dir=str(mmlu_dir),
                                         subjects="anatomy,virology", limit=5,
                                         num_fewshot=shots, output=str(root / f"{shots}shot"),
                                         progress=False)
            runner.run(config)
            out.append((config, {r.qid: r for r in read(config.output_dir() / RECORDS)[1]}))
    return out


def test_same_predictions_as_hf_and_resume(backend, smollm2_runs, mmlu_dir, tmp_path):
    runs = mlx_runs(backend, smollm2_runs, mmlu_dir, tmp_path)
    for (config, mine), hf_dir in zip(runs, smollm2_runs, strict=True):
        theirs = {r.qid: r for r in read(hf_dir / RECORDS)[1]}
        assert mine.keys() == theirs.keys() and len(mine) == 10
        assert [mine[q].pred for q in mine] == [theirs[q].pred for q in mine]
        assert [mine[q].n_tokens for q in mine] == [theirs[q].n_tokens for q in mine], \
            "the same token rows as hf:"
        diff = max(abs(a - b) for q in mine for a, b in
                   zip(mine[q].loglikelihoods, theirs[q].loglikelihoods, strict=True))
        assert diff < 1e-3, f"{config.num_fewshot}-shot: max |LL diff| {diff}"

    config, first = runs[1]
    path = config.output_dir() / RECORDS
    with mock.patch.object(backends, "create", return_value=_KeepOpen(backend)):
        assert runner.run(config).scored == 0, "a finished run folder has nothing left to score"
        lines = path.read_bytes().split(b"\n")
        path.write_bytes(b"\n".join(lines[:4]) + b"\n")  # the header and 3 records
        assert runner.run(config).scored == 7
    again = {r.qid: r for r in read(path)[1]}
    assert again == first, "a resumed run computes each question as the first run did"


def plain_loglikelihoods(backend, request: ScoreRequest) -> tuple[float, ...]:
    """Unbatched, unshared, unpadded: full logits of context+continuation, one choice at a
    time, as lm-eval computes them."""
    import mlx.core as mx
    import numpy as np

    out = []
    for continuation in request.continuations:
        ctx, cont = tk.encode_pair(backend.encode, request.context, continuation)
        logits = backend.model(mx.array([ctx + cont[:-1]]))[0].astype(mx.float32)
        logprobs = np.array(logits - mx.logsumexp(logits, axis=-1, keepdims=True))
        out.append(sum(float(logprobs[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)))
    return tuple(out)


def test_padded_batches_over_the_prefix_cache_equal_single_rows(backend):
    header = "The following are multiple choice questions (with answers) about trivia.\n\n" * 3
    requests = [ScoreRequest(f"trivia/{i}", f"{header}Question: {q}\nA. 1\nB. 2\nC. 3\nD. 4\n"
                             "Answer:", (" A", " B", " C", " D"))
                for i, q in enumerate(["How many moons has Mars?", "1 + 1?",
                                       "How many sides has a triangle, counting all of them?"])]
    requests.append(ScoreRequest("trivia/3", header + "Paris is the capital of",
                                 (" France", " the United Kingdom")))
    rows = [r for q in requests for r in tk.plan_rows(q, backend.encode, backend.max_length)]
    assert tk.common_prefix(rows) >= tk.MIN_SHARED_PREFIX, "the rows share a cached prefix"
    assert len({len(r.tokens) for r in rows}) > 2, "rows of different lengths: padding"
    got = {c.qid: c.loglikelihoods for batch in backend.score(requests) for c in batch}
    for request in requests:
        expected = plain_loglikelihoods(backend, request)
        assert max(abs(a - b) for a, b in zip(got[request.qid], expected, strict=True)) < 1e-4


def test_identity_quantization_and_a_plain_hf_folder(backend, mlx_folders):
    from mmlu_bench.backends.identity import folder_identity
    from mmlu_bench.backends.mlxlm import MLXBackend

    info = backend.info()
    assert info["device"] == "mlx cpu" and info["dtype"] == "float32"
    assert info["quantization"] is None and info["max_length"] == 8192
    assert info["model_sha256"] == folder_identity(mlx_folders["fp32"])["model_sha256"]
    request = ScoreRequest("x/0", "Question: 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:",
                           (" A", " B", " C", " D"))
    fp32 = next(iter(backend.score([request])))[0].loglikelihoods
    for name in ("4bit", "hf"):
        other = MLXBackend(RunConfig.from_spec(f"mlx:{mlx_folders[name]}", device="cpu"))
        lls = next(iter(other.score([request])))[0].loglikelihoods
        if name == "hf":  # mlx-lm loads a transformers folder as it is
            assert other.info()["quantization"] is None
            assert max(abs(a - b) for a, b in zip(lls, fp32, strict=True)) < 1e-4
        else:
            assert other.info()["quantization"] == {"group_size": 64, "bits": 4,
                                                    "mode": "affine"}
            assert other.info()["model_sha256"] != info["model_sha256"]
            # 4 bits move a 135M model's letters by nats; the bench measures its agreement.
            assert lls != fp32 and all(x < 0 for x in lls)
        other.close()


def test_bad_models_are_one_clear_line(gguf_path, tmp_path):
    from mmlu_bench.backends.mlxlm import MLXBackend

    with pytest.raises(ModelError, match="gguf: or hf:"):
        MLXBackend(RunConfig.from_spec(f"mlx:{gguf_path}", device="cpu"))
    with pytest.raises(ModelError, match="no config.json"):
        MLXBackend(RunConfig.from_spec(f"mlx:{tmp_path}", device="cpu"))
    (tmp_path / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(ModelError, match="mlx-lm could not load"):
        MLXBackend(RunConfig.from_spec(f"mlx:{tmp_path}", device="cpu"))
