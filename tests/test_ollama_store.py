"""ollama: without a server that gives logprobs: the model file from Ollama's store.

Unit tests of name and store resolution on stores written here in Ollama's layout; then the
real SmolLM2 GGUF in such a store, scored through the CLI beside an Ollama-API server that
reports an old version, and compared with gguf: on the same file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mmlu_bench.backends import ollama_store as st
from mmlu_bench.errors import ConfigError

MODEL = st.MODEL_LAYER
TEMPLATE = st.LAYER + "template"
PARAMS = st.LAYER + "params"


def add_blob(root: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "blobs" / digest.replace(":", "-")).write_bytes(data)
    return digest


def add_manifest(root: Path, layers: list[tuple[str, str]],
                 where: str = "registry.ollama.ai/library/smollm2/latest") -> Path:
    path = root / "manifests" / where
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": [{"mediaType": kind, "digest": digest, "size": 1} for kind, digest in layers]}
    path.write_text(json.dumps(body))
    return path


@pytest.fixture
def store(tmp_path) -> Path:
    """A store with smollm2:latest: a (fake, few-byte) GGUF, a template and params."""
    root = tmp_path / "models"
    add_manifest(root, [(MODEL, add_blob(root, b"GGUF fake weights")),
                        (TEMPLATE, add_blob(root, b"{{ .Prompt }}")),
                        (PARAMS, add_blob(root, b'{"stop": ["<|im_end|>"]}'))])
    return root


@pytest.mark.parametrize("name, parsed", [
    ("smollm2", ("registry.ollama.ai", "library", "smollm2", "latest")),
    ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m")),
    ("someone/smollm2:q4", ("registry.ollama.ai", "someone", "smollm2", "q4")),
    ("hf.co/org/model-GGUF:Q4_1", ("hf.co", "org", "model-GGUF", "Q4_1")),
    ("localhost:5000/team/m", ("localhost:5000", "team", "m", "latest")),
])
def test_names_get_ollamas_defaults(name, parsed):
    assert st.parse_name(name) == parsed


@pytest.mark.parametrize("name", ["a/b/c/d", "smollm2:", "/smollm2", "smollm2@sha256:ab"])
def test_a_malformed_name_is_refused(name):
    with pytest.raises(ConfigError, match="not an Ollama model name"):
        st.parse_name(name)


def test_resolves_the_gguf_layer_and_notes_the_others(store, monkeypatch):
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    found = st.resolve("smollm2")
    assert found.blob.read_bytes() == b"GGUF fake weights"
    assert found.digest == "sha256:" + hashlib.sha256(b"GGUF fake weights").hexdigest()
    assert found.name == "registry.ollama.ai/library/smollm2:latest"
    assert set(found.layers) == {"template", "params"}
    assert st.params(found) == {"stop": ["<|im_end|>"]}
    st.verify(found)  # the bytes hash to the digest
    assert st.resolve("SmolLM2:latest").blob == found.blob  # Ollama stores names lower-cased


def test_default_store_is_in_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("OLLAMA_MODELS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert st.store_root() == tmp_path / ".ollama" / "models"


def one_line_error(store: Path, name: str = "smollm2") -> str:
    with pytest.raises(st.StoreError) as e:
        st.verify(st.resolve(name, store))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_errors_name_what_to_do(store, tmp_path):
    assert "set OLLAMA_MODELS" in one_line_error(tmp_path / "nowhere")
    assert "run `ollama pull qwen3:0.6b`" in one_line_error(store, "qwen3:0.6b")
    add_manifest(store, [(TEMPLATE, add_blob(store, b"x"))],
                 "registry.ollama.ai/library/tpl/latest")
    assert "lists no GGUF layer" in one_line_error(store, "tpl")
    gguf = add_blob(store, b"GGUF other")
    add_manifest(store, [(MODEL, gguf), (st.LAYER + "adapter", add_blob(store, b"lora"))],
                 "registry.ollama.ai/library/tuned/latest")
    assert "single GGUF only" in one_line_error(store, "tuned")
    (store / "manifests/registry.ollama.ai/library/bad/latest").parent.mkdir(parents=True)
    (store / "manifests/registry.ollama.ai/library/bad/latest").write_text("{not json")
    assert "not an Ollama manifest" in one_line_error(store, "bad")


def test_a_missing_or_changed_blob_is_refused(store):
    found = st.resolve("smollm2", store)
    found.blob.write_bytes(b"GGUF changed weights")
    assert "the file is damaged or was replaced" in one_line_error(store)
    found.blob.unlink()
    assert "missing from the Ollama store; run `ollama pull smollm2` again" in one_line_error(store)


# --- the real SmolLM2 GGUF in a store, through the CLI -------------------------------------

SUBJECTS, LIMIT = "abstract_algebra,world_religions", "3"


@pytest.fixture(scope="module")
def real_store(gguf_path, tmp_path_factory) -> tuple[Path, str]:
    """(store, digest): smollm2:latest is the real GGUF, linked into blobs/ under its sha256
    (the check reads it through the link), with a template and params beside it."""
    from mmlu_bench.backends.identity import sha256

    root = tmp_path_factory.mktemp("ollama") / "models"
    digest = "sha256:" + sha256(gguf_path)
    (root / "blobs").mkdir(parents=True)
    (root / "blobs" / digest.replace(":", "-")).symlink_to(gguf_path)
    add_manifest(root, [(MODEL, digest), (TEMPLATE, add_blob(root, b"{{ .Prompt }}")),
                        (PARAMS, add_blob(root, b'{"stop": ["<|im_end|>"]}'))])
    return root, digest


def run(model: str, out: Path, env: dict, *extra: str) -> tuple[dict, dict, str]:
    """(records by qid, backend_info, stderr) of a CLI run on SUBJECTS, one llama.cpp thread."""
    from mmlu_bench.records import read

    from .test_servers import run_cli

    code, _, stderr = run_cli(model, out, "--threads", "1", *extra, subjects=SUBJECTS,
                              limit=LIMIT, env=env)
    assert code == 0, stderr
    header, records, _ = read(out / "records.jsonl")
    assert len(records) == 6
    return {r.qid: r for r in records}, header.backend_info, stderr


@pytest.fixture(scope="module")
def gguf_run(gguf_path, tmp_path_factory):
    return run(f"gguf:{gguf_path}", tmp_path_factory.mktemp("gguf"), {})


@pytest.mark.slow
def test_an_old_ollama_scores_the_stored_file_as_gguf_does(real_store, gguf_run, tmp_path,
                                                           caplog):
    from .servers import OllamaServer

    root, digest = real_store

    def no_generation():
        raise AssertionError("an Ollama older than 0.12.11 must not be asked to generate")

    with OllamaServer(no_generation, version="0.12.10") as old:
        env = {"OLLAMA_HOST": old.url, "OLLAMA_MODELS": str(root)}
        records, info, _ = run("ollama:smollm2", tmp_path, env)
    expected, gguf_info, _ = gguf_run
    assert info["ollama_path"] == "store" and info["model_digest"] == digest
    assert info["model_sha256"] == gguf_info["model_sha256"] == digest.removeprefix("sha256:")
    assert info["tokenizer"] == gguf_info["tokenizer"] == "transformers"
    assert info["ollama_params"] == {"stop": ["<|im_end|>"]}
    assert set(info["ollama_unused_layers"]) == {"template"}
    assert "Ollama 0.12.10" in info["ollama_why"]
    # The CLI prints this warning on stderr (pytest's log capture takes it here).
    assert "from Ollama's store (Ollama 0.12.10" in caplog.text and digest in caplog.text
    for qid, record in expected.items():
        assert (records[qid].loglikelihoods, records[qid].pred) == (record.loglikelihoods,
                                                                   record.pred), qid


@pytest.mark.slow
def test_ollama_direct_skips_a_working_server(real_store, gguf_run, tmp_path, caplog):
    from .servers import OllamaServer

    root, _ = real_store
    with OllamaServer(lambda: pytest.fail("--ollama-direct asked the server")) as server:
        env = {"OLLAMA_HOST": server.url, "OLLAMA_MODELS": str(root)}
        records, info, _ = run("ollama:smollm2", tmp_path, env, "--ollama-direct")
    assert info["ollama_path"] == "store" and info["ollama_why"] == "--ollama-direct"
    assert "from Ollama's store (--ollama-direct)" in caplog.text
    assert {q: r.loglikelihoods for q, r in records.items()} == {
        q: r.loglikelihoods for q, r in gguf_run[0].items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["no server", "no logprobs"])
def test_without_server_logprobs_the_store_is_scored(case, real_store, gguf_path, monkeypatch):
    from mmlu_bench import backends
    from mmlu_bench.config import RunConfig

    from .servers import OllamaServer, Scorer, free_port

    monkeypatch.setenv("OLLAMA_MODELS", str(real_store[0]))
    config = RunConfig.from_spec("ollama:smollm2", threads=1)
    if case == "no server":
        monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{free_port()}")
        backend = backends.create(config)
    else:
        with OllamaServer(lambda: Scorer(gguf_path), logprobs=False) as server:
            monkeypatch.setenv("OLLAMA_HOST", server.url)
            backend = backends.create(config)
    try:
        info = backend.info()
        says = {"no server": "connection refused", "no logprobs": "returned no logprobs"}[case]
        assert info["ollama_path"] == "store" and says in info["ollama_why"]
        assert backend.exact
    finally:
        backend.close()


@pytest.mark.slow
def test_a_server_with_logprobs_is_used(real_store, gguf_path, monkeypatch):
    from mmlu_bench import backends
    from mmlu_bench.config import RunConfig

    from .servers import OllamaServer, Scorer

    monkeypatch.setenv("OLLAMA_MODELS", str(real_store[0]))
    with OllamaServer(lambda: Scorer(gguf_path)) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)
        backend = backends.create(RunConfig.from_spec("ollama:smollm2"))
        assert backend.info()["ollama_path"] == "server" and not backend.exact
        backend.close()
