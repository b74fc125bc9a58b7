"""A deterministic fake model: dry runs of the whole pipeline, CLI tests, README examples.

Its log-likelihoods are a hash of the prompt and the letter, so they are stable across runs and
machines and look like a weak model's (right about a quarter of the time). Its generations are
picked by a hash of the prompt too: usually a letter, then the phrases every format's filter
looks for ("The answer is (X).", "Answer: X"); one in five an answer no filter can read.
Its chat template (TEMPLATE) is a made-up one, rendered as a GGUF's is (chat_template.py).
`fake:NAME?latency=0.05` (or `50ms`) also takes that long per question, sleeping (no CPU): a
stand-in for a model's speed when timing the pipeline around it (bench/ray_overhead.py);
its answers are NAME's.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Iterator, Sequence

from ..errors import ConfigError
from ..schema import ChoiceScores, GenerateRequest, Generation, LETTERS, ScoreRequest
from .base import UnitScorer
from .textgen import cut_at_stop

BATCH = 16
# A ChatML-like template for --apply-chat-template dry runs.
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def parse_spec(model: str) -> tuple[str, float]:
    """'NAME[?latency=SECONDS|MSms]' -> (NAME, seconds per question)."""
    name, _, query = model.partition("?")
    latency = 0.0
    for option in filter(None, query.split("&")):
        key, _, value = option.partition("=")
        try:
            if key != "latency":
                raise ValueError
            latency = float(value[:-2]) / 1000 if value.endswith("ms") else float(value)
            if latency < 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"fake:{model}: the one option is latency=SECONDS (or MSms), "
                              "e.g. fake:demo?latency=0.05") from None
    return name, latency


class FakeBackend(UnitScorer):
    exact = True

    def __init__(self, config) -> None:
        self.model, self.latency = parse_spec(config.model)

    def info(self) -> dict:
        info = {"device": "none", "dtype": "none", "fake_model": self.model}
        return {**info, "latency_s": self.latency} if self.latency else info

    def close(self) -> None:
        pass

    def chat_renderer(self):
        from .chat_template import template_renderer

        return template_renderer(TEMPLATE, {}, f"fake:{self.model}")

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        for start in range(0, len(requests), BATCH):
            batch = requests[start:start + BATCH]
            time.sleep(self.latency * len(batch))
            yield [self._one(r) for r in batch]

    def _fraction(self, *parts: str) -> float:
        digest = hashlib.sha256("|".join((self.model,) + parts).encode()).digest()
        return struct.unpack(">Q", digest[:8])[0] / 2**64

    def _one(self, request: ScoreRequest) -> ChoiceScores:
        lls = [-1.0 - 10.0 * self._fraction(request.context, c) for c in request.continuations]
        return ChoiceScores(request.qid, tuple(lls), len(request.context.split()))

    def generate(self, requests: Sequence[GenerateRequest]) -> Iterator[list[Generation]]:
        for start in range(0, len(requests), BATCH):
            batch = requests[start:start + BATCH]
            time.sleep(self.latency * len(batch))
            yield [self._text(r) for r in batch]

    def _text(self, request: GenerateRequest) -> Generation:
        x = self._fraction(request.context, "generate")
        letter = LETTERS[int(x * 20) % 4]
        raw = (f"{letter}\nThe answer is ({letter}).\nAnswer: {letter}" if x < 0.8
               else "I am not sure.")
        text, stopped = cut_at_stop(raw, request.until)
        words = raw.split() if not stopped else text.split()
        return Generation(request.qid, text, len(request.context.split()) + len(words),
                          "stop")
