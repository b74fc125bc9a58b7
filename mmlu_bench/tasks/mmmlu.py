"""MMMLU (OpenAI's MMLU test set, professionally translated into 14 locales) as lm-eval 0.4.13's
`mmmlu` group (tasks/openai-mmmlu, task version 1.0).

lm-eval's `mmlu` recipe in every locale: an English description naming the subject and the
language, " A".." D" scored by log-likelihood. The dataset has only a test split, so the k shots
are the first k test rows of the same subject with the question itself left out. Groups are
micro averages: mmmlu -> mmmlu_<locale> -> mmmlu_<locale>_<category> -> subjects.
A unit is "<locale>.<subject>" (e.g. "de_de.anatomy"), a question id "de_de.anatomy/3".
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from ..errors import DataError, UserError
from ..schema import Question, TaskData
from . import tabular
from .base import Node, Task, first_n_without
from .mmlu import CATEGORIES, CATEGORY_OF, SUBJECTS, category_tree

HUB_REPO = "openai/MMMLU"
# The newest revision of openai/MMMLU we could see (the per-locale configs, ZH_CN spelled
# right); lm-eval reads the hub's main branch, unpinned.
REVISION = "038c7808122969ead7456361af05cb8f47d247f8"
# locale slug -> (dataset config, language as lm-eval names it); lm-eval's languages.json.
LOCALES: dict[str, tuple[str, str]] = {
    "ar_xy": ("AR_XY", "Arabic"), "bn_bd": ("BN_BD", "Bengali"), "de_de": ("DE_DE", "German"),
    "es_la": ("ES_LA", "Spanish"), "fr_fr": ("FR_FR", "French"), "hi_in": ("HI_IN", "Hindi"),
    "id_id": ("ID_ID", "Indonesian"), "it_it": ("IT_IT", "Italian"),
    "ja_jp": ("JA_JP", "Japanese"), "ko_kr": ("KO_KR", "Korean"),
    "pt_br": ("PT_BR", "Brazilian Portuguese"), "sw_ke": ("SW_KE", "Swahili"),
    "yo_ng": ("YO_NG", "Yoruba"), "zh_cn": ("ZH_CN", "Simplified Chinese"),
}
COLUMNS = ("Question", "A", "B", "C", "D", "Answer", "Subject")


def pick_languages(spec: str | None, known: Sequence[str], task: str) -> tuple[str, ...]:
    """--languages 'de_de,FR-FR' -> ('de_de', 'fr_fr'), in the table's order; None -> all."""
    if not spec:
        return tuple(known)
    chosen = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name = part.lower().replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"--languages {part!r}: --task {task} has no such language.{hint} "
                            f"It has {', '.join(known)}.")
        chosen.add(name)
    if not chosen:
        raise UserError("--languages is empty: give language codes, comma-separated.")
    return tuple(k for k in known if k in chosen)


def split_unit(unit: str) -> tuple[str, str]:
    """'de_de.anatomy' -> ('de_de', 'anatomy')."""
    language, _, rest = unit.partition(".")
    return language, rest


def normalize_subject(name: str) -> str:
    """lm-eval's subject filter: some MMMLU files hold a file name in `Subject`
    ('college_mathematics_test.csv_sw-KE.csv'); cut it at '_test.csv' or '_test-'."""
    for marker in ("_test.csv", "_test-"):
        if marker in name:
            return name[:name.index(marker)]
    return name


class MMMLU(Task):
    name = "mmmlu"
    title = "MMMLU"
    prompt_format = "lm-eval-0.4.13-mmmlu-1.0"

    def __init__(self, languages: str | None = None) -> None:
        self.languages = pick_languages(languages, list(LOCALES), self.name)
        self.options = {"languages": ",".join(self.languages)} if languages else {}

    def units(self) -> tuple[str, ...]:
        return tuple(f"{loc}.{s}" for loc in self.languages for s in SUBJECTS)

    def groups(self) -> dict[str, tuple[str, ...]]:
        """A locale, a category or a subject: its units in the chosen locales."""
        out = {loc: tuple(f"{loc}.{s}" for s in SUBJECTS) for loc in self.languages}
        for name, subjects in [*CATEGORIES.items(), *((s, (s,)) for s in SUBJECTS)]:
            out[name] = tuple(f"{loc}.{s}" for loc in self.languages for s in subjects)
        return out

    def load(self, data_dir: str | None, units: tuple[str, ...],
             source: str | None = None) -> TaskData:
        locales = sorted({split_unit(u)[0] for u in units})
        stems = {loc: "mmlu_" + LOCALES[loc][0].replace("_", "-") for loc in locales}
        root, source = tabular.source_root(HUB_REPO, REVISION,
                                           [f"test/{stems[loc]}.csv" for loc in locales],
                                           data_dir)
        test: dict[str, tuple[Question, ...]] = {}
        for loc in locales:
            paths = tabular.files(root / "test", stems[loc], f"locale {LOCALES[loc][0]}")
            by_subject = _questions(loc, tabular.rows(paths, COLUMNS), paths[0])
            test.update((u, by_subject.get(u, ())) for u in units if split_unit(u)[0] == loc)
        empty = [u for u in units if not test[u]]
        if empty:
            raise DataError(f"{source}: no questions for {', '.join(empty[:3])}; is this the "
                            f"{HUB_REPO} layout (test/mmlu_DE-DE.csv, a Subject column)?")
        # The few-shot split is the test split (lm-eval's fewshot_split: test).
        return TaskData(test, test, source)

    def shots(self, data: TaskData, q: Question, k: int) -> tuple[Question, ...]:
        # lm-eval removes the question itself from the pool (its rows are compared whole).
        return first_n_without(data.dev.get(q.subject, ()), k, q)

    def description(self, unit: str) -> str:
        loc, subject = split_unit(unit)
        return (f"The following are multiple choice questions (with answers) about "
                f"{subject.replace('_', ' ')} ({LOCALES[loc][1]}).\n\n")

    def tree(self, units: Sequence[str]) -> list[Node]:
        rows = [Node("MMMLU", "mmmlu", 0, tuple(sorted(units)), nshot=False, version="1")]
        for loc in sorted({split_unit(u)[0] for u in units}):
            language = LOCALES[loc][1]
            rows += category_tree(
                language, f"mmmlu_{loc}", [u for u in units if split_unit(u)[0] == loc],
                CATEGORY_OF, f"mmmlu_{loc}", ("1", "1", "1"), level=1,
                subject_of=lambda u: split_unit(u)[1],
                name=lambda s, lang=language: (f"{lang} {s.replace('_', ' ')}"
                                               if s not in CATEGORY_OF else
                                               f"{s.replace('_', ' ')} ({lang})"))
        return rows


def _questions(loc: str, rows: list[dict], where) -> dict[str, tuple[Question, ...]]:
    """A locale's rows -> questions by unit, in file order; index = lm-eval's doc_id in the
    subject's task. Rows whose subject is not an MMLU subject belong to no task, as in lm-eval."""
    out: dict[str, list[Question]] = {}
    for i, row in enumerate(rows):
        subject = normalize_subject(tabular.text(row["Subject"]))
        if subject not in CATEGORY_OF:
            continue
        gold = tabular.letter_index(row["Answer"], where, i, "Answer")
        unit = f"{loc}.{subject}"
        found = out.setdefault(unit, [])
        found.append(Question(unit, len(found), tabular.text(row["Question"]),
                              tuple(tabular.text(row[c]) for c in "ABCD"),
                              gold))
    return {u: tuple(qs) for u, qs in out.items()}
