"""MMLU (Hendrycks et al., 2021) as lm-eval 0.4.13's `mmlu` task (tasks/mmlu/default).

57 subjects in four categories; a description naming the subject, the first k dev examples,
" A".." D" scored by log-likelihood. Groups are micro averages of their subjects.
Sources: the copy bundled with mmlu-bench (the default), the original release layout
(dev/<subject>_dev.csv, test/<subject>_test.csv or data.tar) or the hub dataset `cais/mmlu`
(parquet, cached).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .. import dataset, redux_overlay
from ..schema import Flag, QuestionRecord, Slice, TaskData
from .base import Node, Task

# lm-eval's grouping of the 57 subjects (its mmlu_<category> groups).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "stem": (
        "abstract_algebra", "anatomy", "astronomy", "college_biology", "college_chemistry",
        "college_computer_science", "college_mathematics", "college_physics", "computer_security",
        "conceptual_physics", "electrical_engineering", "elementary_mathematics",
        "high_school_biology", "high_school_chemistry", "high_school_computer_science",
        "high_school_mathematics", "high_school_physics", "high_school_statistics",
        "machine_learning",
    ),
    "other": (
        "business_ethics", "clinical_knowledge", "college_medicine", "global_facts", "human_aging",
        "management", "marketing", "medical_genetics", "miscellaneous", "nutrition",
        "professional_accounting", "professional_medicine", "virology",
    ),
    "social_sciences": (
        "econometrics", "high_school_geography", "high_school_government_and_politics",
        "high_school_macroeconomics", "high_school_microeconomics", "high_school_psychology",
        "human_sexuality", "professional_psychology", "public_relations", "security_studies",
        "sociology", "us_foreign_policy",
    ),
    "humanities": (
        "formal_logic", "high_school_european_history", "high_school_us_history",
        "high_school_world_history", "international_law", "jurisprudence", "logical_fallacies",
        "moral_disputes", "moral_scenarios", "philosophy", "prehistory", "professional_law",
        "world_religions",
    ),
}
CATEGORY_OF = {s: c for c, subjects in CATEGORIES.items() for s in subjects}
SUBJECTS = tuple(sorted(CATEGORY_OF))
assert len(SUBJECTS) == 57, "MMLU has 57 subjects"
# lm-eval prints "social sciences" for the social_sciences group.
ALIAS = {"social_sciences": "social sciences"}
HUB_REPO = "cais/mmlu"


def category_tree(top: str, top_key: str, units: Sequence[str], category_of: dict,
                  prefix: str, versions: tuple[str, str, str] = ("2", "2", "1"), level: int = 0,
                  subject_of: Callable[[str], str] = str,
                  name: Callable[[str], str] | None = None,
                  version_text: bool = False) -> list[Node]:
    """lm-eval's three-level MMLU layout: the task, its categories (alphabetical), each
    followed by its units (alphabetical). Groups aggregate their units directly.

    Translated MMLUs reuse it one language at a time: `level` is the top row's depth under
    the task, `subject_of` the MMLU subject of a unit ('de_de.anatomy' -> 'anatomy'; keys are
    `prefix`_category and `prefix`_subject) and `name` what a category or subject is printed
    as (lm-eval's alias; by default MMLU's). `version_text`: lm-eval holds the groups'
    versions as text ("2"), as MMLU's own groups."""
    name = name or (lambda s: ALIAS.get(s, s))
    present = sorted(set(units), key=lambda u: subject_of(u))
    rows = [Node(top, top_key, level, tuple(present), nshot=False, version=versions[0],
                 version_text=version_text)]
    for category in sorted({category_of[subject_of(u)] for u in present}):
        members = tuple(u for u in present if category_of[subject_of(u)] == category)
        rows.append(Node(name(category), f"{prefix}_{category}", level + 1, members,
                         version=versions[1], version_text=version_text))
        rows += [Node(name(subject_of(u)), f"{prefix}_{subject_of(u)}", level + 2, (u,),
                      unit=True, version=versions[2]) for u in members]
    return rows


class MMLU(Task):
    name = "mmlu"
    title = "MMLU"
    # Bump when a change alters any prompt byte: resumed runs refuse a different format.
    prompt_format = "lm-eval-0.4.13-mmlu-default"
    sources = (dataset.BUNDLED, dataset.HUB)  # the archive in the package, or cais/mmlu

    def units(self) -> tuple[str, ...]:
        return SUBJECTS

    def groups(self) -> dict[str, tuple[str, ...]]:
        return CATEGORIES

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        return dataset.load(data_dir, units, source)

    def description(self, unit: str) -> str:
        return (f"The following are multiple choice questions (with answers) about "
                f"{unit.replace('_', ' ')}.\n\n")

    def tree(self, units: Sequence[str]) -> list[Node]:
        return category_tree("mmlu", "mmlu", units, CATEGORY_OF, "mmlu", version_text=True)


    # MMLU-Redux labels beside the numbers (redux_overlay): the rows stay lm-eval's.
    def _redux(self, records: Sequence[QuestionRecord]) -> list:
        # Only for MMLU itself: a subclass (a translation, another split) may reuse subject
        # names and indices for other questions, so it opts in by overriding these hooks.
        return redux_overlay.from_table(records) if self.name == "mmlu" else []

    def slices(self, records: Sequence[QuestionRecord]) -> list[Slice]:
        return redux_overlay.overlay_slices(self._redux(records))

    def flags(self, records: Sequence[QuestionRecord]) -> list[Flag]:
        return redux_overlay.flags(self._redux(records))

    def blocks(self, records: Sequence[QuestionRecord]) -> dict:
        pairs = self._redux(records)
        return {"redux": redux_overlay.block(pairs)} if pairs else {}
