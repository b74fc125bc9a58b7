"""A deterministic fake model: dry runs of the whole pipeline, CLI tests, README examples.

Its log-likelihoods are a hash of the prompt and the letter, so they are stable across runs and
machines and look like a weak model's (right about a quarter of the time). Its generations are
picked by a hash of the prompt too: usually a letter, then the phrases every format's filter
looks for ("The answer is (X).", "Answer: X"); one in five an answer no filter can read.
Its chat template (TEMPLATE) is a made-up one, rendered as a GGUF's is (chat_template.py).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence

from ..schema import ChoiceScores, GenerateRequest, Generation, LETTERS, ScoreRequest
from .base import UnitScorer
from .textgen import cut_at_stop

BATCH = 16
# A ChatML-like template for --apply-chat-template dry runs.
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


class FakeBackend(UnitScorer):
    exact = True

    def __init__(self, config) -> None:
        self.model = config.model

    def info(self) -> dict:
        return {"device": "none", "dtype": "none", "fake_model": self.model}

    def close(self) -> None:
        pass

    def chat_renderer(self):
        from .chat_template import template_renderer

        return template_renderer(TEMPLATE, {}, f"fake:{self.model}")

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        for start in range(0, len(requests), BATCH):
            yield [self._one(r) for r in requests[start:start + BATCH]]

    def _fraction(self, *parts: str) -> float:
        digest = hashlib.sha256("|".join((self.model,) + parts).encode()).digest()
        return struct.unpack(">Q", digest[:8])[0] / 2**64

    def _one(self, request: ScoreRequest) -> ChoiceScores:
        lls = [-1.0 - 10.0 * self._fraction(request.context, c) for c in request.continuations]
        return ChoiceScores(request.qid, tuple(lls), len(request.context.split()))

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[list[Generation]]:
        for start in range(0, len(requests), BATCH):
            yield [self._text(r) for r in requests[start:start + BATCH]]

    def _text(self, request: GenerateRequest) -> Generation:
        x = self._fraction(request.context, "generate")
        letter = LETTERS[int(x * 20) % 4]
        raw = (f"{letter}\nThe answer is ({letter}).\nAnswer: {letter}" if x < 0.8
               else "I am not sure.")
        text, stopped = cut_at_stop(raw, request.until)
        words = raw.split() if not stopped else text.split()
        return Generation(request.qid, text, len(request.context.split()) + len(words),
                          "stop")
