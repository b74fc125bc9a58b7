"""A deterministic fake model: dry runs of the whole pipeline, CLI tests, README examples.

Its log-likelihoods are a hash of the prompt and the letter, so they are stable across runs and
machines and look like a weak model's (right about a quarter of the time).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence

from ..schema import ChoiceScores, ScoreRequest
from .base import UnitScorer

BATCH = 16


class FakeBackend(UnitScorer):
    name = "fake"
    exact = True

    def __init__(self, config) -> None:
        self.model = config.model

    def info(self) -> dict:
        return {"device": "none", "dtype": "none", "fake_model": self.model}

    def close(self) -> None:
        pass

    def score(self, requests: Sequence[ScoreRequest]) -> Iterator[list[ChoiceScores]]:
        for start in range(0, len(requests), BATCH):
            yield [self._one(r) for r in requests[start:start + BATCH]]

    def _one(self, request: ScoreRequest) -> ChoiceScores:
        lls = []
        for continuation in request.continuations:
            digest = hashlib.sha256(f"{self.model}|{request.context}|{continuation}".encode())
            fraction = struct.unpack(">Q", digest.digest()[:8])[0] / 2**64
            lls.append(-1.0 - 10.0 * fraction)
        return ChoiceScores(request.qid, tuple(lls), len(request.context.split()))
