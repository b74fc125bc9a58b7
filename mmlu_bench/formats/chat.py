"""lm-eval 0.4.13's `--apply_chat_template` on a multiple-choice task, scored by log-likelihood.

The messages are lm-eval's (prompts.messages): the description (after a --system-instruction)
as the system message; each few-shot example a user turn and an assistant turn holding the bare
answer letter (multi-turn, lm-eval's default with a template since 0.4.10), or all of them
joined into one user message as in the plain prompt (--no-fewshot-as-multiturn); then the
question. The backend's template renders them with the generation prompt added.

The continuations are "A".."D" WITHOUT the leading space: lm-eval drops the target delimiter
in chat mode. The context's trailing whitespace (the generation prompt's newline) then moves
into the continuation when tokenizing (backends/tokens.encode_pair), so the scored tokens are
"\\nA": the same extra term for every letter, as in lm-eval's logged log-likelihoods.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import prompts
from ..schema import Question, ScoreRequest, TaskData
from ..tasks.base import Task
from .base import Format
from .chat_spec import ChatSpec


class Chat(Format):
    name = "chat"
    needs = "loglikelihood"
    needs_renderer = True

    def __init__(self, fewshot_as_multiturn: bool = True, system_instruction: str | None = None,
                 **settings) -> None:
        settings.pop("apply_chat_template", None)  # this format is always under the template
        super().__init__(**settings)
        self.chat = ChatSpec(fewshot_as_multiturn is not False, system_instruction or None)

    def prompt_format(self, task: Task, renderer=None) -> str:
        return f"{task.prompt_format}+{self.chat.identity(renderer)}"

    def requests(self, task: Task, questions: Sequence[Question], data: TaskData,
                 num_fewshot: int, renderer=None) -> list[ScoreRequest]:
        assert renderer is not None, "the chat format renders with the backend's template"
        out = []
        for q in questions:
            turns = prompts.messages(task, q, task.shots(data, q, num_fewshot),
                                     self.chat.system_instruction)
            context, sent = self.chat.render(turns, renderer)
            out.append(ScoreRequest(q.qid, context, tuple(task.labels(q)), sent))
        return out

    def header_chat(self, renderer=None) -> dict:
        return self.chat.header(renderer)
