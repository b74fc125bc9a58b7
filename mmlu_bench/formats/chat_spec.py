"""What --apply-chat-template, --fewshot-as-multiturn and --system-instruction ask of a format:
lm-eval 0.4.13's chat messages, their part of the prompt identity, and lm-eval's chat fields.

One settings object for every format that can be asked under a chat template: the letter
log-likelihood format (chat.py) and the generative ones (generative.py, mmlu_pro_cot.py). The
format builds lm-eval's turns (prompts.Message); this turns them into what the backend's
renderer reads (chat_template.ChatRenderer): the turns as they are (multi-turn) or joined into
one user message (single-turn), rendered with the generation prompt added (or, when they end in
an open assistant turn, a task's gen_prefix, continued from it), or sent as they are to a
server that applies its own template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .. import prompts
from ..prompts import Message


@dataclass(frozen=True, slots=True)
class ChatSpec:
    multiturn: bool = True  # --fewshot-as-multiturn (lm-eval's CLI: on with a template)
    system_instruction: str | None = None

    def dicts(self, turns: Sequence[Message]) -> list[dict]:
        """The messages lm-eval hands the template (fewshot_context)."""
        return prompts.chat_dicts(turns if self.multiturn else prompts.single_turn(turns))

    def render(self, turns: Sequence[Message], renderer) -> tuple[str, tuple | None]:
        """(the context, the messages a server is sent, or None when the text is the prompt).
        For a server the context is the messages' JSON (lm-eval's JsonChatStr)."""
        chat = self.dicts(turns)
        return renderer.rendered(chat), (tuple(chat) if renderer.sends_messages else None)

    def identity(self, renderer) -> str:
        """The chat part of the prompt format: template sha (or "server"), turns, instruction."""
        template = renderer.sha256[:16] if renderer and renderer.sha256 else "server"
        parts = [f"chat:{template}", "multiturn" if self.multiturn else "singleturn"]
        if self.system_instruction:
            parts.append(f"system:{prompts.sha256(self.system_instruction)[:16]}")
        return "+".join(parts)

    def header(self, renderer) -> dict:
        """lm-eval's results fields of a chat run."""
        return {"chat_template": renderer.template if renderer else "",
                "chat_template_sha": renderer.sha256 if renderer else None,
                **instruction_fields(self.system_instruction),
                "fewshot_as_multiturn": self.multiturn}


def instruction_fields(instruction: str | None) -> dict:
    return {"system_instruction": instruction,
            "system_instruction_sha": prompts.sha256(instruction) if instruction else None}


def plain_header(instruction: str | None) -> dict:
    """lm-eval's chat fields of a run without a template: only a system instruction's."""
    if not instruction:
        return {}
    return {"chat_template": None, "chat_template_sha": None,
            **instruction_fields(instruction), "fewshot_as_multiturn": None}


def plain_identity(instruction: str | None) -> str:
    """The prompt-format suffix of a system instruction without a template ("" without one)."""
    return f"+system:{prompts.sha256(instruction)[:16]}" if instruction else ""
