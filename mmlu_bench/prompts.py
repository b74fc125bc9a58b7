"""Prompt rendering -> ScoreRequest, as lm-eval 0.4.13 builds a multiple-choice context.

lm-eval builds a list of messages (ConfigurableTask.fewshot_context): the task's description
as a system message, each few-shot example as a user turn (the question, ending in the target
delimiter) and an assistant turn (its answer, ending in the few-shot delimiter), then the
question. Without a chat template the context is every message's text and delimiter joined;
with MMLU's recipe that is the description, the first k dev examples ("...Answer: B") joined by
blank lines, then the question ending in "Answer:". The continuations are " A" .. " D": the
target delimiter " " belongs to the continuation, not the context, and that decides how the
letter is tokenized.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .schema import Question, ScoreRequest, TaskData
from .tasks.base import Task


@dataclass(frozen=True, slots=True)
class Message:
    """lm-eval's Message: a chat turn; `delimiter` follows it in plain text only."""

    role: str
    content: str
    delimiter: str = ""


def maybe_delimit(prefix: str | None, suffix: str | None, delimiter: str) -> str:
    """lm-eval's maybe_delimit: the two joined, with `delimiter` between them unless either
    side of the join is already whitespace."""
    if not prefix:
        return suffix or ""
    if not suffix:
        return prefix
    if prefix[-1].isspace() or suffix[0].isspace():
        return prefix + suffix
    return prefix + delimiter + suffix


def messages(task: Task, q: Question, shots: Sequence[Question],
             system_instruction: str | None = None,
             text: Callable[[Question], str] | None = None,
             gen_prefix: str | None = None,
             target: Callable[[Question], str] | None = None,
             description: str | None = None) -> list[Message]:
    """lm-eval's fewshot_context messages. A --system-instruction goes before the description,
    both in the system message (its plain text has no delimiter after it). `text` renders a
    question where a format has its own doc_to_text (default: the task's), `target` a shot's
    answer (default: the task's fewshot_target), `description` replaces the task's. A
    `gen_prefix` (the task's assistant prefill) starts every answer turn and ends the messages
    as an open assistant turn (qa_turn)."""
    text = text or task.doc_to_text
    target = target or task.fewshot_target
    if description is None:
        description = task.description(q.subject)
    out = []
    system = maybe_delimit(system_instruction, description, task.fewshot_delimiter)
    if system:
        out.append(Message("system", system))
    for s in shots:
        out += qa_turn(task, text(s), target(s), gen_prefix, task.fewshot_delimiter)
    return out + qa_turn(task, text(q), "", gen_prefix, "")


def qa_turn(task: Task, question: str, answer: str, gen_prefix: str | None,
            fewshot_delimiter: str) -> list[Message]:
    """lm-eval's build_qa_turn: the user turn, then the answer turn (with the gen_prefix before
    the answer, always joined by a space unless one side has whitespace there), or the bare
    gen_prefix as an open assistant turn (the question's own); without either, the user turn
    alone. Traps: an empty answer means no answer turn and no delimiters, so the next shot
    follows this one's text directly; with a gen_prefix the user turn's target delimiter is
    kept only where the question and the prefix would otherwise touch."""
    if gen_prefix:
        joins = task.target_delimiter if requires_delimiter(question, gen_prefix) else ""
    else:
        joins = task.target_delimiter if answer else ""
    turns = [Message("user", question, joins)]
    if answer:
        turns.append(Message("assistant", maybe_delimit(gen_prefix, answer, " "),
                             fewshot_delimiter))
    elif gen_prefix:
        turns.append(Message("assistant", gen_prefix))
    return turns


def requires_delimiter(prefix: str, suffix: str) -> bool:
    """lm-eval's requires_delimiter: neither side of the join is whitespace."""
    return bool(prefix) and not (prefix[-1].isspace() or suffix[0].isspace())


def plain(turns: Sequence[Message]) -> str:
    return "".join(m.content + m.delimiter for m in turns)


def single_turn(turns: Sequence[Message]) -> list[Message]:
    """lm-eval's multiturn_to_singleturn: a leading system message kept, every other turn
    joined into one user message as plain text, the last delimiter dropped; an open assistant
    turn at the end (a gen_prefix) stays its own message after it."""
    system = [turns[0]] if turns and turns[0].role == "system" else []
    rest = list(turns[len(system):])
    prefill = [rest.pop()] if rest[-1].role == "assistant" else []
    rest[-1] = Message(rest[-1].role, rest[-1].content)
    return system + [Message("user", plain(rest))] + prefill


def prefilled(turns: Sequence[Message] | Sequence[dict]) -> bool:
    """Whether the chat ends in an open assistant turn the model continues (a gen_prefix)."""
    last = turns[-1] if turns else None
    role = last.get("role") if isinstance(last, dict) else getattr(last, "role", None)
    return role == "assistant"


def chat_dicts(turns: Sequence[Message]) -> list[dict]:
    """The messages as a chat template and a chat API take them (lm-eval's to_dict)."""
    return [{"role": m.role, "content": m.content} for m in turns]


def context(task: Task, q: Question, shots: Sequence[Question],
            system_instruction: str | None = None) -> str:
    """The plain-text context: description, each shot answered, then the question."""
    return plain(messages(task, q, shots, system_instruction))


def continuations(task: Task, q: Question) -> tuple[str, ...]:
    return tuple(task.target_delimiter + label for label in task.labels(q))


def build_requests(task: Task, questions: Sequence[Question], data: TaskData,
                   num_fewshot: int, system_instruction: str | None = None
                   ) -> list[ScoreRequest]:
    """Requests for `questions`, in order; each question's shots come from the task."""
    return [ScoreRequest(q.qid, context(task, q, task.shots(data, q, num_fewshot),
                                        system_instruction),
                         continuations(task, q)) for q in questions]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
