"""Chat-template scoring on servers (openai:, ollama:): the server applies its own template.
(Generative formats send the same messages for text instead: server_generate.py.)

A request built by the chat format carries lm-eval's messages (ScoreRequest.messages). They go
to the server's chat endpoint with one token to generate and the top 20 log-probabilities of
that token, the first of the assistant's turn; the letters "A".."D" (no leading space, as in
lm-eval's chat continuations) are read from there. A letter outside the top 20 is None.

Unlike the in-process backends, the log-likelihood is of the letter alone: the generation
prompt's trailing newline is part of the server's prompt, not of the scored continuation
(lm-eval's `\\nA`). The same term is missing from every letter, so predictions agree.
"""

from __future__ import annotations

from ..errors import BackendError
from ..schema import ScoreRequest
from . import http
from .chat_template import ChatRenderer, server_renderer
from .http import HTTPStatusError

TOP_K = 20
PROBE = [{"role": "user", "content": "The capital of France is"}]


def openai_chat_body(model: str, messages: list[dict], min_tokens: bool) -> dict:
    body = {"model": model, "messages": messages, "max_tokens": 1, "temperature": 0,
            "logprobs": True, "top_logprobs": TOP_K}
    if min_tokens:
        body["min_tokens"] = 1  # as for /completions: no empty answer without logprobs
    return body


def ollama_chat_body(model: str, messages: list[dict]) -> dict:
    return {"model": model, "messages": messages, "stream": False,
            "options": {"num_predict": 1, "temperature": 0},
            "logprobs": True, "top_logprobs": TOP_K}


class ChatLetters:
    """Mixin for a ServerBackend: requests with messages go to the chat endpoint."""

    generating: bool = False  # a generative format: text is read, no logprobs are needed

    def _chat_body(self, messages: list[dict]) -> dict:
        raise NotImplementedError

    def chat_renderer(self) -> ChatRenderer:
        """Checks once that the chat endpoint returns logprobs (when letters are scored), then
        sends the messages there."""
        if self.generating:  # server_generate sends them; any chat endpoint will do
            return server_renderer()
        try:
            try:
                self._chat_probe()
            except HTTPStatusError as e:
                if e.status not in (400, 422) or not getattr(self, "min_tokens", False):
                    raise
                self.min_tokens = False  # a server that rejects min_tokens: send it without
                self._chat_probe()
        except HTTPStatusError as e:
            raise BackendError(f"{e.url} refused a chat request (HTTP {e.status}: {e.detail}); "
                               "leave out --apply-chat-template to score the plain prompt"
                               ) from None
        except BackendError as e:
            raise BackendError(f"{self.base}{self.api.chat_path} gave no logprobs for a chat "
                               f"request ({e}); mmlu-bench needs top logprobs there for "
                               "--apply-chat-template") from None
        return server_renderer()

    def _chat_probe(self) -> None:
        self.client.post(self.api.chat_path, self._chat_body(PROBE), check=self.api.letters,
                         retry=http.STARTUP_RETRY)

    def _request(self, request: ScoreRequest) -> tuple[str, dict]:
        if request.messages is None:
            return super()._request(request)
        return self.api.chat_path, self._chat_body([dict(m) for m in request.messages])
