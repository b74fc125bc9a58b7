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
from . import http, server_generate
from .http import (
    Client,
    HTTPStatusError,
    ServerBackend,
    Transient,
    Unreachable,
)
from .openai_compat import PROBE, TOP_K
from .server_chat import ChatLetters, ollama_chat_alternatives, ollama_chat_body
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


def alternatives(answer: dict) -> dict[str, float]:
    """token text -> logprob at the generated position. Token texts carry their leading space
    (" A"); only " A".." D" count, as in lm-eval's continuations."""
    try:
        first = answer["logprobs"][0]
        found = {alt["token"]: alt["logprob"] for alt in first.get("top_logprobs") or []}
        found.setdefault(first["token"], first["logprob"])
    except (KeyError, IndexError, TypeError) as e:
        raise Transient(f"Ollama's answer holds no logprobs ({type(e).__name__}: {e})") from None
    return found


def _stopped_at_once(answer) -> bool:
    """End-of-text came first: nothing generated, no logprobs. llama-cpp-python's server does
    this (see openai_compat.min_tokens); guarded here too, though not seen on a real Ollama."""
    return (isinstance(answer, dict) and not answer.get("logprobs")
            and not answer.get("response") and answer.get("done_reason") == "stop")


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
    name = "ollama"
    exact = False  # top-k only: a letter outside the top 20 is recorded as missing
    path = "/api/generate"
    # chat: --apply-chat-template requests go to /api/chat (server_chat.py)
    capabilities = frozenset({"loglikelihood", "chat", "generate"})
    chat_path = "/api/chat"
    text_request = staticmethod(server_generate.ollama_request)
    text_parse = staticmethod(server_generate.ollama_parse)
    # A model pulled again under the same name is another model: its digest must match.
    resume_keys = ServerBackend.resume_keys + ("model_digest", "ollama_path", "tokenizer")

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

    @staticmethod
    def _chat_parse(answer: dict) -> tuple[dict[str, float], int]:
        prompt_tokens = answer.get("prompt_eval_count") if isinstance(answer, dict) else None
        return ollama_chat_alternatives(answer), int(prompt_tokens or 0)

    @staticmethod
    def _parse(answer: dict) -> tuple[dict[str, float], int]:
        # Some Ollama versions leave prompt-cached tokens out of prompt_eval_count
        # (ollama#2068): n_tokens, for tokens/s only, can run low; no score depends on it.
        prompt_tokens = answer.get("prompt_eval_count") if isinstance(answer, dict) else None
        if _stopped_at_once(answer):  # at temperature 0 a retry would do the same
            raise BackendError("Ollama stopped at end-of-text before generating a token and "
                               "returned no logprobs for a prompt")
        return alternatives(answer), int(prompt_tokens or 0)

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
            alternatives(answer)
        except Transient:
            raise NoServerLogprobs(f"Ollama at {self.base} returned no logprobs for a test "
                                   f"generation; upgrade Ollama to "
                                   f"{'.'.join(map(str, MIN_VERSION))} or later") from None


# What `ollama:` can do whichever path open_backend takes (the store path scores the file with
# llama.cpp, which can do all of it too): read by the runner before anything loads.
open_backend.capabilities = OllamaBackend.capabilities
