"""server_api.py: every shape of server answer the letters and texts are read from, for the
plain and the chat endpoints of OpenAI-compatible servers and of Ollama."""

from __future__ import annotations

import pytest

from mmlu_bench.backends.http import Transient
from mmlu_bench.backends.server_api import (ollama_letters, ollama_text, openai_letters,
                                                openai_text)
from mmlu_bench.errors import BackendError

TOP = [{"token": " A", "logprob": -2.0}, {"token": " B", "logprob": -0.7}]
FIRST = {"token": " B", "logprob": -0.7, "top_logprobs": TOP}
FOUND = {" A": -2.0, " B": -0.7}


@pytest.mark.parametrize("answer", [
    # /completions, legacy shape (llama.cpp, vLLM)
    {"choices": [{"text": " B", "finish_reason": "length", "logprobs": {
        "tokens": [" B"], "token_logprobs": [-0.7], "top_logprobs": [{" A": -2.0, " B": -0.7}]}}],
     "usage": {"prompt_tokens": 12}},
    # /chat/completions (and /completions on servers that use the chat shape)
    {"choices": [{"message": {"content": "B"}, "finish_reason": "length",
                  "logprobs": {"content": [FIRST]}}], "usage": {"prompt_tokens": 12}},
], ids=["completions", "chat"])
def test_openai_letters_from_both_endpoints(answer):
    assert openai_letters(answer) == (FOUND, 12)


@pytest.mark.parametrize("answer", [
    {"response": " B", "done_reason": "length", "logprobs": [FIRST], "prompt_eval_count": 12},
    {"message": {"role": "assistant", "content": "B"}, "done_reason": "length",
     "logprobs": [FIRST], "prompt_eval_count": 12},
], ids=["generate", "chat"])
def test_ollama_letters_from_both_endpoints(answer):
    assert ollama_letters(answer) == (FOUND, 12)


def test_the_generated_token_counts_even_outside_the_top_alternatives():
    first = {"token": " D", "logprob": -5.0, "top_logprobs": TOP}
    assert ollama_letters({"logprobs": [first]})[0] == {**FOUND, " D": -5.0}


@pytest.mark.parametrize("read, answer", [
    (openai_letters, {"choices": [{"text": " B", "finish_reason": "length"}]}),
    (openai_letters, {"choices": [{"message": {"content": "B"}, "logprobs": None}]}),
    (openai_letters, {"choices": []}),
    (openai_letters, "not json object"),
    (ollama_letters, {"response": " B", "done_reason": "length"}),
    (ollama_letters, {"message": {"content": "B"}, "logprobs": []}),
])
def test_an_answer_without_logprobs_is_asked_again(read, answer):
    with pytest.raises(Transient, match="holds no logprobs"):
        read(answer)


@pytest.mark.parametrize("read, answer", [
    (openai_letters, {"choices": [{"text": "", "finish_reason": "stop", "logprobs": None}]}),
    (openai_letters, {"choices": [{"message": {"content": ""}, "finish_reason": "stop"}]}),
    (ollama_letters, {"response": "", "done_reason": "stop"}),
    (ollama_letters, {"message": {"content": ""}, "done_reason": "stop", "logprobs": None}),
])
def test_a_stop_before_any_token_is_not_retried(read, answer):
    """At temperature 0 the server would stop again: one clear error, no retries."""
    with pytest.raises(BackendError, match="end-of-text before generating a token"):
        read(answer)


def test_a_stop_that_still_carries_logprobs_is_read():
    """vLLM reports the alternatives of the position where it generated end-of-text."""
    answer = {"choices": [{"text": "", "finish_reason": "stop",
                           "logprobs": {"content": [FIRST]}}]}
    assert openai_letters(answer) == (FOUND, 0)


def test_texts_from_both_endpoints():
    usage = {"prompt_tokens": 10, "completion_tokens": 3}
    assert openai_text({"choices": [{"text": "B", "finish_reason": "stop"}],
                        "usage": usage}) == ("B", "stop", 13)
    assert openai_text({"choices": [{"message": {"content": None}, "finish_reason": "length"}]}
                       ) == ("", "length", 0)
    assert ollama_text({"response": "B", "done_reason": "stop", "prompt_eval_count": 10,
                        "eval_count": 3}) == ("B", "stop", 13)
    assert ollama_text({"message": {"content": "B"}}) == ("B", "stop", 0)
    for read, bad in ((openai_text, {"choices": [{}]}), (ollama_text, {"done": True})):
        with pytest.raises(Transient, match="holds no text"):
            read(bad)
