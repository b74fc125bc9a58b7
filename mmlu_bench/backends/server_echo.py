"""openai:'s second try at letters outside the top 20: the prompt echoed with its
log-probabilities, as lm-eval's local-completions scores every choice.

A plain-prompt question whose top 20 alternatives miss a letter gets one more /completions
request per missing letter: context + continuation, `echo` on, one token generated (not read),
logprobs 1. The continuation's log-likelihood is the sum over the echoed tokens that start
inside it (by `text_offset`). The first time, a letter that was found is echoed too, as a check
of the server: its echoed value must be its top-20 value (ECHO_TOLERANCE), or echo is off for
the run and the letters stay missing. llama-cpp-python 0.3.36's server fails that check (its
echoed log-probabilities are each token's value at the next position, one token late) and
answers a list of prompts with HTTP 500, hence one prompt per request. A question with no
letter in its top 20 keeps its letters missing until a check has passed.

Only the few questions that need it pay for it: vLLM reads no prefix cache for a request with
prompt log-probabilities, and every prompt token's log-probability is computed.
"""

from __future__ import annotations

import logging
import threading

from ..errors import BackendError
from ..schema import ChoiceScores, ScoreRequest
from . import http
from .http import Transient

log = logging.getLogger(__name__)

ECHO_TOLERANCE = 1e-3  # nats: the same server, the same tokens; far below a letter's spread


class EchoFallback:
    """Mixin for OpenAIBackend: fills letters missing from the top 20 through echo."""

    # None: not yet checked against this server; True: checked; False: off for the run
    echo: bool | None = None

    def _one(self, request: ScoreRequest, stop: threading.Event) -> ChoiceScores:
        scores = super()._one(request, stop)
        lls = scores.loglikelihoods
        if request.messages is not None or None not in lls or self.echo is False:
            return scores
        missing = [i for i, ll in enumerate(lls) if ll is None]
        if self.echo is None and not self._echo_checked(request, lls, stop):
            return scores
        filled = list(lls)
        for i in missing:
            filled[i] = self._echo(request, i, stop)
            if filled[i] is None:
                return scores
        return ChoiceScores(scores.qid, tuple(filled), scores.n_tokens)

    def _echo_checked(self, request: ScoreRequest, lls, stop) -> bool:
        """Echo a letter that was found; its value must be its top-20 value."""
        known = next((i for i, ll in enumerate(lls) if ll is not None), None)
        if known is None:
            return False  # nothing to check against on this question
        echoed = self._echo(request, known, stop)
        if echoed is None:
            return False
        if abs(echoed - lls[known]) > ECHO_TOLERANCE:
            self._echo_off(f"its echoed log-probability of {request.continuations[known]!r} "
                           f"({echoed:.4f}) is not its top-20 value ({lls[known]:.4f})")
            return False
        self.echo = True
        return True

    def _echo(self, request: ScoreRequest, choice: int, stop) -> float | None:
        """The continuation's echoed log-likelihood; None (and echo off) when the server
        cannot give it."""
        ctx, cont = request.context, request.continuations[choice]
        body = {"model": self.model, "prompt": ctx + cont, "max_tokens": 1, "temperature": 0,
                "logprobs": 1, "echo": True}
        try:
            # Few tries: a server that fails echo is not worth the full backoff.
            answer = self.client.post(self.api.path, body, stop=stop, retry=http.STARTUP_RETRY)
            return _continuation(answer, len(ctx), len(ctx + cont))
        except (BackendError, Transient) as e:
            if stop.is_set():
                raise
            self._echo_off(str(e))
        return None

    def _echo_off(self, why: str) -> None:
        if self.echo is not False:
            self.echo = False
            log.warning("letters outside the top 20 stay missing: %s's /completions echo "
                        "cannot score them (%s)", self.base, why)


def _continuation(answer, start: int, end: int) -> float:
    """The summed log-probability of the echoed tokens that start in [start, end): the
    continuation, without the generated token after the prompt."""
    try:
        logprobs = answer["choices"][0]["logprobs"]
        pairs = list(zip(logprobs["text_offset"], logprobs["token_logprobs"], strict=True))
    except (KeyError, IndexError, TypeError, ValueError) as e:
        raise Transient(f"the echo answer holds no prompt log-probabilities "
                        f"({type(e).__name__}: {e})") from None
    inside = [lp for offset, lp in pairs if start <= offset < end]
    if not inside or any(lp is None for lp in inside):
        raise Transient("the echo answer holds no log-probability for the continuation")
    return float(sum(inside))
