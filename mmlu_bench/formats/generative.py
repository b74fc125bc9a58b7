"""Generative formats: the model writes an answer, a filter extracts the letter (extract.py).

generative    lm-eval 0.4.13 `mmlu_generative`: the `mmlu` prompt, greedy until "\\n" (and
              "</s>", and the model's end-of-text), first line exact-matched to the letter.
              On --task mmlu_redux, lm-eval's own mmlu_redux_generative instead
              (mmlu_redux_generative.py; formats.RECIPES).
cot           lm-eval 0.4.13 `mmlu_flan_cot_zeroshot`: "Q: ... (A) .. (B) ..\\nA: Let's think
              step by step.", greedy until "</s>", "Q:", "<|im_end|>"; two filters,
              strict-match (lm-eval's first, the table's number) and flexible-extract (shown
              beside it). lm-eval runs it on MMLU's validation split; here it runs on the
              split the task loads (MMLU: test), as the prompt identity says.
simple-evals  OpenAI simple-evals' MMLU: one user message asking for "Answer: $LETTER" on the
              last line, its regex; greedy (simple-evals samples at its sampler's temperature).

max_tokens is lm-eval's default max_gen_toks (256) where lm-eval sets none, and simple-evals'
sampler's max_tokens (1024) for simple-evals.

Under --apply-chat-template each is asked as lm-eval asks a generate_until task with a template
(chat_spec.py): the description (after a --system-instruction) as the system message, each shot
a user turn and an assistant turn holding the shot's target (the letter; mmlu_pro's worked
answer), or all in one user turn (--no-fewshot-as-multiturn), then the question, rendered with
the generation prompt added. None of these tasks has a gen_prefix, so nothing follows the
generation prompt: the rendered text is the context, trailing newline included, and the stop
strings are the task's. (Meta's recipes have one: formats/llama.py.) Without a template a --system-instruction is prepended to the plain
prompt, as lm-eval prepends it. simple-evals is always a chat (its one user message, after a
system message holding a --system-instruction); without the flag each backend applies the
model's template as it always has, with it the same renderer as the other chat formats renders
it and the run records the template, as every chat run does.

Results are named as lm-eval names them (`naming`, lmeval_names.py): exact_match under the
filters, and for MMLU the task names of mmlu_generative and mmlu_flan_cot_zeroshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from .. import extract, prompts
from ..errors import UserError
from ..lmeval_names import Naming, TaskNames
from ..prompts import Message
from ..schema import Generation, GenerateRequest, Question, QuestionRecord, TaskData
from ..tasks.base import Task
from .base import Format
from .chat_spec import ChatSpec, plain_header, plain_identity

# lm-eval's DEFAULT_MAX_GEN_TOKS: generation_kwargs without max_gen_toks get 256.
LMEVAL_MAX_GEN_TOKS = 256
# lm-eval's chat-API payloads send seed 1234; servers get it too (greedy needs none).
SEED = 1234


class GenerativeFormat(Format):
    """Requests with stop strings; records with the text, the letter and why it failed."""

    needs = "generate"
    until: ClassVar[tuple[str, ...]] = ()
    max_tokens: ClassVar[int] = LMEVAL_MAX_GEN_TOKS
    # (name, extractor): the first decides `correct`; the others are shown beside it.
    filters: ClassVar[tuple[tuple[str, object], ...]] = ()
    fixed_shots: ClassVar[int | None] = None  # a zero-shot recipe refuses --num-fewshot
    fixed_shots_why: ClassVar[str] = "by design"
    # lm-eval's task name where the recipe is one task's own and the format's name alone does
    # not tell it from the format's default recipe: it is part of the prompt identity
    recipe: ClassVar[str] = ""
    # lm-eval's names for the rows, by --task, where lm-eval ships this recipe as a task
    lmeval_tasks: ClassVar[dict[str, TaskNames]] = {}
    # lm-eval's gen_prefix: the answer turn's opening words, written for the model (prefill)
    gen_prefix: ClassVar[str | None] = None

    def __init__(self, system_instruction: str | None = None, apply_chat_template: bool = False,
                 fewshot_as_multiturn: bool | None = None, **settings) -> None:
        super().__init__(**settings)
        self.system_instruction = system_instruction or None
        self.chat = ChatSpec(fewshot_as_multiturn is not False, self.system_instruction) \
            if apply_chat_template else None
        self.needs_renderer = self.chat is not None

    @classmethod
    def naming(cls) -> Naming:
        """lm-eval's exact_match under the format's filters, the primary first."""
        return Naming("exact_match", tuple(name for name, _ in cls.filters), cls.lmeval_tasks)

    @classmethod
    def asked(cls, prompt_format: str) -> bool:
        """Whether a run header's prompt format is this recipe's (a run recorded before the
        task had a recipe of its own was asked with the format's default one)."""
        return not cls.recipe or f"/{cls.name}[{cls.recipe}]:" in prompt_format

    def prompt_format(self, task: Task, renderer=None) -> str:
        """Prompt and decoding settings: a resume with other ones is refused."""
        recipe = f"[{self.recipe}]" if self.recipe else ""
        decoding = (f"{task.prompt_format}/{self.name}{recipe}:greedy,max_tokens={self.max_tokens},"
                    f"until={list(self.until)},seed={SEED}")
        if self.chat is None:
            return decoding + plain_identity(self.system_instruction)
        return f"{decoding}+{self.chat.identity(renderer)}"

    def header_chat(self, renderer=None) -> dict:
        return self.chat.header(renderer) if self.chat else plain_header(self.system_instruction)

    def turns(self, task: Task, q: Question, shots: Sequence[Question]) -> list[Message]:
        """lm-eval's messages for the question (prompts.messages): the task's by default."""
        return prompts.messages(task, q, shots, self.system_instruction,
                                gen_prefix=self.gen_prefix)

    def plain(self, turns: Sequence[Message]) -> tuple[str, tuple[dict, ...] | None]:
        """(context, messages) without a template: lm-eval's plain text, no messages."""
        return prompts.plain(turns), None

    def requests(self, task: Task, questions: Sequence[Question], data: TaskData,
                 num_fewshot: int, renderer=None) -> list[GenerateRequest]:
        if self.fixed_shots is not None and num_fewshot != self.fixed_shots:
            raise UserError(f"--format {self.name} is {self.fixed_shots}-shot "
                            f"{self.fixed_shots_why}; leave out --num-fewshot.")
        assert self.chat is None or renderer is not None, "a chat format needs the renderer"
        out = []
        for q in questions:
            turns = self.turns(task, q, task.shots(data, q, num_fewshot))
            context, messages = self.chat.render(turns, renderer) if self.chat \
                else self.plain(turns)
            out.append(GenerateRequest(q.qid, context, self.until, self.max_tokens, messages))
        return out

    def record(self, task: Task, q: Question, g: Generation, prompt_sha256: str
               ) -> QuestionRecord:
        choices = list(q.choices)
        results = [(name, fn(g.text, choices)) for name, fn in self.filters]
        first = results[0][1]
        labels = task.labels(q)
        pred = labels.index(first.letter) if first.letter in labels else -1
        return QuestionRecord(
            qid=q.qid, subject=q.subject, index=q.index, gold=q.gold, loglikelihoods=(),
            pred=pred, correct=pred == q.gold, prompt_sha256=prompt_sha256,
            n_tokens=g.n_tokens, meta=dict(q.meta), response=g.text, answer=first.letter,
            failure=_failure(first, g), finish=g.finish,
            filters={name: e.letter for name, e in results[1:]}, n_options=len(q.choices))


def _failure(e: extract.Extraction, g: Generation) -> str | None:
    if e.letter is not None:
        return None
    if g.finish == "length":
        return f"{e.reason} (cut off at max_tokens)"
    return e.reason


class Generative(GenerativeFormat):
    name = "generative"
    until = ("</s>", "\n")
    filters = (("get_response", extract.lmeval_mmlu_generative),)
    # mmlu_generative's prompt is mmlu's: the default turns
    lmeval_tasks = {"mmlu": TaskNames("mmlu_generative", "mmlu (generative)",
                                      "mmlu_{unit}_generative")}


class FlanCoT(GenerativeFormat):
    name = "cot"
    until = ("</s>", "Q:", "<|im_end|>")
    filters = (("strict-match", extract.lmeval_flan_cot_strict),
               ("flexible-extract", extract.lmeval_flan_cot_flexible))
    fixed_shots = 0
    lmeval_tasks = {"mmlu": TaskNames(
        "mmlu_flan_cot_zeroshot", "mmlu (flan style, zeroshot cot)",
        "mmlu_flan_cot_zeroshot_{unit}", unit_alias="{key}", versions=("2", "N/A", "3"),
        note="lm-eval 0.4.13 prints no mmlu_flan_cot_zeroshot or category rows (its groups "
             "aggregate acc, which the task does not report); these aggregate exact_match "
             "per filter as its mmlu_generative groups do.")}

    def turns(self, task: Task, q: Question, shots: Sequence[Question]) -> list[Message]:
        def text(q: Question) -> str:
            options = " ".join(f"({label}) {choice}"
                               for label, choice in zip(task.labels(q), q.choices, strict=True))
            return f"Q: {q.question.strip()}\n{options}\nA: Let's think step by step."

        return prompts.messages(task, q, shots, self.system_instruction, text)


# simple-evals common.py QUERY_TEMPLATE_MULTICHOICE (stripped), for any number of options.
SIMPLE_EVALS = ("Answer the following multiple choice question. The last line of your response "
                "should be of the following format: 'Answer: $LETTER' (without quotes) where "
                "LETTER is one of {letters}. Think step by step before answering.\n\n"
                "{question}\n\n{options}")


class SimpleEvals(GenerativeFormat):
    name = "simple-evals"
    until = ()
    max_tokens = 1024
    filters = (("simple-evals", extract.simple_evals_mmlu),)
    fixed_shots = 0

    def turns(self, task: Task, q: Question, shots: Sequence[Question]) -> list[Message]:
        labels = task.labels(q)
        options = "\n".join(f"{label}) {choice}"
                            for label, choice in zip(labels, q.choices, strict=True))
        text = SIMPLE_EVALS.format(letters="".join(labels), question=q.question,
                                   options=options)
        system = [Message("system", self.system_instruction, "\n\n")] \
            if self.system_instruction else []
        return system + [Message("user", text)]

    def plain(self, turns: Sequence[Message]) -> tuple[str, tuple[dict, ...]]:
        """Always chat: the turns are sent as they are (a server's chat endpoint, the hf
        tokenizer's template, llama.cpp's chat completion); the context is their text."""
        return prompts.plain(turns), tuple(prompts.chat_dicts(turns))
