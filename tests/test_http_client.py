"""The server backends' HTTP client against a real HTTP/1.1 server on 127.0.0.1: one keep-alive
pool per Client, closed by close(); Retry-After; the API key only in its header."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler

import pytest

from mmlu_bench.backends import http
from mmlu_bench.errors import BackendError

from .servers import _Quiet

SECRET = "sk-http-test-SECRET-51c2"


class KeepAliveServer:
    """HTTP/1.1 with keep-alive. Counts connections opened and closed, and the times each
    request body arrived. /busy answers 429 (Retry-After) to a body's first try; /bad is a 400
    that echoes the Authorization header, as careless servers do."""

    def __init__(self) -> None:
        self.opened = self.closed = 0
        self.seen: dict[str, list[float]] = {}
        self.auth: set[str] = set()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with server.lock:
                    server.opened += 1

            def finish(self) -> None:
                super().finish()
                with server.lock:
                    server.closed += 1

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                with server.lock:
                    server.auth.add(self.headers.get("Authorization"))
                    server.seen.setdefault(body, []).append(time.monotonic())
                    tries = len(server.seen[body])
                if self.path == "/v1/bad":
                    return self.answer(400, {"error": {"message": "bad key " +
                                                       self.headers["Authorization"]}})
                if self.path == "/v1/busy" and tries == 1:
                    return self.answer(429, {"error": "slow down"}, {"Retry-After": "0.5"})
                self.answer(200, {"echo": json.loads(body)})

            def answer(self, status: int, payload: dict, headers: dict | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json",
                             "Content-Length": str(len(raw)), **(headers or {})}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_closed(self, seconds: float = 5.0) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                if self.closed == self.opened:
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = KeepAliveServer()
    yield s
    s.stop()


@pytest.mark.parametrize("connections", [4, None])
def test_one_keepalive_pool_reused_by_all_threads_and_closed(server, connections):
    client = http.Client(server.url, SECRET, 5, connections=connections)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: client.post("/echo", {"i": i}), range(40)))
    assert [a["echo"]["i"] for a in answers] == list(range(40))
    # urllib opened one connection per request: 40 here.
    assert 1 <= server.opened <= 4 and server.closed == 0
    assert server.auth == {f"Bearer {SECRET}"}
    client.close()
    assert server.wait_closed(), (server.opened, server.closed)


def test_retry_after_is_waited_and_the_key_is_never_echoed(server, monkeypatch, caplog):
    monkeypatch.setattr(http, "RETRY", http.Retry(attempts=3, backoff=0.05))
    client = http.Client(server.url, SECRET, 5)
    assert client.post("/busy", {"q": 1}) == {"echo": {"q": 1}}
    first, second = server.seen['{"q": 1}']
    assert second - first >= 0.45
    assert "HTTP 429: slow down; retrying in 0.5 s" in caplog.text
    with pytest.raises(http.HTTPStatusError) as refused:
        client.post("/bad", {"q": 2})
    assert refused.value.status == 400 and "bad key Bearer ***" in str(refused.value)
    assert SECRET not in str(refused.value) + caplog.text
    client.close()


def test_a_dead_server_gives_up_in_one_line(server):
    url = server.url
    server.stop()
    client = http.Client(url, SECRET, 5)
    with pytest.raises(BackendError, match=r"connection refused; is the server running\? "
                                           r"\(gave up after 2 tries\)$"):
        client.get("/models", retry=http.Retry(attempts=2, backoff=0.05))
