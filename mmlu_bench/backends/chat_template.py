"""Chat templates for the in-process backends, rendered as lm-eval 0.4.13 renders them.

lm-eval's HFLM.apply_chat_template calls tokenizer.apply_chat_template(messages,
tokenize=False, add_generation_prompt=True, continue_final_message=False), or, for a task with
a gen_prefix (the messages then end in an open assistant turn), add_generation_prompt=False,
continue_final_message=True: the text stops right after the prefix, no end-of-turn; when the
template raises a jinja2 TemplateError (Gemma-2's "System role not supported"), it drops every
system message (MMLU's description with it) and renders again. Both in-process backends do the same
here, so `hf:` and `gguf:` give the same bytes for the same template: `hf:` through its
tokenizer, `gguf:` through transformers' own renderer on the GGUF's `tokenizer.chat_template`
with the same special-token variables the transformers tokenizer of that file would pass.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

from ..errors import ConfigError

log = logging.getLogger(__name__)

Messages = Sequence[dict]


@dataclass(frozen=True)
class ChatRenderer:
    """How a backend turns a chat into the context it scores.

    `template` is the template's source (lm-eval's results field `chat_template`), "" when a
    server applies its own. `sends_messages`: the backend sends the messages themselves (a
    server's chat endpoint); the context is then their JSON, as lm-eval's JsonChatStr."""

    template: str
    render: Callable[[list[dict]], str] = field(compare=False)
    sends_messages: bool = False
    # Renders messages ending in an assistant turn the model continues (lm-eval's gen_prefix):
    # continue_final_message=True, no generation prompt. None: this backend cannot.
    render_prefill: Callable[[list[dict]], str] | None = field(default=None, compare=False)

    @property
    def sha256(self) -> str | None:
        return hashlib.sha256(self.template.encode("utf-8")).hexdigest() if self.template \
            else None

    def rendered(self, messages: list[dict]) -> str:
        """The context for `messages`: continued when they end in an assistant turn."""
        if not (messages and messages[-1]["role"] == "assistant"):
            return self.render(messages)
        if self.render_prefill is None:
            raise ConfigError("this backend cannot continue an assistant turn (the task's "
                              "gen_prefix) under a chat template; use hf:, gguf:, openai: or "
                              "ollama:, or leave out --apply-chat-template.")
        return self.render_prefill(messages)


def no_template_error(model: str) -> ConfigError:
    return ConfigError(f"{model} has no chat template, so --apply-chat-template cannot render "
                       "its prompts; leave the flag out to score lm-eval's plain prompt.")


def with_system_fallback(render: Callable[..., str]) -> Callable[[list[dict]], str]:
    """lm-eval's retry: a template that raises drops the system messages and renders again."""
    import jinja2

    def rendered(messages: list[dict]) -> str:
        try:
            return render(messages)
        except jinja2.exceptions.TemplateError as e:
            log.warning("the chat template refused the messages (%s); rendering them again "
                        "without the system message, as lm-eval does", e)
            return render([m for m in messages if m["role"] != "system"])

    return rendered


def tokenizer_renderer(tokenizer, model: str) -> ChatRenderer:
    """`hf:`: the tokenizer's own template, through the tokenizer, as lm-eval's HFLM."""
    template = tokenizer.chat_template
    if isinstance(template, dict):  # lm-eval's TemplateLM.chat_template: the "default" entry
        template = template.get("default")
    if not template:
        raise no_template_error(model)

    def render(messages: list[dict], prefill: bool = False) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=not prefill,
                                             continue_final_message=prefill)

    return ChatRenderer(template, with_system_fallback(render),
                        render_prefill=with_system_fallback(partial(render, prefill=True)))


def template_renderer(template: str | None, special_tokens: dict[str, str],
                      model: str) -> ChatRenderer:
    """A template string (a GGUF's), rendered as transformers renders it: its sandboxed jinja
    environment, add_generation_prompt=True and the special tokens as variables."""
    if not template:
        raise no_template_error(model)
    render_one = _renderer(template, dict(special_tokens))
    return ChatRenderer(template, with_system_fallback(render_one),
                        render_prefill=with_system_fallback(partial(render_one, prefill=True)))


def _renderer(template: str, variables: dict) -> Callable[..., str]:
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
    except ImportError:
        return _jinja_renderer(template, variables)

    def render(messages: list[dict], prefill: bool = False) -> str:
        # What tokenizer.apply_chat_template does with tokenize=False: drop None-valued keys,
        # then render one conversation.
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        rendered, _ = render_jinja_template(conversations=[chat], chat_template=template,
                                            add_generation_prompt=not prefill,
                                            continue_final_message=prefill, **variables)
        return rendered[0]

    return render


# transformers' continue_final_message: the final message's text is tagged, the chat rendered
# without a generation prompt, and the text cut where the tag begins.
CONTINUE_TAG = "CONTINUE_FINAL_MESSAGE_TAG "


def _jinja_renderer(template: str, variables: dict) -> Callable[..., str]:
    """Without transformers: jinja2 with transformers' environment settings and helpers."""
    from datetime import datetime

    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals.update(raise_exception=raise_exception, dict=dict, namespace=jinja2.utils.Namespace,
                       strftime_now=lambda fmt: datetime.now().strftime(fmt))
    compiled = env.from_string(template)

    def render(messages: list[dict], prefill: bool = False) -> str:
        chat = [{k: v for k, v in m.items() if v is not None} for m in messages]
        if prefill:
            chat[-1] = {**chat[-1], "content": chat[-1]["content"] + CONTINUE_TAG}
        text = compiled.render(messages=chat, tools=None, documents=None,
                               add_generation_prompt=not prefill, **variables)
        if not prefill:
            return text
        at = text.rindex(CONTINUE_TAG.strip())
        # a template that trims the message's trailing space loses the tag's too
        return text[:at] if text[at:at + len(CONTINUE_TAG)] == CONTINUE_TAG \
            else text[:at].rstrip()

    return render


def server_renderer() -> ChatRenderer:
    """openai: and ollama:: the server applies its own template to the messages we send; the
    context recorded and hashed is their JSON (lm-eval's JsonChatStr for API models)."""
    def as_json(messages: list[dict]) -> str:
        return json.dumps(messages, ensure_ascii=False)

    # A final assistant message is sent as it is: the backend asks the server to continue it
    # (server_generate), or refuses where the server cannot.
    return ChatRenderer("", as_json, sends_messages=True, render_prefill=as_json)
