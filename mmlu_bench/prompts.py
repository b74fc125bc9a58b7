"""Prompt rendering and few-shot selection -> ScoreRequest.

Byte-identical to lm-eval 0.4.13's `mmlu` task (tasks/mmlu/default): a description naming the
subject, then the first k dev examples ("...Answer: B"), joined by blank lines, then the question
ending in "Answer:". The continuations are " A" .. " D": lm-eval's target_delimiter " " belongs
to the continuation, not the context, and that decides how the letter is tokenized.
"""

from __future__ import annotations

import hashlib

from .errors import UserError
from .schema import LETTERS, Question, ScoreRequest

# Bump when a change alters any prompt byte: resumed runs refuse a different format.
PROMPT_FORMAT = "lm-eval-0.4.13-mmlu-default"
CONTINUATIONS = tuple(" " + letter for letter in LETTERS)
FEWSHOT_DELIMITER = "\n\n"


def description(subject: str) -> str:
    return (f"The following are multiple choice questions (with answers) about "
            f"{subject.replace('_', ' ')}.\n\n")


def question_text(q: Question) -> str:
    """lm-eval's doc_to_text: the stripped question, four lettered choices, then 'Answer:'."""
    lines = [q.question.strip()]
    lines += [f"{letter}. {choice}" for letter, choice in zip(LETTERS, q.choices, strict=True)]
    return "\n".join(lines) + "\nAnswer:"


def context(q: Question, shots: tuple[Question, ...]) -> str:
    """description, each shot answered and followed by a blank line, then the question."""
    examples = "".join(question_text(s) + CONTINUATIONS[s.gold] + FEWSHOT_DELIMITER for s in shots)
    return description(q.subject) + examples + question_text(q)


def fewshot(dev: tuple[Question, ...], k: int, subject: str) -> tuple[Question, ...]:
    """lm-eval's first_n sampler: the first k dev examples of the subject."""
    if k > len(dev):
        raise UserError(f"--num-fewshot {k} is more than the {len(dev)} dev examples of "
                        f"{subject}; use at most {len(dev)}.")
    return dev[:k]


def build_requests(questions: tuple[Question, ...], dev: tuple[Question, ...],
                   num_fewshot: int) -> list[ScoreRequest]:
    """Requests for the questions of one subject."""
    if not questions:
        return []
    shots = fewshot(dev, num_fewshot, questions[0].subject)
    return [ScoreRequest(q.qid, context(q, shots), CONTINUATIONS) for q in questions]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
