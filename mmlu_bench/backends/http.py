"""What the server backends share: JSON over an httpx keep-alive pool, tenacity retries,
parallel scoring.

A failure that may pass (connection refused or reset, timeout, 429, 5xx, a cut or invalid
answer) is retried with exponential backoff; after the last try it becomes one BackendError line.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import tenacity

from ..errors import BackendError, ConfigError
from ..schema import ChoiceScores, ScoreRequest
from .base import UnitScorer

if TYPE_CHECKING:
    from .server_api import ServerAPI

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Retry:
    attempts: int = 6  # tries in all, the first included
    backoff: float = 1.0  # seconds before the second try; doubles after each failure
    cap: float = 30.0  # the longest wait, a server's Retry-After included
    log_level: int = logging.WARNING  # of the "retrying" lines


# Read at call time, so tests can swap in short waits.
RETRY = Retry()
# At start-up a dead server should fail fast, in one line.
STARTUP_RETRY = Retry(attempts=2, log_level=logging.INFO)


class Transient(Exception):
    """A failure worth retrying. The message is the user's line if the retries run out."""

    def __init__(self, message: str, wait: float | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.wait = wait  # a server's Retry-After, when it gave one
        self.refused = refused  # nothing listens at the address


class Unreachable(BackendError):
    """The connection was refused at every try: no server is running there."""


class HTTPStatusError(BackendError):
    """An HTTP status that retrying will not change (400, 401, 404, ...)."""

    def __init__(self, url: str, status: int, detail: str) -> None:
        super().__init__(f"{url}: HTTP {status}: {detail}")
        self.url, self.status, self.detail = url, status, detail


class Client:
    """JSON requests to one server over one keep-alive connection pool, safe to share between
    threads. The API key goes into a header and nowhere else. `connections` caps the pool;
    None lets it grow to as many connections as threads use it at once, all kept alive (the
    default pool of httpx keeps only 20 alive, which would reconnect above --concurrency 20)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 connections: int | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            if not api_key.isascii() or not api_key.isprintable():
                raise ConfigError("the API key holds characters an HTTP header cannot carry; "
                                  "check --api-key or OPENAI_API_KEY")
            headers["Authorization"] = f"Bearer {api_key}"
        self._secret = api_key
        # follow_redirects: as urllib did before. httpx drops the Authorization header when a
        # redirect leaves the origin, so the key never reaches another host.
        self._http = httpx.Client(
            headers=headers, timeout=httpx.Timeout(timeout), follow_redirects=True,
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections))

    def __repr__(self) -> str:
        return f"Client({self.base!r})"

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, retry: Retry | None = None):
        return self.call("GET", path, None, retry=retry)

    def post(self, path: str, body: dict, retry: Retry | None = None,
             check: Callable | None = None, stop: threading.Event | None = None):
        return self.call("POST", path, body, retry=retry, check=check, stop=stop)

    def call(self, method: str, path: str, body: dict | None, retry: Retry | None = None,
             check: Callable | None = None, stop: threading.Event | None = None):
        """The decoded answer, passed through `check` (which raises Transient to retry)."""
        url = self.base + path

        def attempt():
            try:
                answer = self._once(method, url, body)
                return check(answer) if check else answer
            except HTTPStatusError as e:
                raise HTTPStatusError(e.url, e.status, self._clean(e.detail)) from None
            except Transient as e:  # cleaned here, so the log lines and the last error are too
                raise Transient(self._clean(str(e)), e.wait, e.refused) from None

        return _policy(retry or RETRY, stop or threading.Event())(attempt)

    def _once(self, method: str, url: str, body: dict | None):
        try:
            response = self._http.request(
                method, url, content=None if body is None else json.dumps(body).encode())
        except httpx.RequestError as e:
            raise self._network_error(url, e) from None
        if not response.is_success:
            raise _status_error(url, response)
        try:
            return json.loads(response.content)
        except ValueError as e:
            raise Transient(f"{url}: the server's answer is not valid JSON ({e})") from None

    def _network_error(self, url: str, e: httpx.RequestError) -> Exception:
        root = _root_cause(e)  # httpx wraps httpcore's error, which wraps the socket's
        if isinstance(e, httpx.TimeoutException):
            return Transient(f"{url}: no answer within {self.timeout:g} s; raise --timeout or "
                             "lower --concurrency")
        if isinstance(root, ConnectionRefusedError):
            return Transient(f"cannot connect to {self.base}: connection refused; "
                             "is the server running?", refused=True)
        if isinstance(root, socket.gaierror):
            return BackendError(f"cannot connect to {self.base}: unknown host")
        if isinstance(e, httpx.ConnectError):
            return Transient(f"cannot connect to {self.base}: {root}")
        if isinstance(e, (httpx.NetworkError, httpx.RemoteProtocolError)):
            # A reset, or a connection closed mid-answer; on a kept-alive connection also a
            # server that closed it idle just as it was reused: another try is the cure.
            return Transient(f"{url}: the connection dropped before a full answer "
                             f"({type(root).__name__})")
        if isinstance(e, (httpx.UnsupportedProtocol, httpx.LocalProtocolError,
                          httpx.TooManyRedirects)):
            return BackendError(f"{url}: {e}")
        return Transient(f"{url}: {type(e).__name__}: {e}")

    def _clean(self, message: str) -> str:
        """One line, and never the API key (a server may echo what it was sent)."""
        if self._secret:
            message = message.replace(self._secret, "***")
        return " ".join(message.split())


def _root_cause(e: BaseException) -> BaseException:
    """The socket's own error (httpcore raises its error while handling it, without `from`)."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    return e


# tenacity, not httpx's transport retries: those retry only a failed connect, at once. A
# loaded server also resets, times out, answers 429/5xx (often with Retry-After) or cuts its
# answer short; each wants the same bounded backoff, one log line per retry, one final error.
def _policy(retry: Retry, stop: threading.Event) -> tenacity.Retrying:
    backoff = tenacity.wait_exponential(multiplier=retry.backoff, max=retry.cap)

    def delay(state: tenacity.RetryCallState) -> float:  # Retry-After when the server gave one
        wait = state.outcome.exception().wait
        return backoff(state) if wait is None else min(retry.cap, wait)

    def pause(seconds: float) -> None:  # another request failed: the run is ending
        if stop.wait(seconds):
            raise BackendError("stopped while waiting to retry: the run is ending")

    def announce(state: tenacity.RetryCallState) -> None:
        log.log(retry.log_level, "%s; retrying in %.1f s", state.outcome.exception(),
                state.next_action.sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Transient),
        stop=tenacity.stop_after_attempt(retry.attempts) | tenacity.stop_when_event_set(stop),
        wait=delay, sleep=pause, before_sleep=announce, retry_error_callback=_give_up)


def _give_up(state: tenacity.RetryCallState):
    last = state.outcome.exception()
    error = Unreachable if getattr(last, "refused", False) else BackendError
    raise error(f"{last} (gave up after {state.attempt_number} tries)") from None


def _status_error(url: str, response: httpx.Response) -> Exception:
    detail = _error_detail(response)
    if response.status_code == 429 or response.status_code >= 500:
        return Transient(f"{url}: HTTP {response.status_code}: {detail}",
                         wait=_retry_after(response))
    return HTTPStatusError(url, response.status_code, detail)


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message, from the usual JSON shapes, else the status text."""
    try:
        body = json.loads(response.content or b"null")
    except ValueError:
        body = None
    error = body.get("error", body.get("detail")) if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    text = str(error) if error else response.reason_phrase
    return " ".join(text.split())[:300]


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds. The HTTP-date form is rare for APIs: it falls back to backoff."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


class ServerBackend(UnitScorer):
    """What openai: and ollama: share: one POST per question, `concurrency` at a time, each
    letter's log-likelihood read from the top alternatives of the one generated token."""

    exact = False  # top-k only: a letter outside the top 20 is recorded as None (missing)
    api: ServerAPI  # its endpoints and how their answers read
    client: Client
    concurrency: int

    def _body(self, prompt: str) -> dict:
        raise NotImplementedError

    def _request(self, request: ScoreRequest) -> tuple[str, dict]:
        """(endpoint, body) for a request (server_chat.ChatLetters sends messages elsewhere)."""
        return self.api.path, self._body(request.context)

    def close(self) -> None:
        self.client.close()

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        return score_parallel(requests, self._one, self.concurrency)

    def _one(self, request: ScoreRequest, stop: threading.Event) -> ChoiceScores:
        path, body = self._request(request)
        found, prompt_tokens = self.client.post(path, body, check=self.api.letters, stop=stop)
        lls = tuple(found.get(c) for c in request.continuations)
        # lm-eval counts context + continuation tokens; a one-token continuation adds 1.
        return ChoiceScores(request.qid, lls, prompt_tokens + 1 if prompt_tokens else 0)


def score_parallel(requests: Sequence[ScoreRequest], one: Callable, concurrency: int
                   ) -> Iterator[list[ChoiceScores]]:
    """Run one(request, stop) for every request, `concurrency` at a time, yielding results in
    batches of about `concurrency` as they finish. After a failure the finished results are
    yielded first (the runner keeps them), then the error is raised."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="mmlu-http")
    pending: set[Future] = {pool.submit(one, r, stop) for r in requests}
    batch: list[ChoiceScores] = []
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            failed = [f.exception() for f in done if f.exception() is not None]
            batch += [f.result() for f in done if f.exception() is None]
            if failed:
                stop.set()  # the other workers give up at their next retry
                pool.shutdown(wait=True, cancel_futures=True)
                batch += [f.result() for f in pending
                          if f.done() and not f.cancelled() and f.exception() is None]
                if batch:
                    yield batch
                raise failed[0]
            if len(batch) >= concurrency or (batch and not pending):
                yield batch
                batch = []
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
