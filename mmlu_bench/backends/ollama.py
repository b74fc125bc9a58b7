"""ollama:NAME: a model pulled into a running Ollama, through its native API; without a server
that gives logprobs (none running, one older than 0.12.11, none returned) or with --ollama-direct,
the pulled GGUF scored in-process (ollama_store.py).

Not Ollama's OpenAI endpoints: those apply the model's chat template, and MMLU is scored on the
raw prompt. /api/generate with raw=true sends the prompt untouched. Logprobs came in 0.12.11.
API reference: https://docs.ollama.com/api/generate (request fields `logprobs`, `top_logprobs`;
the answer's `logprobs` is a list, one entry per generated token, each {token, logprob, bytes,
top_logprobs: [{token, logprob, bytes}, ...]}), as in the v0.12.11 release notes.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from urllib.parse import urlsplit

from ..errors import BackendError, ConfigError
from . import http, server_api
from .http import (
    Client,
    HTTPStatusError,
    ServerBackend,
    Transient,
    Unreachable,
)
from .openai_compat import PROBE, TOP_K
from .server_chat import ChatLetters, ollama_chat_body
from .server_generate import ServerText

log = logging.getLogger(__name__)

MIN_VERSION = (0, 12, 11)
DEFAULT_PORT = 11434


def ollama_host(value: str | None) -> str:
    """The base URL from OLLAMA_HOST, read as the ollama CLI reads it: scheme, host and port
    are each optional (http, 127.0.0.1, 11434); an explicit http(s):// defaults to 80/443."""
    value = (value or "").strip().rstrip("/")
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest, port = "http", value, DEFAULT_PORT
    else:
        port = 443 if scheme == "https" else 80
    if scheme not in ("http", "https"):
        raise ConfigError(f"OLLAMA_HOST={value!r}: use host[:port] or http(s)://host[:port]")
    if ":" in rest and _is_ip(rest):  # a bare IPv6 address: its colons are no port
        rest = f"[{rest.strip('[]')}]"
    parts = urlsplit(f"{scheme}://{rest or '127.0.0.1'}")
    try:
        port = parts.port or port
    except ValueError:
        raise ConfigError(f"OLLAMA_HOST={value!r}: the port is not a number") from None
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}{parts.path}"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
        return True
    except ValueError:
        return False


def parse_version(text: str) -> tuple[int, int, int] | None:
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(g) for g in match.groups()) if match else None  # type: ignore[return-value]


class NoServerLogprobs(BackendError):
    """The server path cannot score: no server, too old, or no logprobs in its answers."""


def open_backend(config):
    """The ollama: backend: the server when it gives logprobs, else the pulled file from the
    store. Either way info()["ollama_path"] says which ("server" or "store")."""
    from .ollama_store import OllamaStoreBackend, StoreError

    if config.ollama_direct:
        return OllamaStoreBackend(config)
    try:
        return OllamaBackend(config)
    except NoServerLogprobs as server:
        try:
            return OllamaStoreBackend(config, why=str(server))
        except StoreError as store:  # one line: why neither path can score
            raise BackendError(f"{server}; and not from Ollama's store either: {store}") from None


class OllamaBackend(ChatLetters, ServerText, ServerBackend):
    api = server_api.OLLAMA

    def __init__(self, config) -> None:
        self.base = ollama_host(os.environ.get("OLLAMA_HOST"))
        self.model = config.model
        self.concurrency = config.concurrency
        self.client = Client(self.base, None, config.timeout)  # Ollama takes no API key
        # Generative formats read text, not logprobs: any Ollama version serves them.
        self.generating = config.format_spec().needs == "generate"
        self.version = self._check_version()
        self.digest = self._check_pulled()
        if not self.generating:
            self._probe()

    def info(self) -> dict:
        return {"device": "server", "dtype": "unknown", "ollama_path": "server",
                "server": self.base, "server_model": self.model, "model_digest": self.digest,
                "ollama_version": self.version, "top_logprobs": TOP_K}

    def _body(self, prompt: str) -> dict:
        return {"model": self.model, "prompt": prompt, "raw": True, "stream": False,
                "options": {"num_predict": 1, "temperature": 0},
                "logprobs": True, "top_logprobs": TOP_K}

    def _chat_body(self, messages: list[dict]) -> dict:
        return ollama_chat_body(self.model, messages)

    def _check_version(self) -> str:
        try:
            answer = self.client.get("/api/version", retry=http.STARTUP_RETRY) or {}
        except Unreachable as e:
            raise NoServerLogprobs(str(e)) from None
        version = str(answer.get("version"))
        number = parse_version(version)
        if number == (0, 0, 0) or number is None:  # a build from source: the probe decides
            log.warning("Ollama reports version %r; checking logprobs directly", version)
        elif number < MIN_VERSION and not self.generating:
            raise NoServerLogprobs(f"Ollama {version} at {self.base} cannot return logprobs; "
                                   f"upgrade Ollama to {'.'.join(map(str, MIN_VERSION))} or later")
        return version

    def _check_pulled(self) -> str | None:
        tags = self.client.get("/api/tags", retry=http.STARTUP_RETRY) or {}
        wanted = self.model if ":" in self.model else self.model + ":latest"
        for m in tags.get("models") or []:
            if wanted in (m.get("name"), m.get("model")):
                return m.get("digest")
        raise BackendError(f"Ollama at {self.base} has no model {self.model!r}; run "
                           f"`ollama pull {self.model}`")

    def _probe(self) -> None:
        try:
            answer = self.client.post("/api/generate", self._body(PROBE), retry=http.STARTUP_RETRY)
        except HTTPStatusError as e:
            raise BackendError(f"Ollama at {self.base} refused a test generation: HTTP "
                               f"{e.status}: {e.detail}") from None
        try:
            self.api.letters(answer)
        except Transient:
            raise NoServerLogprobs(f"Ollama at {self.base} returned no logprobs for a test "
                                   f"generation; upgrade Ollama to "
                                   f"{'.'.join(map(str, MIN_VERSION))} or later") from None

