"""Global-MMLU (Cohere Labs: MMLU in 42 languages) and Global-MMLU-Lite (15 languages, 200
culturally sensitive + 200 culturally agnostic questions each), as lm-eval 0.4.13 runs them
(tasks/global_mmlu, version 0.0).

Both use lm-eval's `mmlu` prompt without a description, " A".." D" scored by log-likelihood.
- `global_mmlu`: lm-eval's global_mmlu_full_<lang>: a task per subject, the first k dev rows of
  the subject as shots, MMLU's four categories. Unit "en.anatomy".
- `global_mmlu_lite`: lm-eval's global_mmlu_<lang>: a task per subject_category, k dev rows of
  the category drawn at random (seed 1234, one generator per task, drawn question after
  question). Unit "en.stem".
Beside lm-eval's table, accuracy on the culturally sensitive (CS) and agnostic (CA) questions
(the dataset's cultural_sensitivity_label; unannotated rows carry "-"), as the paper asks.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DataError
from ..schema import Question, QuestionRecord, Slice, TaskData
from . import tabular
from .base import Node, SeededSampler, Task, slice_of
from .mmlu import CATEGORIES, CATEGORY_OF, SUBJECTS, category_tree
from .mmmlu import pick_languages, split_unit

FULL_REPO = "CohereLabs/Global-MMLU"  # lm-eval 0.4.13 still says CohereForAI/ (redirected)
LITE_REPO = "CohereLabs/Global-MMLU-Lite"
# Revisions seen on the hub (the dev splits were re-uploaded more than once); lm-eval reads
# main, unpinned.
FULL_REVISION = "471a3c56f301ec6d1a4561f62c7dfd567fd021c9"
LITE_REVISION = "2c36b3b1896d7a2b86ff41fc46f4c37b2fd8f54e"
FULL_LANGUAGES = tuple(
    "am ar bn cs de el en es fa fil fr ha he hi id ig it ja ko ky lt mg ms ne nl ny pl pt ro "
    "ru si sn so sr sv sw te tr uk vi yo zh".split())
LITE_LANGUAGES = tuple("ar bn de en es fr hi id it ja ko pt sw yo zh".split())
# Lite's tasks: subject_category value -> task suffix (lm-eval's utils.py CATEGORIES).
LITE_CATEGORIES = {"Business": "business", "Humanities": "humanities", "Medical": "medical",
                   "Other": "other", "STEM": "stem", "Social Sciences": "social_sciences"}
COLUMNS = ("subject", "subject_category", "question", "option_a", "option_b", "option_c",
           "option_d", "answer", "cultural_sensitivity_label")
LABEL = "cultural_sensitivity_label"
FEWSHOT_SEED = 1234  # lm-eval's fewshot_random_seed default
SENSITIVITY = (("CS", "culturally sensitive"), ("CA", "culturally agnostic"))


class GlobalMMLU(Task):
    """The full set: one unit per language and MMLU subject."""

    name = "global_mmlu"
    title = "Global-MMLU"
    prompt_format = "lm-eval-0.4.13-global_mmlu_full-0.0"
    repo, revision, known, prefix = FULL_REPO, FULL_REVISION, FULL_LANGUAGES, "global_mmlu_full"
    subject_in_meta = False  # a unit is a subject already

    def __init__(self, languages: str | None = None) -> None:
        self.languages = pick_languages(languages, list(self.known), self.name)
        self.options = {"languages": ",".join(self.languages)} if languages else {}

    def parts(self) -> tuple[str, ...]:
        """What a language's units are split by (MMLU subjects here)."""
        return SUBJECTS

    def part_of(self, row: dict) -> str:
        return tabular.text(row["subject"])

    def units(self) -> tuple[str, ...]:
        return tuple(f"{lang}.{p}" for lang in self.languages for p in self.parts())

    def groups(self) -> dict[str, tuple[str, ...]]:
        """A language, a category or a subject: its units in the chosen languages."""
        out = {lang: tuple(f"{lang}.{p}" for p in self.parts()) for lang in self.languages}
        for name, parts in [*CATEGORIES.items(), *((s, (s,)) for s in SUBJECTS)]:
            out[name] = tuple(f"{lang}.{p}" for lang in self.languages for p in parts)
        return out

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        languages = sorted({split_unit(u)[0] for u in units})
        root, source = tabular.source_root(self.repo, self.revision,
                                           [f"{lang}/*" for lang in languages], data_dir)
        splits: dict[str, dict] = {"test": {}, "dev": {}}
        for lang in languages:
            for split, found in splits.items():
                paths = tabular.files(root / lang, split, f"the {split} split of {lang}")
                by_unit = self._questions(lang, tabular.rows(paths, COLUMNS), paths[0])
                found.update((u, by_unit.get(u, ())) for u in units
                             if split_unit(u)[0] == lang)
        empty = [u for u in units if not splits["test"][u]]
        if empty:
            raise DataError(f"{source}: no test questions for {', '.join(empty[:3])}; is this "
                            f"the {self.repo} layout (<language>/test-*.parquet)?")
        return TaskData(splits["test"], splits["dev"], source)

    def _questions(self, lang: str, rows: list[dict], where) -> dict[str, tuple[Question, ...]]:
        """Rows -> questions by unit in file order (index = lm-eval's doc_id in the unit's
        task), each labelled with its cultural-sensitivity label."""
        out: dict[str, list[Question]] = {}
        for i, row in enumerate(rows):
            gold = tabular.letter_index(row["answer"], where, i, "answer")
            unit = f"{lang}.{self.part_of(row)}"
            found = out.setdefault(unit, [])
            meta = {LABEL: tabular.text(row[LABEL])}
            if self.subject_in_meta:
                meta["subject"] = tabular.text(row["subject"])
            found.append(Question(unit, len(found), tabular.text(row["question"]),
                                  tuple(tabular.text(row[f"option_{c}"]) for c in "abcd"),
                                  gold, meta))
        return {u: tuple(qs) for u, qs in out.items()}

    def tree(self, units: Sequence[str]) -> list[Node]:
        languages = sorted({split_unit(u)[0] for u in units})
        # lm-eval has no group over languages; with several, mmlu-bench adds one (micro).
        top = ([Node(self.title, self.prefix, 0, tuple(sorted(units)), nshot=False)]
               if len(languages) > 1 else [])
        rows = list(top)
        for lang in languages:
            rows += self.language_tree(lang, [u for u in units if split_unit(u)[0] == lang],
                                       len(top))
        return rows

    def language_tree(self, lang: str, units: list[str], level: int) -> list[Node]:
        key = f"{self.prefix}_{lang}"
        return category_tree(key, key, units, CATEGORY_OF, key, ("0", "0", "0"), level=level,
                             subject_of=lambda u: split_unit(u)[1], name=lambda s: f"{key}_{s}")

    def slices(self, records: Sequence[QuestionRecord]) -> list[Slice]:
        """Accuracy on the CS, CA and unannotated questions; with several languages, CS and CA
        per language too."""
        labelled = {code: [r for r in records if r.meta.get(LABEL) == code]
                    for code, _ in SENSITIVITY}
        other = [r for r in records if r.meta.get(LABEL) not in dict(SENSITIVITY)]
        out = [slice_of(f"{code} ({about})", labelled[code], "not reported by lm-eval")
               for code, about in SENSITIVITY if labelled[code]]
        if other:
            out.append(slice_of("unannotated", other, f"{LABEL} neither CS nor CA"))
        languages = sorted({split_unit(r.subject)[0] for r in records})
        for lang in languages if len(languages) > 1 else ():
            for code, _ in SENSITIVITY:
                mine = [r for r in labelled[code] if split_unit(r.subject)[0] == lang]
                if mine:
                    out.append(slice_of(f"{lang} {code}", mine))
        return out


class GlobalMMLULite(GlobalMMLU):
    """Lite: one unit per language and subject_category, random shots as lm-eval draws them."""

    name = "global_mmlu_lite"
    title = "Global-MMLU-Lite"
    prompt_format = "lm-eval-0.4.13-global_mmlu_lite-0.0-seed1234"
    repo, revision, known, prefix = LITE_REPO, LITE_REVISION, LITE_LANGUAGES, "global_mmlu"
    subject_in_meta = True  # a unit is a category: the record keeps its question's subject
    unit_noun = "categories"

    def __init__(self, languages: str | None = None) -> None:
        super().__init__(languages)
        self._drawn: dict[tuple, tuple[TaskData, dict]] = {}

    def parts(self) -> tuple[str, ...]:
        return tuple(sorted(LITE_CATEGORIES.values()))

    def part_of(self, row: dict) -> str:
        # A category lm-eval has no task for keeps its own unit, which no run asks for.
        category = tabular.text(row["subject_category"])
        return LITE_CATEGORIES.get(category, category.lower().replace(" ", "_"))

    def groups(self) -> dict[str, tuple[str, ...]]:
        """A language or a category: its units in the chosen languages."""
        out = {lang: tuple(f"{lang}.{p}" for p in self.parts()) for lang in self.languages}
        out.update((p, tuple(f"{lang}.{p}" for lang in self.languages)) for p in self.parts())
        return out

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        """lm-eval's default sampler: random.Random(1234) per task, drawing k from the
        category's dev rows for every test question in document order. The draws are made
        once for the whole unit, so a question's shots do not depend on which questions a run
        scores (--limit, --sample, resume) or how often it asks."""
        if not k:
            return ()
        key = (id(data), q.subject, k)
        if key not in self._drawn:
            sampler, pool = SeededSampler(FEWSHOT_SEED), data.dev.get(q.subject, ())
            # `data` is kept with its draws so that its id is not reused by another.
            self._drawn[key] = (data, {t.index: sampler.sample(q.subject, pool, k)
                                       for t in data.test[q.subject]})
        return self._drawn[key][1][q.index]

    def language_tree(self, lang: str, units: list[str], level: int) -> list[Node]:
        key = f"{self.prefix}_{lang}"
        rows = [Node(key, key, level, tuple(sorted(units)), version="0")]
        return rows + [Node(f"{key}_{split_unit(u)[1]}", f"{key}_{split_unit(u)[1]}", level + 1,
                            (u,), unit=True, version="0") for u in sorted(units)]
