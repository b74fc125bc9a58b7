"""Hub failures explained: a local HTTP server on 127.0.0.1 plays the Hugging Face hub.

The real huggingface_hub download code runs against it; the server answers every request the
way the hub answers for a gated or missing repository (the X-Error-Code header decides).
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mmlu_bench import cli


def make_handler(error_code: str, status: int):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            body = b'{"error": "refused by the test hub"}'
            self.send_response(status)
            self.send_header("X-Error-Code", error_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    servers = []

    def start(error_code: str, status: int) -> str:
        server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(error_code, status))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setattr(constants, "ENDPOINT", url)
        return url

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    yield start
    for server in servers:
        server.shutdown()


def run_model(model: str, mmlu_dir, tmp_path, capsys) -> str:
    code = cli.main(["run", "--model", model, "--data-dir", str(mmlu_dir), "--subjects", "anatomy",
                     "--limit", "1", "--output", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1, err
    return err


def test_gated_model_says_request_access_and_log_in(fake_hub, mmlu_dir, tmp_path, capsys):
    fake_hub("GatedRepo", 403)
    err = run_model("meta-llama/Llama-3.1-8B", mmlu_dir, tmp_path, capsys)
    assert "is gated" in err and "hf auth login" in err


def test_missing_or_private_model_says_check_name_or_log_in(fake_hub, mmlu_dir, tmp_path, capsys):
    fake_hub("RepoNotFound", 401)
    err = run_model("nobody/no-such-model", mmlu_dir, tmp_path, capsys)
    assert "no such model" in err and "hf auth login" in err


def test_no_network_says_how_to_run_offline(fake_hub, mmlu_dir, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as constants

    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    err = run_model("HuggingFaceTB/SmolLM2-135M-Instruct", mmlu_dir, tmp_path, capsys)
    assert "cannot reach the Hugging Face hub" in err and "local model folder or .gguf" in err
