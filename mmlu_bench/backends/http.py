"""What the server backends share: JSON over stdlib urllib, bounded retries, parallel scoring.

A failure that may pass (connection refused or reset, timeout, 429, 5xx, a cut or invalid
answer) is retried with exponential backoff; after the last try it becomes one BackendError line.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

from ..errors import BackendError
from ..schema import ChoiceScores, ScoreRequest
from .base import UnitScorer

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
    """JSON requests to one server. The API key goes into a header and nowhere else."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._secret = api_key

    def __repr__(self) -> str:
        return f"Client({self.base!r})"

    def get(self, path: str, retry: Retry | None = None):
        return self.call("GET", path, None, retry=retry)

    def post(self, path: str, body: dict, retry: Retry | None = None,
             check: Callable | None = None, stop: threading.Event | None = None):
        return self.call("POST", path, body, retry=retry, check=check, stop=stop)

    def call(self, method: str, path: str, body: dict | None, retry: Retry | None = None,
             check: Callable | None = None, stop: threading.Event | None = None):
        """The decoded answer, passed through `check` (which raises Transient to retry)."""
        retry = retry or RETRY
        stop = stop or threading.Event()
        url = self.base + path
        for attempt in range(1, retry.attempts + 1):
            try:
                answer = self._once(method, url, body)
                return check(answer) if check else answer
            except HTTPStatusError as e:
                raise HTTPStatusError(e.url, e.status, self._clean(e.detail)) from None
            except Transient as e:
                message = self._clean(str(e))
                if attempt == retry.attempts or stop.is_set():
                    error = Unreachable if e.refused else BackendError
                    raise error(f"{message} (gave up after {attempt} tries)") from None
                delay = min(retry.cap, e.wait if e.wait is not None
                            else retry.backoff * 2 ** (attempt - 1))
                log.log(retry.log_level, "%s; retrying in %.1f s", message, delay)
                if stop.wait(delay):
                    raise BackendError(message) from None
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, body: dict | None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=self._headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise _status_error(url, e) from None
        except urllib.error.URLError as e:
            raise self._network_error(url, e.reason) from None
        except (OSError, http.client.HTTPException) as e:  # reset, timeout or cut mid-answer
            raise self._network_error(url, e) from None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise Transient(f"{url}: the server's answer is not valid JSON ({e})") from None

    def _network_error(self, url: str, reason) -> Exception:
        if isinstance(reason, ConnectionRefusedError):
            return Transient(f"cannot connect to {self.base}: connection refused; "
                             "is the server running?", refused=True)
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return Transient(f"{url}: no answer within {self.timeout:g} s; raise --timeout or "
                             "lower --concurrency")
        if isinstance(reason, socket.gaierror):
            return BackendError(f"cannot connect to {self.base}: unknown host")
        if isinstance(reason, (ConnectionError, http.client.HTTPException)):
            return Transient(f"{url}: the connection dropped before a full answer "
                             f"({type(reason).__name__})")
        return Transient(f"cannot connect to {self.base}: {reason}")

    def _clean(self, message: str) -> str:
        """One line, and never the API key (a server may echo what it was sent)."""
        if self._secret:
            message = message.replace(self._secret, "***")
        return " ".join(message.split())


def _status_error(url: str, e: urllib.error.HTTPError) -> Exception:
    detail = _error_detail(e)
    if e.code == 429 or e.code >= 500:
        return Transient(f"{url}: HTTP {e.code}: {detail}", wait=_retry_after(e))
    return HTTPStatusError(url, e.code, detail)


def _error_detail(e: urllib.error.HTTPError) -> str:
    """The server's own error message, from the usual JSON shapes, else the status text."""
    try:
        body = json.loads(e.read() or b"null")
    except (ValueError, OSError, http.client.HTTPException):
        body = None
    error = body.get("error", body.get("detail")) if isinstance(body, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    text = str(error) if error else str(e.reason)
    return " ".join(text.split())[:300]


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    """Retry-After in seconds. The HTTP-date form is rare for APIs: it falls back to backoff."""
    try:
        return max(0.0, float(e.headers.get("Retry-After", "")))
    except ValueError:
        return None


class ServerBackend(UnitScorer):
    """What openai: and ollama: share: one POST per question, `concurrency` at a time, each
    letter's log-likelihood read from the top alternatives of the one generated token."""

    exact = False  # top-k only: a letter outside the top 20 is recorded as None (missing)
    path: str  # the scoring endpoint
    client: Client
    concurrency: int

    def _body(self, prompt: str) -> dict:
        raise NotImplementedError

    @staticmethod
    def _parse(answer) -> tuple[dict[str, float], int]:
        """(token text -> logprob, prompt tokens or 0); raises Transient when malformed."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        return score_parallel(requests, self._one, self.concurrency)

    def _one(self, request: ScoreRequest, stop: threading.Event) -> ChoiceScores:
        found, prompt_tokens = self.client.post(self.path, self._body(request.context),
                                                check=self._parse, stop=stop)
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
