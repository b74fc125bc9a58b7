"""What each kind of server speaks (ServerAPI: OPENAI, OLLAMA), and its answers read in one
place: the letters' log-probabilities and the generated text, from the plain and the chat
endpoints alike. (The request bodies: openai_compat.py, ollama.py, server_chat.py,
server_generate.py.)

Shapes (the first generated token's alternatives; token texts carry their leading space, " A"):
- OpenAI /completions (legacy): choices[0].logprobs = {tokens, token_logprobs,
  top_logprobs: [{token: logprob}, ...]}, one entry per generated position;
- OpenAI /chat/completions, and /completions on newer servers: choices[0].logprobs.content =
  [{token, logprob, top_logprobs: [{token, logprob}, ...]}, ...];
- Ollama /api/generate and /api/chat (>= 0.12.11): logprobs = [{token, logprob, bytes,
  top_logprobs: [{token, logprob, bytes}, ...]}, ...] (docs.ollama.com/api/generate).

A reader returns what it found or raises Transient (the client asks again); an answer that
stopped at end-of-text before any token, and so carries no logprobs, raises BackendError: at
temperature 0 a retry would do the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackendError
from ..schema import GenerateRequest
from . import server_generate
from .http import Transient

# (token text -> logprob at the first generated position, the prompt's token count or 0)
Letters = tuple[dict[str, float], int]


@dataclass(frozen=True, slots=True)
class ServerAPI:
    """One kind of server: where a ServerBackend sends each request and how it reads the
    answers."""

    path: str  # letters after a plain prompt
    chat_path: str  # letters after chat messages (--apply-chat-template)
    letters: Callable[[object], Letters]  # reads both endpoints' answers
    text_request: Callable[[str, GenerateRequest], tuple[str, dict]]  # generative formats
    text: Callable[[object], tuple[str, str, int]]  # reads a generated text


def openai_letters(answer) -> Letters:

    """From a /completions or /chat/completions answer, in either logprobs shape."""
    try:
        return _openai_alternatives(answer), _count(answer, "usage", "prompt_tokens")
    except Transient:
        if _openai_stopped(answer):
            raise BackendError("the server stopped at end-of-text before generating a token, "
                               "so it returned no logprobs; use a server that accepts "
                               "min_tokens (llama-cpp-python, vLLM)") from None
        raise


def ollama_letters(answer) -> Letters:
    """From an /api/generate or /api/chat answer. Some Ollama versions leave prompt-cached
    tokens out of prompt_eval_count (ollama#2068): the count, for tokens/s only, can run low."""
    try:
        found = _first_token(lambda a: a["logprobs"][0], answer, "Ollama's")
    except Transient:
        if _ollama_stopped(answer):
            raise BackendError("Ollama stopped at end-of-text before generating a token and "
                               "returned no logprobs for a prompt") from None
        raise
    return found, _count(answer, "prompt_eval_count")


def openai_text(answer) -> tuple[str, str, int]:
    """(text, finish reason, prompt + generated tokens) from a /completions or
    /chat/completions answer."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        finish = choice.get("finish_reason") or "stop"
    except (KeyError, IndexError, TypeError) as e:
        raise Transient(f"the server's answer holds no text ({type(e).__name__}: {e})") from None
    tokens = _count(answer, "usage", "prompt_tokens") + _count(answer, "usage",
                                                               "completion_tokens")
    return text or "", finish, tokens  # a None content is lm-eval's "" placeholder


def ollama_text(answer) -> tuple[str, str, int]:
    """(text, finish reason, prompt + generated tokens) from an /api/generate or /api/chat
    answer."""
    try:
        text = answer["message"]["content"] if "message" in answer else answer["response"]
    except (KeyError, TypeError) as e:
        raise Transient(f"Ollama's answer holds no text ({type(e).__name__}: {e})") from None
    finish = answer.get("done_reason") or "stop"
    tokens = _count(answer, "prompt_eval_count") + _count(answer, "eval_count")
    return text or "", finish, tokens


def _openai_alternatives(answer) -> dict[str, float]:
    """Token texts are each token decoded on its own: a BPE "ĠA" or SentencePiece "▁A" reads
    " A", with the space. Only the exact strings " A".." D" count, as in lm-eval's
    continuations; two token ids that decode to the same text share one key."""
    try:
        logprobs = answer["choices"][0]["logprobs"]
        legacy = "content" not in logprobs
    except (KeyError, IndexError, TypeError) as e:
        raise Transient(f"the server's answer holds no logprobs ({type(e).__name__}: {e})"
                        ) from None
    if not legacy:
        return _first_token(lambda a: a["content"][0], logprobs, "the server's")
    try:  # top_logprobs = [{token: logprob}] per position
        found = dict(logprobs["top_logprobs"][0] or {})
        found.setdefault(logprobs["tokens"][0], logprobs["token_logprobs"][0])
    except (KeyError, IndexError, TypeError) as e:
        raise Transient(f"the server's answer holds no logprobs ({type(e).__name__}: {e})"
                        ) from None
    return found


def _first_token(first_of, answer, whose: str) -> dict[str, float]:
    """The first token's top alternatives and the token itself, from a [{token, logprob,
    top_logprobs}] entry; Transient when there is none."""
    try:
        first = first_of(answer)
        found = {alt["token"]: alt["logprob"] for alt in first.get("top_logprobs") or []}
        found.setdefault(first["token"], first["logprob"])
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise Transient(f"{whose} answer holds no logprobs ({type(e).__name__}: {e})") from None
    return found


def _openai_stopped(answer) -> bool:
    """Nothing was generated: end-of-text was the likeliest token (see openai_compat's
    min_tokens)."""
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        return choice["finish_reason"] == "stop" and not text
    except (KeyError, IndexError, TypeError):
        return False


def _ollama_stopped(answer) -> bool:
    """The same for Ollama (llama-cpp-python's server does it; not seen on a real Ollama)."""
    if not isinstance(answer, dict) or answer.get("done_reason") != "stop":
        return False
    message = answer.get("message")
    text = message.get("content") if isinstance(message, dict) else answer.get("response")
    return not text


def _count(answer, *keys: str) -> int:
    """A token count from the answer (answer[k1][k2]...), 0 when it is not there."""
    value = answer
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return int(value or 0)


OPENAI = ServerAPI("/completions", "/chat/completions", openai_letters,
                   server_generate.openai_request, openai_text)
OLLAMA = ServerAPI("/api/generate", "/api/chat", ollama_letters, server_generate.ollama_request,
                   ollama_text)
