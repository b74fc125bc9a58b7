"""ChoiceScores -> QuestionRecord: prediction and correctness, as lm-eval's `acc` decides them."""

from __future__ import annotations

from .schema import ChoiceScores, Question, QuestionRecord


def predict(loglikelihoods: tuple[float | None, ...]) -> int:
    """Index of the highest log-likelihood; the first one wins a tie (numpy.argmax, as lm-eval).

    Missing letters (None) are skipped; with none present the prediction is -1 (wrong)."""
    best, best_ll = -1, float("-inf")
    for i, ll in enumerate(loglikelihoods):
        if ll is not None and (best < 0 or ll > best_ll):
            best, best_ll = i, ll
    return best


def record(question: Question, scores: ChoiceScores, prompt_sha256: str) -> QuestionRecord:
    assert scores.qid == question.qid, f"scores for {scores.qid} matched to {question.qid}"
    assert len(scores.loglikelihoods) == len(question.choices), f"{question.qid}: choice count"
    pred = predict(scores.loglikelihoods)
    return QuestionRecord(
        qid=question.qid, subject=question.subject, index=question.index, gold=question.gold,
        loglikelihoods=scores.loglikelihoods, pred=pred, correct=pred == question.gold,
        prompt_sha256=prompt_sha256, n_tokens=scores.n_tokens, meta=dict(question.meta),
    )
